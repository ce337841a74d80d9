"""Where a spec launches on each provider, and what it is billed for there.

Shared by the renders (SageMaker / Vertex regions), the price estimates (``cost.py``) and the job
table, so that the region a job is priced in is the region it is launched in:

- region: the provider's own spec field, then the neutral ``compute.region``, then the region the
  provider's SDK reads from the environment, then the catalog's default region. Azure ML runs in
  its workspace's region, which the spec does not name: its price is the catalog's default.
- spot: ``compute.spot``, or the provider's own spot switch (Vertex ``gcp.strategy: SPOT``, Azure
  ``azure.job_tier: spot``).
- machines: one per node; a multi-host TPU slice on Vertex bills every host.

Pure: reads the spec, the environment and the catalogs; no SDK, no network.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .catalog import Instance, catalog

if TYPE_CHECKING:
    from .spec import JobSpec

# The spec fields that pin where a provider runs, in order. Unknown providers: compute.region.
_REGION_FIELDS = {
    "sagemaker": (("aws", "region"), ("compute", "region")),
    "vertex": (("gcp", "region"), ("compute", "region")),
    "azureml": (),
}
# The environment variables each SDK reads for its default region: boto3's, and
# google-cloud-aiplatform's (aiplatform.initializer reads these two).
REGION_ENV = {
    "sagemaker": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "vertex": ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION"),
}


def pinned_region(spec: JobSpec, provider: str) -> str | None:
    """The region the spec itself fixes for ``provider``, if any."""
    for section, attr in _REGION_FIELDS.get(provider, (("compute", "region"),)):
        value = getattr(getattr(spec, section, None), attr, None)
        if value:
            return value
    return None


def env_region(provider: str) -> str | None:
    """The region ``provider``'s SDK would pick up from the environment, if any."""
    return next((os.environ[n] for n in REGION_ENV.get(provider, ()) if os.environ.get(n)), None)


def launch_region(spec: JobSpec, provider: str) -> str:
    """Where ``submit`` launches: the pinned region, else the SDK's environment region, else
    the catalog's default region."""
    return (pinned_region(spec, provider) or env_region(provider)
            or catalog(provider)["default_region"])  # fmt: skip


def uses_spot(spec: JobSpec, provider: str) -> bool:
    """Whether the spec runs on spot / preemptible capacity on ``provider``. (Vertex FLEX_START
    is priced on-demand: an upper bound, its discount is not in the catalog.)"""
    if spec.compute.spot:
        return True
    if provider == "vertex":
        return spec.gcp.strategy == "SPOT"
    if provider == "azureml":
        return spec.azure.job_tier == "spot"
    return False


def machines(spec: JobSpec, provider: str, instance: Instance) -> int:
    """Billed machines: one per node; a multi-host TPU slice on Vertex bills every host."""
    count = spec.compute.nodes
    chips = instance.extra.get("tpu_chips")
    # compute.count is a TPU slice's chips (spec validation made it agree with gcp.tpu_topology).
    if provider == "vertex" and chips:
        count *= max(1, spec.compute.count // chips)
    return count
