"""The Azure ML provider: what the rest of genai-cloud asks of Azure, in one object.

Renders are pure (``render.py``); operations use azure-ai-ml (``ops.py``, imported on first use).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..base import CloudProvider, Feature, JobStatus
from .render import AZURE_NAMES, INSTANCE_TAG, render_command_job, render_yaml

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

_JOB_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                     r"Microsoft\.MachineLearningServices/workspaces/[^/]+/jobs/[^/]+$",
                     re.IGNORECASE)  # fmt: skip


def azure_config_file(start: Path | None = None) -> Path | None:
    """The workspace config.json that ``MLClient.from_config`` would read, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        for sub in (".azureml", "aml_config", ""):
            path = folder / sub / "config.json"
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            # A plain config.json of some other tool is not a workspace config.
            if isinstance(data, dict) and "subscription_id" in data:
                return path
    return None




class AzureMLProvider(CloudProvider):
    """Azure ML command job: ``submit`` is describe-or-create by job name."""

    name = "azureml"
    install_extra = "azure"
    name_rules = AZURE_NAMES
    login = ("Azure", ("Log in with `az login`, or set AZURE_CLIENT_ID / AZURE_TENANT_ID / "
                       "AZURE_CLIENT_SECRET for a service principal."))  # fmt: skip
    region_fields: ClassVar[tuple[str, ...]] = ()  # the workspace's region, not in the spec
    fixed_region = "an Azure ML job runs in its workspace's region"
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.TPU: "TPUs are a Google Cloud product; Azure ML offers NVIDIA GPUs",
        Feature.FLEX_START: (
            "FLEX_START is Vertex AI's Dynamic Workload Scheduler; on Azure queue with "
            "azure.job_tier instead"
        ),
        Feature.NETWORK_ISOLATION: (
            "Azure ML isolates networks per workspace (managed virtual network), not per job"
        ),
        Feature.VPC: (
            "on Azure ML the virtual network belongs to the compute cluster (azure.compute), "
            "not to the job; aws.subnets / gcp.network do not apply"
        ),
        Feature.CUSTOMER_MANAGED_KEYS: (
            "Azure ML sets customer-managed keys on the workspace and its storage, not per job"
        ),
    }

    def render(self, plan: Plan) -> dict:
        return render_command_job(plan)

    def write_native_bundle(self, plan: Plan, folder: Path) -> Path:
        """The job file's ``code:`` names a folder: the bundle unpacked beside it."""
        from ...bundle import safe_extract

        bundle = plan.bundle.write(folder)
        return safe_extract(bundle, bundle.with_name(bundle.name.removesuffix(".tar.gz")))

    def render_native(self, plan: Plan, path: str | Path | None = None) -> str:
        return render_yaml(plan, path)

    # ---- operations (azure-ai-ml, in ops.py; forwarded by CloudProvider) ---------------------

    def make_ops(self):
        from .ops import AzureMLOps

        return AzureMLOps()

    # ---- what the rest of genai-cloud asks of Azure --------------------------------------------

    @classmethod
    def section_features(cls, spec: JobSpec) -> set[Feature]:
        return {Feature.SPOT} if spec.azure.job_tier == "spot" else set()

    def uses_spot(self, spec: JobSpec) -> bool:
        return spec.compute.spot or spec.azure.job_tier == "spot"

    def not_configured_reason(self, spec: JobSpec | None = None) -> str | None:
        """azure-ai-ml is installed and a workspace is named (the spec's three fields or a
        workspace config.json); credentials are checked on the first call."""
        try:
            installed = importlib.util.find_spec("azure.ai.ml") is not None
        except ModuleNotFoundError:  # azure or azure.ai is missing
            installed = False
        if not installed:
            return "azure-ai-ml is not installed (pip install 'genai-cloud[azure]')"
        named = spec and all((spec.azure.subscription_id, spec.azure.resource_group,
                              spec.azure.workspace))  # fmt: skip
        if not named and azure_config_file() is None:
            return ("no workspace (azure.subscription_id/resource_group/workspace, or the "
                    "workspace's config.json in this directory or above)")  # fmt: skip
        return None

    def owns_job_id(self, job_id: str) -> bool:
        return bool(_JOB_ID.match(job_id))

    def job_instance_type(self, status: JobStatus) -> str | None:
        """Serverless jobs name it; on a cluster the render's tag does."""
        details = status.details
        return details.get("instance_type") or (details.get("tags") or {}).get(INSTANCE_TAG)

    def placement_problem_in_status(self, status: JobStatus) -> str | None:
        from .ops import placement_problem_in_status

        return placement_problem_in_status(status)

    def emulator(self):
        """``run --emulate azureml``: the rendered job run as this cloud's container runs it
        (``emulation.py``)."""
        from .emulation import run

        return run
