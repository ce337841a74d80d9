"""The SageMaker provider: what the rest of genai-cloud asks of AWS, in one object.

Renders are pure (``render.py``); operations use boto3 (``ops.py``, imported on first use).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from typing import TYPE_CHECKING, ClassVar

from ..base import CloudProvider, Feature, JobStatus
from . import render
from .render import SAGEMAKER_NAMES, build_request

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):")
_REGION_PREFIX = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d/[^/]+$")  # "us-east-1/<name>"


class SageMakerProvider(CloudProvider):
    name = "sagemaker"
    install_extra = "aws"
    name_rules = SAGEMAKER_NAMES
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.TPU: "TPUs are a Google Cloud product; use provider 'vertex'",
        Feature.FLEX_START: "FLEX_START is a Vertex AI scheduling strategy; on SageMaker use "
        "compute.spot with checkpoints",
    }

    region_fields: ClassVar[tuple[str, ...]] = ("aws.region", "compute.region")
    region_env: ClassVar[tuple[str, ...]] = ("AWS_REGION", "AWS_DEFAULT_REGION")  # boto3's

    def __init__(self, session=None):
        # A boto3 Session (or None: the default credential chain). Clients are made lazily.
        super().__init__()
        self._session = session

    # ---- pure renders ------------------------------------------------------------------------

    def render(self, plan: Plan) -> dict:
        return build_request(plan)

    def render_native(self, plan: Plan, path: str | os.PathLike | None = None) -> str:
        """``aws sagemaker create-training-job --cli-input-json file://job.json`` takes this file:
        the CLI's input JSON uses the API's member names, so it is the request itself."""
        return json.dumps(self.render(plan), indent=2, sort_keys=True)

    def launch_commands(self, plan: Plan, path: str | os.PathLike | None = None) -> list[str]:
        """The shell commands that launch a native render written to ``path``: upload the
        bundle where the request's ``sagemaker_submit_directory`` (or its ``code`` channel)
        points, then create the job. JSON has no comments, so the CLI prints these instead of
        a header in the file."""
        return render.launch_commands(plan, path)

    def render_stepfunctions(self, plan: Plan) -> dict:
        """A Step Functions Task state that creates the job and waits for it (``.sync``).

        The bundle must already be in S3 (``submit`` or ``ops.upload_bundle`` puts it there).
        """
        return {
            "Type": "Task",
            "Comment": f"genai-cloud job {plan.spec.name} (key {plan.key})",
            "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
            "Parameters": self.render(plan),
            "End": True,
        }

    # ---- operations (boto3, in ops.py; forwarded by CloudProvider) ----------------------------
    # (the ops word botocore's missing-credentials errors themselves: no ``login`` here)

    def make_ops(self):
        from .ops import SageMakerOps

        return SageMakerOps(self._session)

    # ---- what the rest of genai-cloud asks of AWS ----------------------------------------------

    @classmethod
    def section_features(cls, spec: JobSpec) -> set[Feature]:
        aws = spec.aws
        asked = {Feature.VPC} if aws.subnets else set()
        if aws.network_isolation:
            asked.add(Feature.NETWORK_ISOLATION)
        if aws.kms_key_id or aws.volume_kms_key_id:
            asked.add(Feature.CUSTOMER_MANAGED_KEYS)
        return asked

    def not_configured_reason(self, spec: JobSpec | None = None) -> str | None:
        """boto3 is installed and its credential chain finds credentials."""
        if importlib.util.find_spec("boto3") is None:
            return "boto3 is not installed (pip install 'genai-cloud[aws]')"
        import boto3

        if boto3.session.Session().get_credentials() is None:
            return "no AWS credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        return None

    def owns_job_id(self, job_id: str) -> bool:
        return bool(_ARN_REGION.match(job_id) or _REGION_PREFIX.match(job_id))

    def job_region(self, status: JobStatus) -> str | None:
        if status.details.get("region"):
            return status.details["region"]
        for text in (status.details.get("arn") or "", status.job_id):
            match = _ARN_REGION.match(text)
            if match:
                return match.group(1)
        if _REGION_PREFIX.match(status.job_id):
            return status.job_id.split("/", 1)[0]
        return None

    def placement_problem_in_status(self, status: JobStatus) -> str | None:
        from .ops import placement_problem_in_status

        return placement_problem_in_status(status)

    def emulator(self):
        """``run --emulate sagemaker``: the rendered job run as this cloud's container runs it
        (``emulation.py``)."""
        from .emulation import run

        return run
