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

from ...errors import ProviderError, require
from ..base import JobHandle, JobState, JobStatus
from ..retry import call_with_retries
from .render import KEY_LABEL, bundle_uri, default_region

if TYPE_CHECKING:
    from ...plan import Plan

# Tries per call. Six with backoff capped at 20 s ride out ~1 minute of throttling, about what
# google.api_core's own default retry deadline allows.
CALL_ATTEMPTS = 6
BACKOFF_S = 2.0  # doubled per attempt: 2, 4, 8, 16, 20 s
MAX_BACKOFF_S = 20.0
LOG_POLL_S = 10.0  # Cloud Logging ingestion lags by seconds; polling faster buys nothing
_sleep = time.sleep  # replaced in tests
# Vertex's wording for a stockout (job error code 8, or a create refused for lack of machines).
_STOCKOUT = re.compile(r"resources? (are|is) insufficient|insufficient (resources|capacity)|"
                       r"stockout|does not have enough resources|out of capacity|"
                       r"RESOURCE_POOL_EXHAUSTED", re.IGNORECASE)  # fmt: skip
# Per-minute request quotas are rate limits: wait and retry, do not move the job elsewhere.
_RATE_LIMIT = re.compile(r"per minute|per second|requests per|rate limit", re.IGNORECASE)
_SPOT = re.compile(r"spot|preemptible", re.IGNORECASE)  # quota metrics: ..._preemptible_..._gpus
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


def resolve_project(project: str | None) -> str:
    if project:
        return project
    google_auth = require("google.auth", "gcp")
    auth_errors = require("google.auth.exceptions", "gcp")
    try:
        _, found = google_auth.default()
    except auth_errors.DefaultCredentialsError as exc:
        raise ProviderError(f"no Google Cloud credentials ({exc}); run "
                            "`gcloud auth application-default login`",
                            headline="Google Cloud credentials not found") from None  # fmt: skip
    if not found:
        raise ProviderError("gcp.project is not set and the credentials name no project; set "
                            "gcp.project (or GOOGLE_CLOUD_PROJECT)",
                            headline="Google Cloud project not set")  # fmt: skip
    return found


def parse_job_name(job_id: str) -> tuple[str, str, str]:
    """``projects/P/locations/R/customJobs/ID`` -> (P, R, ID)."""
    match = _JOB_NAME.match(job_id)
    if not match:
        raise ProviderError(
            f"{job_id!r} is not a Vertex job id; expected projects/P/locations/R/customJobs/ID "
            "(what `submit` printed)", headline="Invalid Vertex job id"
        )
    return match.group(1), match.group(2), match.group(3)


def to_proto(job: dict):
    """The rendered dict as an ``aiplatform_v1.CustomJob``; unknown fields raise."""
    aip = _aiplatform()
    return aip.CustomJob.from_json(json.dumps(job))


def _transient():
    exceptions = require("google.api_core.exceptions", "gcp")
    requests = require("requests", "gcp")  # what google-cloud-storage speaks underneath
    return (exceptions.TooManyRequests, exceptions.InternalServerError, exceptions.BadGateway,
            exceptions.ServiceUnavailable, exceptions.GatewayTimeout, ConnectionError,
            requests.exceptions.ConnectionError, requests.exceptions.Timeout)  # fmt: skip


def placement_problem(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, message)`` when a Vertex answer means no capacity / quota / spot for this
    placement, else None. A 429 ResourceExhausted is a quota unless it is a per-minute request
    rate (those are throttling, retried here)."""
    exceptions = require("google.api_core.exceptions", "gcp")
    if not isinstance(exc, exceptions.GoogleAPICallError):
        return None
    text = str(exc.message or exc)
    spot = bool(_SPOT.search(text))
    if _STOCKOUT.search(text):
        return ("spot" if spot else "capacity"), text
    if isinstance(exc, exceptions.ResourceExhausted) and not _RATE_LIMIT.search(text):
        return ("spot" if spot else "quota"), text
    return None


def placement_problem_in_status(status: JobStatus) -> str | None:
    """Why a job that ended got no machines (Vertex: error code 8 "Resources are insufficient in
    region ..."), else None."""
    text = status.message or ""
    if status.state is not JobState.FAILED or not _STOCKOUT.search(text):
        return None
    return f"{'spot' if _SPOT.search(text) else 'capacity'}: {text}"


class Unavailable(ProviderError):
    """Vertex AI (or Cloud Storage) stayed throttled or unreachable through every retry."""

    headline = "Vertex AI unavailable"


def _call(what: str, fn, *args, attempts: int = CALL_ATTEMPTS, **kwargs):
    """``fn(*args, **kwargs)``, retried on throttling and transient errors.

    Raises:
        PlacementError: no capacity / quota / spot (another placement may have it).
        Unavailable: still throttled / unreachable after ``attempts`` tries.
        ProviderError: any other Vertex answer.
    """
    exceptions = require("google.api_core.exceptions", "gcp")

    def translate(exc: Exception) -> Exception | None:
        if isinstance(exc, exceptions.GoogleAPICallError):
            return ProviderError(f"{what}: {exc}", headline="Vertex AI request failed")
        return None

    return call_with_retries(
        what, lambda: fn(*args, **kwargs), attempts=attempts,
        is_transient=lambda exc: isinstance(exc, _transient()),
        placement_problem=placement_problem, unavailable=Unavailable, translate=translate,
        delay=lambda attempt: min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S),
        sleep=lambda seconds: _sleep(seconds),  # looked up per call: tests replace _sleep
    )  # fmt: skip


