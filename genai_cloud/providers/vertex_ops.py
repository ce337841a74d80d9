"""Vertex AI operations: upload, describe-or-create, status, logs, cancel, list.

Every SDK import happens here, inside functions, through ``require`` (pip hint on failure). The
request that ``submit`` sends is exactly ``vertex.render_custom_job(plan)`` turned into a proto.

Idempotency: Vertex assigns CustomJob ids server-side and has no client-chosen id, so the plan's
key travels in the ``genai-cloud-key`` label and ``submit`` lists jobs by that label before it
creates one. A create that times out or is throttled may still have happened, so each retry
looks the label up again before creating.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import GenaiCloudError, ProviderError, require
from .base import JobHandle, JobState, JobStatus
from .vertex import DEFAULT_REGION, KEY_LABEL, bundle_uri

if TYPE_CHECKING:
    from ..plan import Plan

CREATE_ATTEMPTS = 4
BACKOFF_S = 2.0  # doubled per attempt: 2, 4, 8 s
LOG_POLL_S = 10.0  # Cloud Logging ingestion lags by seconds; polling faster buys nothing
_sleep = time.sleep  # replaced in tests
_JOB_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/customJobs/([^/]+)$")

STATES = {
    "JOB_STATE_QUEUED": JobState.PENDING,
    "JOB_STATE_PENDING": JobState.PENDING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_PAUSED": JobState.PENDING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_CANCELLING": JobState.STOPPING,
    "JOB_STATE_CANCELLED": JobState.STOPPED,
    "JOB_STATE_UNSPECIFIED": JobState.PENDING,
}


def _aiplatform():
    return require("google.cloud.aiplatform_v1", "gcp")


def job_client(region: str):
    aip = _aiplatform()
    return aip.JobServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
    )


def resolve_project(project: str | None) -> str:
    if project:
        return project
    google_auth = require("google.auth", "gcp")
    auth_errors = require("google.auth.exceptions", "gcp")
    try:
        _, found = google_auth.default()
    except auth_errors.DefaultCredentialsError as exc:
        raise ProviderError(f"no Google Cloud credentials ({exc}); run "
                            "`gcloud auth application-default login`") from None  # fmt: skip
    if not found:
        raise ProviderError("gcp.project is not set and the credentials name no project")
    return found


def parse_job_name(job_id: str) -> tuple[str, str, str]:
    """``projects/P/locations/R/customJobs/ID`` -> (P, R, ID)."""
    match = _JOB_NAME.match(job_id)
    if not match:
        raise GenaiCloudError(
            f"{job_id!r} is not a Vertex job id; expected projects/P/locations/R/customJobs/ID "
            "(what `submit` printed)"
        )
    return match.group(1), match.group(2), match.group(3)


def to_proto(job: dict):
    """The rendered dict as an ``aiplatform_v1.CustomJob``; unknown fields raise."""
    aip = _aiplatform()
    return aip.CustomJob.from_json(json.dumps(job))


def upload_bundle(plan: Plan, project: str) -> bool:
    """Put the bundle at its content-hash path; False when it was already there."""
    storage = require("google.cloud.storage", "gcp")
    exceptions = require("google.api_core.exceptions", "gcp")
    bucket, _, path = bundle_uri(plan)[len("gs://") :].partition("/")
    blob = storage.Client(project=project).bucket(bucket).blob(path)
    if blob.exists():
        return False
    try:
        # if_generation_match=0: create only; a concurrent identical upload is not an error.
        blob.upload_from_string(plan.bundle.data, content_type="application/gzip",
                                if_generation_match=0)  # fmt: skip
    except exceptions.PreconditionFailed:
        return False
    return True


def find_by_key(client, parent: str, key: str):
    request = {"parent": parent, "filter": f'labels.{KEY_LABEL}="{key}"'}
    for job in client.list_custom_jobs(request=request):
        return job
    return None


def _handle(job, *, created: bool, uploaded: bool) -> JobHandle:
    project, region, job_id = parse_job_name(job.name)
    return JobHandle(
        provider="vertex", job_id=job.name, name=job.display_name, created=created,
        console_url=f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/"
                    f"{job_id}/cpu?project={project}",
        details={"state": job.state.name, "bundle_uploaded": uploaded},
    )  # fmt: skip


def submit(plan: Plan, job: dict) -> JobHandle:
    exceptions = require("google.api_core.exceptions", "gcp")
    transient = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                 exceptions.TooManyRequests, exceptions.InternalServerError)  # fmt: skip
    project = resolve_project(plan.spec.gcp.project)
    region = plan.spec.gcp.region or DEFAULT_REGION
    parent = f"projects/{project}/locations/{region}"
    uploaded = upload_bundle(plan, project)
    client = job_client(region)
    existing = find_by_key(client, parent, plan.key)
    if existing is not None:
        return _handle(existing, created=False, uploaded=uploaded)
    custom_job = to_proto(job)
    for attempt in range(CREATE_ATTEMPTS):
        try:
            created = client.create_custom_job(parent=parent, custom_job=custom_job)
            return _handle(created, created=True, uploaded=uploaded)
        except transient as exc:
            if attempt == CREATE_ATTEMPTS - 1:
                raise ProviderError(f"Vertex AI did not accept the job after {CREATE_ATTEMPTS} "
                                    f"tries: {exc}") from None  # fmt: skip
            _sleep(BACKOFF_S * 2**attempt)
            existing = find_by_key(client, parent, plan.key)  # the failed call may have landed
            if existing is not None:
                return _handle(existing, created=False, uploaded=uploaded)
    raise AssertionError("unreachable")


def _status_of(job) -> JobStatus:
    native = job.state.name
    message = job.error.message if job.error and job.error.message else None
    return JobStatus(job_id=job.name, state=STATES.get(native, JobState.PENDING),
                     native_state=native, message=message,
                     details={"display_name": job.display_name,
                              "labels": dict(job.labels)})  # fmt: skip


def status(job_id: str) -> JobStatus:
    region = parse_job_name(job_id)[1]
    return _status_of(job_client(region).get_custom_job(name=job_id))


def cancel(job_id: str) -> None:
    region = parse_job_name(job_id)[1]
    job_client(region).cancel_custom_job(name=job_id)


def list_jobs(labels: dict[str, str], *, project: str | None = None,
              region: str | None = None) -> list[JobStatus]:  # fmt: skip
    project = resolve_project(project)
    region = region or DEFAULT_REGION
    terms = [f"labels.{KEY_LABEL}:*"] + [f'labels.{k}="{v}"' for k, v in sorted(labels.items())]
    request = {"parent": f"projects/{project}/locations/{region}", "filter": " AND ".join(terms)}
    return [_status_of(job) for job in job_client(region).list_custom_jobs(request=request)]


def _entry_text(entry) -> str:
    payload = entry.payload
    if isinstance(payload, dict):
        return str(payload.get("message", json.dumps(payload, sort_keys=True)))
    return str(payload)


def logs(job_id: str, follow: bool = False) -> Iterator[str]:
    """The job's log lines from Cloud Logging; with ``follow``, poll until the job ends."""
    project, _, numeric_id = parse_job_name(job_id)
    gcl = require("google.cloud.logging", "gcp")
    client = gcl.Client(project=project)
    base = f'resource.type="ml_job" AND resource.labels.job_id="{numeric_id}"'
    last, seen_at_last = None, set()
    while True:
        # Read the state first: lines written before the job ended are then all in the next read.
        done = not follow or status(job_id).state.done
        query = base + (f' AND timestamp>="{last}"' if last else "")
        for entry in client.list_entries(filter_=query, order_by=gcl.ASCENDING):
            stamp = entry.timestamp.isoformat() if entry.timestamp else last
            ident = entry.insert_id or _entry_text(entry)
            if stamp == last and ident in seen_at_last:
                continue  # `>=` re-reads the newest second; skip what was shown
            if stamp != last:
                last, seen_at_last = stamp, set()
            seen_at_last.add(ident)
            yield _entry_text(entry)
        if done:
            return
        _sleep(LOG_POLL_S)
