"""The Vertex AI provider: what the rest of genai-cloud asks of Google Cloud, in one object.

Renders are pure (``render.py``, ``native.py``); operations use google-cloud-aiplatform
(``ops.py``, imported on first use).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..base import CloudProvider, Feature, JobStatus
from .render import VERTEX_NAMES, render_custom_job

if TYPE_CHECKING:
    from ...catalog import Instance
    from ...plan import Plan
    from ...spec import JobSpec

_JOB_ID = re.compile(r"^projects/[^/]+/locations/([^/]+)/customJobs/[^/]+$")
_TPU_TOPOLOGY = re.compile(r"\d+x\d+(x\d+)?")




class VertexProvider(CloudProvider):
    """Vertex AI CustomJob: ``submit`` uploads the bundle, then describe-or-create by label."""

    name = "vertex"
    install_extra = "gcp"
    login = ("Google Cloud", ("Log in with `gcloud auth application-default login`, or set "
                              "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file."))  # fmt: skip
    name_rules = VERTEX_NAMES
    # google-cloud-aiplatform's aiplatform.initializer reads these two for its default region.
    region_fields: ClassVar[tuple[str, ...]] = ("gcp.region", "compute.region")
    region_env: ClassVar[tuple[str, ...]] = ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION")
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.NETWORK_ISOLATION: (
            "Vertex AI has no per-job switch that blocks all egress; isolate the job with a "
            "peered VPC (gcp.network) inside a VPC Service Controls perimeter instead"
        ),
    }

    def render(self, plan: Plan) -> dict:
        return render_custom_job(plan)

    def render_native(self, plan: Plan, path: str | os.PathLike | None = None) -> str:
        from .native import render_gcloud_config

        return render_gcloud_config(plan, path)

    # ---- operations (google-cloud-aiplatform, in ops.py; forwarded by CloudProvider) -------

    def make_ops(self):
        from .ops import VertexOps

        return VertexOps()

    # ---- what the rest of genai-cloud asks of Google Cloud -------------------------------------

    @classmethod
    def section_features(cls, spec: JobSpec) -> set[Feature]:
        gcp = spec.gcp
        asked = {Feature.SPOT} if gcp.strategy == "SPOT" else set()
        if gcp.strategy == "FLEX_START":
            asked.add(Feature.FLEX_START)
        if gcp.network:
            asked.add(Feature.VPC)
        if gcp.kms_key_name:
            asked.add(Feature.CUSTOMER_MANAGED_KEYS)
        return asked

    def uses_spot(self, spec: JobSpec) -> bool:
        """compute.spot or ``gcp.strategy: SPOT`` (FLEX_START is priced on-demand: an upper
        bound, its discount is not in the catalog)."""
        return spec.compute.spot or spec.gcp.strategy == "SPOT"

    def billed_machines(self, spec: JobSpec, instance: Instance) -> int:
        """One per node; a multi-host TPU slice bills every host. compute.count is a TPU
        slice's chips (spec validation, genai_cloud/tpu.py, made it agree with
        gcp.tpu_topology)."""
        count = spec.compute.nodes
        chips = instance.extra.get("tpu_chips")
        if chips:
            count *= max(1, spec.compute.count // chips)
        return count

    def not_configured_reason(self, spec: JobSpec | None = None) -> str | None:
        """google-cloud-aiplatform is installed, a project is named and Application Default
        Credentials exist."""
        try:
            installed = importlib.util.find_spec("google.cloud.aiplatform") is not None
        except ModuleNotFoundError:  # google or google.cloud is missing
            installed = False
        if not installed:
            return "google-cloud-aiplatform is not installed (pip install 'genai-cloud[gcp]')"
        project = (spec.gcp.project if spec else None) or os.environ.get("GOOGLE_CLOUD_PROJECT") \
            or os.environ.get("CLOUDSDK_CORE_PROJECT")  # fmt: skip
        if not project:
            return "no project (set gcp.project or GOOGLE_CLOUD_PROJECT)"
        gcloud_dir = os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud"
        adc = Path(gcloud_dir) / "application_default_credentials.json"
        if not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") and not adc.is_file():
            return ("no Application Default Credentials (gcloud auth application-default login, "
                    "or GOOGLE_APPLICATION_CREDENTIALS)")  # fmt: skip
        return None

    def owns_job_id(self, job_id: str) -> bool:
        return bool(_JOB_ID.match(job_id))

    def job_region(self, status: JobStatus) -> str | None:
        match = _JOB_ID.match(status.job_id)
        return status.details.get("region") or (match.group(1) if match else None)

    def job_instance_type(self, status: JobStatus) -> str | None:
        """Named directly, else found from ``machine_type`` + ``accelerator_count`` (N1 rows
        are '<machine>+<n>x<GPU>' in the catalog)."""
        details = status.details
        machine = details.get("machine_type")
        if details.get("instance_type") or not machine:
            return details.get("instance_type")
        from ...catalog import instances

        rows = [r for r in instances(self.name) if r.extra.get("machine_type", r.type) == machine]
        if len(rows) > 1:  # N1: the same machine with 0, 1, 2 or 4 GPUs attached
            count = int(details.get("accelerator_count") or 0)
            rows = [r for r in rows if r.count == count]
        return rows[0].type if rows else None

    def placement_problem_in_status(self, status: JobStatus) -> str | None:
        from .ops import placement_problem_in_status

        return placement_problem_in_status(status)

    def emulator(self):
        """``run --emulate vertex``: the rendered job run as this cloud's container runs it
        (``emulation.py``)."""
        from .emulation import run

        return run