def find_by_key(client, parent: str, key: str):
    request = {"parent": parent, "filter": f'labels.{KEY_LABEL}="{key}"'}
    # list() returns a pager that fetches lazily: take the first page inside the retry.
    return _call(f"looking up the job labelled {KEY_LABEL}={key}",
                 lambda: next(iter(client.list_custom_jobs(request=request)), None))  # fmt: skip


def _handle(job, *, created: bool, uploaded: bool) -> JobHandle:
    project, region, job_id = parse_job_name(job.name)
    return JobHandle(
        provider="vertex", job_id=job.name, name=job.display_name, created=created,
        console_url=f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/"
                    f"{job_id}/cpu?project={project}",
        details={"state": job.state.name, "bundle_uploaded": uploaded},
    )  # fmt: skip


def _parent(plan: Plan) -> tuple[str, str]:
    return resolve_project(plan.spec.gcp.project), plan.placement.region


def _status_of(job) -> JobStatus:
    native = job.state.name
    message = job.error.message if job.error and job.error.message else None
    return JobStatus(job_id=job.name, state=STATES.get(native, JobState.PENDING),
                     native_state=native, message=message, details=_details(job))  # fmt: skip


def _iso(stamp) -> str | None:
    """A proto Timestamp (proto-plus gives a datetime, None when unset) as an ISO string."""
    return stamp.isoformat() if stamp else None


def _details(job) -> dict:
    """What the cross-provider job table prices a job by (see jobs.py): times, the machine of
    pool 0 (every pool of a genai-cloud job runs the same machine), machines and spot."""
    pools = list(job.job_spec.worker_pool_specs)
    machine = pools[0].machine_spec if pools else None
    spot = job.job_spec.scheduling.strategy == _aiplatform().Scheduling.Strategy.SPOT
    details = {
        "display_name": job.display_name, "labels": dict(job.labels),
        "created": _iso(job.create_time), "started": _iso(job.start_time),
        "ended": _iso(job.end_time),
        "machine_type": machine.machine_type if machine else None,
        "accelerator_count": machine.accelerator_count if machine else None,
        "instance_count": sum(p.replica_count for p in pools) or None, "spot": spot,
    }  # fmt: skip
    return {k: v for k, v in details.items() if v is not None}


def _entry_text(entry) -> str:
    payload = entry.payload
    if isinstance(payload, dict):
        return str(payload.get("message", json.dumps(payload, sort_keys=True)))
    return str(payload)


