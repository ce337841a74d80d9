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
from .errors import ProviderError
from .providers.base import Provider, provider_class

if TYPE_CHECKING:
    from .spec import JobSpec


def _provider(name: str) -> Provider:
    """The provider's class (its region fields, spot switch, billing); a name no provider is
    registered under gets the neutral defaults (compute.region, compute.spot, one per node)."""
    try:
        return provider_class(name)()
    except ProviderError:
        return Provider()


def pinned_region(spec: JobSpec, provider: str) -> str | None:
    """The region the spec itself fixes for ``provider``, if any."""
    for path in _provider(provider).region_fields:
        section, _, attr = path.partition(".")
        value = getattr(getattr(spec, section, None), attr, None)
        if value:
            return value
    return None


def env_region(provider: str) -> str | None:
    """The region ``provider``'s SDK would pick up from the environment, if any."""
    names = _provider(provider).region_env
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def launch_region(spec: JobSpec, provider: str) -> str:
    """Where ``submit`` launches: the pinned region, else the SDK's environment region, else
    the catalog's default region."""
    return (pinned_region(spec, provider) or env_region(provider)
            or catalog(provider)["default_region"])  # fmt: skip


def uses_spot(spec: JobSpec, provider: str) -> bool:
    """Whether the spec runs on spot / preemptible capacity on ``provider`` (compute.spot, or
    the provider's own switch: Vertex ``gcp.strategy: SPOT``, Azure ``azure.job_tier: spot``)."""
    return _provider(provider).uses_spot(spec)


def machines(spec: JobSpec, provider: str, instance: Instance) -> int:
    """Billed machines: one per node; a multi-host TPU slice on Vertex bills every host."""
    return _provider(provider).billed_machines(spec, instance)
