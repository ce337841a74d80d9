"""Azure ML operations: describe-or-create, status, logs, cancel, list (SDK imported lazily).

Job ids are the job's ARM id (``/subscriptions/S/resourceGroups/R/providers/
Microsoft.MachineLearningServices/workspaces/W/jobs/NAME``), so status, logs and cancel find the
workspace without a spec. A bare job name uses the workspace of ``config.json`` (what
``MLClient.from_config`` reads).

Idempotency: the job name is the plan's idempotency key and is unique per workspace, so
``submit`` asks ``jobs.get(name)`` first and creates only when Azure answers "not found". A create
that is throttled or times out may have landed, so each retry asks again before creating.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GenaiCloudError, ProviderError, require
from .azureml import KEY_TAG, write_job_files
from .base import JobHandle, JobState, JobStatus

if TYPE_CHECKING:
    from ..plan import Plan

CREATE_ATTEMPTS = 4
BACKOFF_S = 2.0  # doubled per attempt
_sleep = time.sleep  # replaced in tests
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_ARM_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/([^/]+)/jobs/([^/]+)$",
    re.IGNORECASE,
)

STATES = {
    "NotStarted": JobState.PENDING,
    "Queued": JobState.PENDING,
    "Preparing": JobState.PENDING,
    "Provisioning": JobState.PENDING,
    "Starting": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Finalizing": JobState.RUNNING,
    "Paused": JobState.PENDING,
    "NotResponding": JobState.RUNNING,
    "CancelRequested": JobState.STOPPING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Canceled": JobState.STOPPED,
}


def ml_client(subscription_id: str | None = None, resource_group: str | None = None,
              workspace: str | None = None):  # fmt: skip
    """An MLClient for the workspace named, or for config.json's workspace when none is."""
    ml = require("azure.ai.ml", "azure")
    identity = require("azure.identity", "azure")
    credential = identity.DefaultAzureCredential()
    given = [subscription_id, resource_group, workspace]
    if all(given):
        return ml.MLClient(credential, subscription_id, resource_group, workspace)
    if any(given):
        missing = [n for n, v in zip(("subscription_id", "resource_group", "workspace"), given)
                   if not v]  # fmt: skip
        raise ProviderError(f"azure.{', azure.'.join(missing)} not set: give all three of "
                            "azure.subscription_id, azure.resource_group, azure.workspace, or "
                            "none and a config.json from the workspace")  # fmt: skip
    try:
        return ml.MLClient.from_config(credential)
    except Exception as exc:  # noqa: BLE001 - from_config raises several SDK-private types
        raise ProviderError(f"no Azure ML workspace configured ({exc}); set azure.subscription_id,"
                            " azure.resource_group and azure.workspace") from None  # fmt: skip


def _client_for(job_id: str):
    match = _ARM_ID.match(job_id)
    if match:
        sub, rg, ws, name = match.groups()
        return ml_client(sub, rg, ws), name
    if "/" in job_id:
        raise GenaiCloudError(f"{job_id!r} is not an Azure ML job id; expected the job name or "
                              "its ARM id (what `submit` printed)")  # fmt: skip
    return ml_client(), job_id


def _not_found():
    return require("azure.core.exceptions", "azure").ResourceNotFoundError


def _is_transient(exc: Exception) -> bool:
    errors = require("azure.core.exceptions", "azure")
    if isinstance(exc, (errors.ServiceRequestError, errors.ServiceResponseError)):
        return True
    return isinstance(exc, errors.HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


def _get(client, name: str):
    try:
        return client.jobs.get(name)
    except _not_found():
        return None


def _handle(job, *, created: bool) -> JobHandle:
    return JobHandle(provider="azureml", job_id=job.id or job.name, name=job.name,
                     created=created, console_url=getattr(job, "studio_url", None),
                     details={"state": job.status})  # fmt: skip


def load_rendered_job(plan: Plan, job: dict, directory: str | Path):
    """The rendered dict as an azure-ai-ml Job entity (its own loader validates it)."""
    ml = require("azure.ai.ml", "azure")
    return ml.load_job(write_job_files(plan, directory, job))


def submit(plan: Plan, job: dict) -> JobHandle:
    azure = plan.spec.azure
    client = ml_client(azure.subscription_id, azure.resource_group, azure.workspace)
    existing = _get(client, plan.job_name)
    if existing is not None:
        return _handle(existing, created=False)
    with tempfile.TemporaryDirectory(prefix="genai-azureml-") as tmp:
        entity = load_rendered_job(plan, job, tmp)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                # create_or_update uploads the code folder while `tmp` still exists.
                return _handle(client.jobs.create_or_update(entity), created=True)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if attempt == CREATE_ATTEMPTS - 1:
                    raise ProviderError(f"Azure ML did not accept the job after "
                                        f"{CREATE_ATTEMPTS} tries: {exc}") from None  # fmt: skip
                _sleep(BACKOFF_S * 2**attempt)
                existing = _get(client, plan.job_name)  # the failed call may have landed
                if existing is not None:
                    return _handle(existing, created=False)
    raise AssertionError("unreachable")


def _status_of(job) -> JobStatus:
    native = job.status or "Unknown"
    return JobStatus(job_id=job.id or job.name, state=STATES.get(native, JobState.PENDING),
                     native_state=native, details={"tags": dict(job.tags or {})})  # fmt: skip


def status(job_id: str) -> JobStatus:
    client, name = _client_for(job_id)
    return _status_of(client.jobs.get(name))


def cancel(job_id: str) -> None:
    client, name = _client_for(job_id)
    client.jobs.begin_cancel(name).result()


def list_jobs(labels: dict[str, str]) -> list[JobStatus]:
    client = ml_client()
    found = []
    for job in client.jobs.list():
        tags = job.tags or {}
        if KEY_TAG in tags and all(tags.get(k) == v for k, v in labels.items()):
            found.append(_status_of(job))
    return found


def logs(job_id: str, follow: bool = False) -> Iterator[str]:
    """Log lines of a job.

    With ``follow``, azure-ai-ml's own ``jobs.stream`` prints the live log to this process's
    stdout (the SDK offers no line iterator), and this yields the final state once it ends.
    Without it, a finished job's logs are downloaded and yielded line by line.
    """
    client, name = _client_for(job_id)
    if follow:
        try:
            client.jobs.stream(name)
        except require("azure.ai.ml.exceptions", "azure").JobException:
            pass  # stream raises when the job failed; the state line below says so
        yield f"job {name} ended: {client.jobs.get(name).status}"
        return
    job = client.jobs.get(name)
    if STATES.get(job.status, JobState.PENDING) not in (JobState.SUCCEEDED, JobState.FAILED,
                                                        JobState.STOPPED):  # fmt: skip
        raise ProviderError(f"job {name} is {job.status}: Azure ML serves a running job's log "
                            "only as a stream; use `logs --follow`")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="genai-azlogs-") as tmp:
        client.jobs.download(name, download_path=tmp)
        files = sorted(Path(tmp).rglob("*.txt"), key=lambda p: (not p.name.startswith("std_"), p))
        for path in files:
            yield from path.read_text(errors="replace").splitlines()