class VertexOps:
    """The Vertex AI calls of one ``VertexProvider``: one JobServiceClient per region, made on
    first use (each holds a gRPC channel to its regional endpoint)."""

    def __init__(self):
        self.clients: dict[str, object] = {}

    def job_client(self, region: str):
        if region not in self.clients:
            self.clients[region] = _aiplatform().JobServiceClient(
                client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
            )
        return self.clients[region]

    def upload_bundle(self, plan: Plan, project: str) -> bool:
        """Put the bundle at its content-hash path; False when it was already there."""
        storage = require("google.cloud.storage", "gcp")
        exceptions = require("google.api_core.exceptions", "gcp")
        uri = bundle_uri(plan)
        bucket, _, path = uri[len("gs://") :].partition("/")
        blob = storage.Client(project=project).bucket(bucket).blob(path)
        if _call(f"checking {uri}", blob.exists):
            return False

        def create_only() -> bool:
            # if_generation_match=0: create only. A retry after a lost answer, or a concurrent
            # identical upload, finds the object there: not an error.
            try:
                blob.upload_from_string(plan.bundle.data, content_type="application/gzip",
                                        if_generation_match=0)  # fmt: skip
            except exceptions.PreconditionFailed:
                return False
            return True

        return _call(f"uploading the bundle to {uri}", create_only)

    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        """The job this plan already launched (found by its key label), with its status."""
        project, region = _parent(plan)
        parent = f"projects/{project}/locations/{region}"
        job = find_by_key(self.job_client(region), parent, plan.key)
        if job is None:
            return None
        return _handle(job, created=False, uploaded=False), _status_of(job)

    def submit(self, plan: Plan, job: dict) -> JobHandle:
        project, region = _parent(plan)
        parent = f"projects/{project}/locations/{region}"
        uploaded = self.upload_bundle(plan, project)
        client = self.job_client(region)
        existing = find_by_key(client, parent, plan.key)
        if existing is not None:
            return _handle(existing, created=False, uploaded=uploaded)
        custom_job = to_proto(job)
        what = f"creating CustomJob {plan.job_name!r} in {parent}"
        for attempt in range(CALL_ATTEMPTS):
            try:
                # One try per call here: between tries the job is looked up, because a create
                # whose answer was lost (timeout, 503 from a proxy) may have landed.
                created = _call(what, client.create_custom_job, parent=parent,
                                custom_job=custom_job, attempts=1)  # fmt: skip
                return _handle(created, created=True, uploaded=uploaded)
            except Unavailable as exc:
                if attempt == CALL_ATTEMPTS - 1:
                    raise Unavailable(f"Vertex AI did not accept the job after {CALL_ATTEMPTS} "
                                      f"tries: {exc.message}") from None
                _sleep(min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S))
                existing = find_by_key(client, parent, plan.key)
                if existing is not None:
                    return _handle(existing, created=False, uploaded=uploaded)
        raise AssertionError("unreachable")

    def status(self, job_id: str) -> JobStatus:
        client = self.job_client(parse_job_name(job_id)[1])
        return _status_of(_call(f"reading {job_id}", client.get_custom_job, name=job_id))

    def cancel(self, job_id: str) -> None:
        client = self.job_client(parse_job_name(job_id)[1])
        _call(f"cancelling {job_id}", client.cancel_custom_job, name=job_id)

    def list(self, labels: dict[str, str], *, project: str | None = None,
             region: str | None = None) -> list[JobStatus]:  # fmt: skip
        project = resolve_project(project)
        region = region or default_region()
        terms = [f"labels.{KEY_LABEL}:*"] + [f'labels.{k}="{v}"' for k, v in sorted(labels.items())]
        request = {"parent": f"projects/{project}/locations/{region}", "filter": " AND ".join(terms)}
        return [_status_of(job) for job in self.job_client(region).list_custom_jobs(request=request)]

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        """The job's log lines from Cloud Logging; with ``follow``, poll until the job ends."""
        project, _, numeric_id = parse_job_name(job_id)
        gcl = require("google.cloud.logging", "gcp")
        client = gcl.Client(project=project)
        base = f'resource.type="ml_job" AND resource.labels.job_id="{numeric_id}"'
        last, seen_at_last = None, set()
        while True:
            # Read the state first: lines written before the job ended are all in the next read.
            done = not follow or self.status(job_id).state.done
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

    def register(self, plan: Plan) -> str:
        """Upload the plan's finished job's model (``<output>/<job>/model/``, what AIP_MODEL_DIR
        named) to the Vertex Model Registry as ``output.register.name``: a new version when a model
        of that name exists. Registering the same job again returns the version made before (found
        by the plan's key label). Returns the model's resource name with its version
        (``projects/P/locations/R/models/M@V``).
        """
        from .render import output_base

        settings = plan.spec.output.register_model
        if settings is None:
            raise ProviderError("output.register is not set: name the model and the serving image",
                                headline="Nothing to register")  # fmt: skip
        if not settings.image_uri:
            raise ProviderError("output.register.image_uri: required on Vertex AI, the serving "
                                "container image of the model", headline="Nothing to register")
        project, region = _parent(plan)
        parent = f"projects/{project}/locations/{region}"
        job = find_by_key(self.job_client(region), parent, plan.key)
        if job is None or job.state.name != "JOB_STATE_SUCCEEDED":
            state = job.state.name if job is not None else "not launched"
            raise ProviderError(f"job {plan.job_name} is {state}; register its model once it has "
                                "succeeded", headline="Not ready")  # fmt: skip
        models = model_client(region)
        done = _call("looking up registered models", models.list_models,
                     request={"parent": parent, "filter": f'labels.{KEY_LABEL}="{plan.key}"'})  # fmt: skip
        for model in done:
            return f"{model.name}@{model.version_id}"
        same_name = list(_call("looking up models by name", models.list_models,
                               request={"parent": parent,
                                        "filter": f'display_name="{settings.name}"'}))  # fmt: skip
        aip = _aiplatform()
        model = aip.Model(
            display_name=settings.name,
            description=(settings.description or f"genai-cloud job {plan.job_name}")[:2048],
            artifact_uri=f"{output_base(plan.spec, plan.job_name)}/model/",
            container_spec=aip.ModelContainerSpec(image_uri=settings.image_uri),
            labels={KEY_LABEL: plan.key},
        )  # fmt: skip
        request = {"parent": parent, "model": model}
        if same_name:
            request["parent_model"] = same_name[0].name  # a new version of that model
        operation = _call(f"uploading model {settings.name!r}", models.upload_model, request=request)
        answer = operation.result()
        return f"{answer.model}@{answer.model_version_id}"


def model_client(region: str):
    return _aiplatform().ModelServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
    )
