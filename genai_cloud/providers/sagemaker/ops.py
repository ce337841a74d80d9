"""boto3 side of the SageMaker provider: upload, describe-or-create, status, logs, stop, list.

Imported only when a job is submitted or inspected, so ``genai-cloud render`` never loads boto3.
Every client retries throttling and transient network errors itself (botocore "standard" mode,
10 attempts); submit is describe-or-create on the deterministic job name, so a retried submit,
or a create whose answer was lost, never launches a second job.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import PlacementError, ProviderError, require
from ..base import JobHandle, JobState, JobStatus
from .render import KEY_TAG, bundle_location

if TYPE_CHECKING:
    from ...plan import Plan

_botocore = require("botocore.exceptions", "aws")  # this module is only loaded to talk to AWS
# AWS's answers (ClientError) and botocore's own failures (no credentials, timeouts after all
# retries, ...); anything else is a bug and keeps its traceback.
AWS_ERRORS = (_botocore.ClientError, _botocore.BotoCoreError)

# botocore's "no usable credentials" family: none found, half found, a credential process / SSO
# token that failed or expired.
_CREDENTIAL_ERRORS = (_botocore.NoCredentialsError, _botocore.PartialCredentialsError,
                      _botocore.CredentialRetrievalError, _botocore.TokenRetrievalError,
                      _botocore.SSOError)  # fmt: skip
CREDENTIALS_HINT = ("Configure AWS credentials: `aws configure`, AWS_PROFILE=<profile>, "
                    "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or `aws sso login` for an SSO "
                    "profile.")  # fmt: skip
PROFILE_HINT = "Set AWS_PROFILE to a profile `aws configure list-profiles` shows, or unset it."
REGION_HINT = ("Set AWS_REGION (or a region in your AWS profile, `aws configure`), or pass the "
               "job as <region>/<job name> or its ARN.")  # fmt: skip
INVALID_REGION_HINT = ("AWS regions look like us-east-1: check aws.region / compute.region, "
                       "AWS_REGION, or the region in the job id (<region>/<job name>).")  # fmt: skip

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MAX_ATTEMPTS = 10  # botocore default is 3; a sweep of submits can hit CreateTrainingJob's TPS cap
POLL_SECONDS = 10.0  # logs --follow: CloudWatch delivers in batches every few seconds anyway
MAX_STREAMS_PER_CALL = 100  # FilterLogEvents logStreamNames limit
# Sweeps submit from a thread pool; botocore's default pool of 10 connections would make the
# other threads open and drop connections on every call.
MAX_POOL_CONNECTIONS = 50

# SecondaryStatus values that mean "not yet running user code" while TrainingJobStatus is
# InProgress. Interrupted / Restarting: a spot instance was reclaimed and SageMaker waits for
# capacity to resume from the last checkpoint.
_PENDING_SECONDARY = {
    "Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack", "Downloading",
    "DownloadingTrainingImage", "Interrupted", "Restarting",
}  # fmt: skip
_PRIMARY = {
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.STOPPED,
}
# Stopped by SageMaker itself because a StoppingCondition ran out: a failure, not a cancel.
_LIMIT_SECONDARY = {"MaxRuntimeExceeded": "compute.max_runtime",
                    "MaxWaitTimeExceeded": "compute.max_runtime (spot wait)"}  # fmt: skip


# Answers that mean "not here, not now" rather than "never" (failover moves on after them).
# ResourceLimitExceeded is CreateTrainingJob's quota answer: an instance type's account limit
# ("The account-level service limit 'ml.p4d.24xlarge for training job usage' is 0 Instances")
# or too many concurrent jobs. The capacity codes come from SageMaker's capacity-backed APIs and
# EC2; CreateTrainingJob itself reports a stockout on the job (FailureReason "CapacityError: ...").
_QUOTA_CODES = {"ResourceLimitExceeded", "ServiceQuotaExceededException"}
_CAPACITY_CODES = {"CapacityError", "InsufficientCapacity", "InsufficientCapacityException",
                   "InsufficientInstanceCapacity"}  # fmt: skip
_CAPACITY_FAILURE = ("CapacityError", "InsufficientInstanceCapacity", "insufficient capacity")


def placement_problem(exc) -> tuple[str, str] | None:
    """``(kind, message)`` when an AWS answer means no capacity / quota / spot for this
    placement (kind: ``capacity``, ``quota`` or ``spot``), else None."""
    if not isinstance(exc, _botocore.ClientError):
        return None
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    if code in _QUOTA_CODES:
        return ("spot" if "spot" in message.lower() else "quota"), f"{code}: {message}"
    if code in _CAPACITY_CODES:
        return "capacity", f"{code}: {message}"
    return None


def placement_problem_in_status(status: JobStatus) -> str | None:
    """Why a job that ended got no machines ('capacity: ...' / 'spot: ...'), else None."""
    message = status.message or ""
    if status.state not in (JobState.FAILED, JobState.STOPPED):
        return None
    if any(word.lower() in message.lower() for word in _CAPACITY_FAILURE):
        return f"capacity: {message}"
    if status.native_state.endswith("MaxWaitTimeExceeded"):  # spot never came within MaxWait
        return f"spot: no spot capacity before the spot wait ran out ({status.native_state})"
    return None


def retry_config():
    botocore_config = require("botocore.config", "aws")
    return botocore_config.Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


def error_code(exc) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def is_missing_job(exc) -> bool:
    # DescribeTrainingJob answers an unknown name with ValidationException ("Requested resource
    # not found." on AWS, "Could not find training job ..." on moto), not ResourceNotFound.
    message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "not found" in message.lower() or "could not find" in message.lower()
    )


# arn:aws:sagemaker:us-east-1:123456789012:training-job/name (aws-cn, aws-us-gov partitions too)
_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([^:]*):[^:]*:([^/]*)/(.+)$")
# botocore's own check (utils.validate_region_name), so a bad region is named before any client.
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
# TrainingJobName: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ID_FORMS = ("the job name, <region>/<job name> as `submit` prints it, or the job's ARN "
             "(arn:aws:sagemaker:<region>:<account>:training-job/<job name>)")


class BadJobId(ProviderError):
    headline = "Invalid SageMaker job id"


def parse_job_id(job_id: str) -> tuple[str, str | None]:
    """``(name, region)`` of a job id: the job name (region: boto3's own), ``<region>/<name>``
    as ``submit`` returns it, or the training job's ARN.

    Raises:
        BadJobId: anything else (named with the forms that are valid).
    """
    arn = _ARN.match(job_id)
    if arn:
        region, resource, name = arn.groups()
        if resource != "training-job":
            raise BadJobId(f"{job_id!r} is the ARN of a SageMaker {resource or 'resource'}, "
                           f"not of a training job; expected {_ID_FORMS}")  # fmt: skip
    elif "/" in job_id:
        region, _, name = job_id.partition("/")
    else:
        region, name = None, job_id
    if region is not None and not _REGION.match(region):
        raise BadJobId(f"{job_id!r}: {region!r} is not an AWS region name (e.g. us-east-1); "
                       f"expected {_ID_FORMS}")  # fmt: skip
    if not _NAME.match(name):
        raise BadJobId(f"{job_id!r}: {name!r} is not a SageMaker training job name (letters, "
                       f"digits and '-', at most 63); expected {_ID_FORMS}")  # fmt: skip
    return name, region


class SageMakerOps:
    """Thread-safe client cache plus the operations. ``clients[(service, region)]`` may be
    pre-filled (tests put Stubber-wrapped clients there)."""

    def __init__(self, session=None):
        self._session = session
        self._lock = threading.Lock()
        self.clients: dict[tuple[str, str | None], object] = {}
        self.poll_seconds = POLL_SECONDS

    def client(self, service: str, region: str | None = None):
        key = (service, region)
        with self._lock:  # boto3 sessions are not thread-safe; the clients they make are
            if key not in self.clients:
                try:
                    if self._session is None:  # AWS_PROFILE naming no profile fails here
                        self._session = require("boto3", "aws").session.Session()
                    self.clients[key] = self._session.client(
                        service, region_name=region, config=retry_config()
                    )
                except AWS_ERRORS as exc:
                    raise _aws_error(exc, f"creating a {service} client") from None
            return self.clients[key]

    # ---- submit ------------------------------------------------------------------------------

    def upload_bundle(self, plan: Plan) -> bool:
        """Put the bundle at its content-hash key unless it is there already; True if uploaded."""
        bucket, key = bundle_location(plan)
        s3 = self.client("s3", plan.placement.region)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return False
        except AWS_ERRORS as exc:
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise _aws_error(exc, f"checking s3://{bucket}/{key}") from None
        extra = {}
        if plan.spec.aws.kms_key_id:  # buckets that demand SSE-KMS reject anything else
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": plan.spec.aws.kms_key_id}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=plan.bundle.data,
                          ContentType="application/gzip", **extra)  # fmt: skip
        except AWS_ERRORS as exc:
            raise _aws_error(exc, f"uploading the bundle to s3://{bucket}/{key}") from None
        return True

    def describe(self, name: str, region: str | None = None) -> dict | None:
        try:
            return self.client("sagemaker", region).describe_training_job(TrainingJobName=name)
        except AWS_ERRORS as exc:
            if is_missing_job(exc):
                return None
            raise _aws_error(exc, f"describing training job {name!r}") from None

    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        """The job this plan already launched (its name is the plan's), with its status."""
        region = plan.placement.region
        described = self.describe(plan.job_name, region)
        if described is None:
            return None
        handle = _handle(described, region, created=False)
        return handle, to_status(handle.job_id, described)

    def submit(self, plan: Plan, request: dict) -> JobHandle:
        region = plan.placement.region
        name = request["TrainingJobName"]
        self.upload_bundle(plan)
        existing = self.describe(name, region)
        if existing is not None:
            return _handle(existing, region, created=False)
        sagemaker = self.client("sagemaker", region)
        try:
            answer = sagemaker.create_training_job(**request)
        except AWS_ERRORS as exc:
            # A create whose first answer was lost and got retried, or a racing submit of the
            # same plan: the job exists, and it is the one this plan describes.
            if error_code(exc) == "ResourceInUse":
                existing = self.describe(name, region)
                if existing is not None:
                    return _handle(existing, region, created=False)
            raise _aws_error(exc, f"creating training job {name!r}") from None
        return _handle({"TrainingJobName": name, "TrainingJobArn": answer["TrainingJobArn"]},
                       region, created=True)  # fmt: skip

    # ---- register ----------------------------------------------------------------------------

    def register(self, plan: Plan) -> str:
        """A model package version for the plan's finished job in ``output.register.name``
        (the group is created when missing); the package ARN. Registering again returns the
        version registered before (same ClientToken)."""
        from .render import model_package_request

        settings = plan.spec.output.register_model
        if settings is None:
            raise ProviderError("output.register is not set: name the model package group "
                                "and the serving image", headline="Nothing to register")  # fmt: skip
        if not settings.image_uri:
            raise ProviderError("output.register.image_uri: required on SageMaker, the serving "
                                "container image of the model package", headline="Nothing to "
                                "register")  # fmt: skip
        region = plan.placement.region
        described = self.describe(plan.job_name, region)
        if described is None or described.get("TrainingJobStatus") != "Completed":
            state = described.get("TrainingJobStatus") if described else "not launched"
            raise ProviderError(f"training job {plan.job_name} is {state}; register its model "
                                "once it has completed", headline="Not ready")  # fmt: skip
        artifacts = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        sagemaker = self.client("sagemaker", region)
        try:
            try:
                sagemaker.describe_model_package_group(ModelPackageGroupName=settings.name)
            except AWS_ERRORS as exc:
                if error_code(exc) not in ("ValidationException", "ResourceNotFound"):
                    raise
                sagemaker.create_model_package_group(
                    ModelPackageGroupName=settings.name,
                    ModelPackageGroupDescription=f"genai-cloud models of spec {plan.spec.name}")
            metrics = (described.get("FinalMetricDataList") or [])
            answer = sagemaker.create_model_package(**model_package_request(
                plan, artifacts or f"{described['OutputDataConfig']['S3OutputPath'].rstrip('/')}"
                f"/{plan.job_name}/output/model.tar.gz",
                {m["MetricName"]: m["Value"] for m in metrics}))  # fmt: skip
        except AWS_ERRORS as exc:
            raise _aws_error(exc, f"registering {plan.job_name} in {settings.name!r}") from None
        return answer["ModelPackageArn"]

    # ---- operate -----------------------------------------------------------------------------

    def _describe_or_fail(self, job_id: str) -> tuple[dict, str | None]:
        name, region = parse_job_id(job_id)
        described = self.describe(name, region)
        if described is None:
            where = f" in {region}" if region else ""
            raise ProviderError(f"no SageMaker training job named {name!r}{where}",
                                headline="Unknown job")  # fmt: skip
        return described, region

    def status(self, job_id: str) -> JobStatus:
        described, _ = self._describe_or_fail(job_id)
        return to_status(job_id, described)

    def cancel(self, job_id: str) -> None:
        """StopTrainingJob; a job that already ended is left as it is."""
        described, region = self._describe_or_fail(job_id)
        if to_status(job_id, described).state.done:
            return
        try:
            self.client("sagemaker", region).stop_training_job(
                TrainingJobName=described["TrainingJobName"]
            )
        except AWS_ERRORS as exc:
            raise _aws_error(
                exc, f"stopping training job {described['TrainingJobName']!r}"
            ) from None

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        described, region = self._describe_or_fail(job_id)
        name = described["TrainingJobName"]
        many_hosts = described.get("ResourceConfig", {}).get("InstanceCount", 1) > 1
        logs = self.client("logs", region)
        seen: set[str] = set()
        start = 0
        while True:
            finished = not follow or to_status(job_id, self.describe(name, region) or {}).state.done
            for event in _new_events(logs, name, start, seen):
                start = max(start, event["timestamp"])
                host = event["logStreamName"].split("/", 1)[-1].rsplit("-", 1)[0]
                yield f"[{host}] {event['message']}" if many_hosts else event["message"]
            if finished:  # the drain above ran after the job ended: nothing more will come
                return
            time.sleep(self.poll_seconds)

    def list(self, labels: dict[str, str], region: str | None = None) -> list[JobStatus]:
        """Jobs tagged by genai-cloud carrying every label, newest first (SageMaker Search)."""
        filters = [{"Name": f"Tags.{k}", "Operator": "Equals", "Value": v}
                   for k, v in sorted(labels.items())]  # fmt: skip
        filters.append({"Name": f"Tags.{KEY_TAG}", "Operator": "Exists"})
        sagemaker = self.client("sagemaker", region)
        found, token = [], None
        while True:
            kwargs = {"NextToken": token} if token else {}
            try:
                page = sagemaker.search(Resource="TrainingJob", MaxResults=100,
                                        SearchExpression={"Filters": filters}, **kwargs)  # fmt: skip
            except AWS_ERRORS as exc:
                raise _aws_error(exc, "searching training jobs") from None
            for result in page.get("Results", []):
                job = result["TrainingJob"]
                tags = {t["Key"]: t["Value"] for t in job.get("Tags", [])}
                # Check every filter here too: the search service is eventually consistent.
                if KEY_TAG in tags and all(tags.get(k) == v for k, v in labels.items()):
                    found.append(to_status(job["TrainingJobName"], job))
            token = page.get("NextToken")
            if not token:
                break
        found.sort(key=lambda s: str(s.details.get("created") or ""), reverse=True)
        return found


def _new_events(logs, name: str, start: int, seen: set[str]) -> Iterator[dict]:
    """Events of the job's streams from ``start`` (ms) on that were not yielded before."""
    try:
        streams = []
        pages = logs.get_paginator("describe_log_streams").paginate(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/"
        )
        for page in pages:
            streams += [s["logStreamName"] for s in page.get("logStreams", [])]
    except AWS_ERRORS as exc:
        if error_code(exc) == "ResourceNotFoundException":  # no log group yet: nothing ran
            return
        raise _aws_error(exc, f"reading logs of {name!r}") from None
    events = []
    for i in range(0, len(streams), MAX_STREAMS_PER_CALL):
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=LOG_GROUP, logStreamNames=streams[i : i + MAX_STREAMS_PER_CALL],
            startTime=start,
        )  # fmt: skip
        for page in pages:
            events += [e for e in page.get("events", []) if e["eventId"] not in seen]
    for event in sorted(events, key=lambda e: (e["timestamp"], e["logStreamName"])):
        seen.add(event["eventId"])
        yield event


def to_status(job_id: str, described: dict) -> JobStatus:
    """Map TrainingJobStatus + SecondaryStatus onto the SDK's common states."""
    primary = described.get("TrainingJobStatus", "InProgress")
    secondary = described.get("SecondaryStatus", "")
    message = described.get("FailureReason")
    if primary == "InProgress":
        state = JobState.PENDING if secondary in _PENDING_SECONDARY else JobState.RUNNING
    else:
        state = _PRIMARY.get(primary, JobState.FAILED)
    if primary == "Stopped" and secondary in _LIMIT_SECONDARY:
        state = JobState.FAILED
        message = f"stopped by SageMaker: {secondary} (raise {_LIMIT_SECONDARY[secondary]})"
    transitions = described.get("SecondaryStatusTransitions") or []
    if message is None and transitions:
        message = transitions[-1].get("StatusMessage")
    resources = described.get("ResourceConfig", {})
    details = {
        "name": described.get("TrainingJobName"),
        "arn": described.get("TrainingJobArn"),
        "created": described.get("CreationTime"),
        # A running job is billed from TrainingStartTime (after provisioning), not creation.
        "started": described.get("TrainingStartTime"),
        "ended": described.get("TrainingEndTime"),
        "spot": described.get("EnableManagedSpotTraining"),
        "instance_type": resources.get("InstanceType"),
        "instance_count": resources.get("InstanceCount"),
        "billable_seconds": described.get("BillableTimeInSeconds"),
        "model_artifacts": described.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
    }
    native = f"{primary}/{secondary}" if secondary else primary
    return JobStatus(job_id=job_id, state=state, native_state=native, message=message,
                     details={k: v for k, v in details.items() if v is not None})  # fmt: skip


def _handle(described: dict, region: str, *, created: bool) -> JobHandle:
    name = described["TrainingJobName"]
    return JobHandle(
        provider="sagemaker",
        job_id=f"{region}/{name}",
        name=name,
        created=created,
        console_url=f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
        f"#/jobs/{name}",
        details={"arn": described.get("TrainingJobArn"), "region": region},
    )


def _aws_error(exc, doing: str) -> Exception:
    """AWS's own answer (access denied, quota, validation) as a user-facing error; anything that
    is not an AWS answer is a bug and keeps its traceback."""
    said = str(exc).rstrip(".")
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return ProviderError(f"{doing}: {said}. {CREDENTIALS_HINT}",
                             headline="AWS credentials not found")  # fmt: skip
    if isinstance(exc, _botocore.ProfileNotFound):
        return ProviderError(f"{doing}: {said}. {PROFILE_HINT}", headline="AWS profile not found")
    if isinstance(exc, _botocore.NoRegionError):
        return ProviderError(f"{doing}: {said}. {REGION_HINT}", headline="AWS region not set")
    if isinstance(exc, _botocore.InvalidRegionError):
        return ProviderError(f"{doing}: {said}. {INVALID_REGION_HINT}",
                             headline="Invalid AWS region")  # fmt: skip
    code = error_code(exc)
    if not code:
        return exc
    problem = placement_problem(exc)
    if problem is not None:
        return PlacementError(f"{doing}: {problem[1]}", kind=problem[0])
    message = exc.response.get("Error", {}).get("Message", "")
    return ProviderError(f"{doing}: {code}: {message}", headline="SageMaker request failed")
