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

import contextlib
import functools
import inspect
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ProviderError, require
from ..base import JobHandle, JobState, JobStatus
from ..retry import call_with_retries
from .render import KEY_TAG, write_job_files

if TYPE_CHECKING:
    from ...plan import Plan

CALL_ATTEMPTS = 6  # with backoff capped at 20 s: about a minute of throttling ridden out
BACKOFF_S = 2.0  # doubled per attempt
MAX_BACKOFF_S = 20.0
_sleep = time.sleep  # replaced in tests
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# Azure's words for "not here, not now": quota (QuotaExceeded, OperationNotAllowed "... exceeding
# approved ... quota"), capacity (AllocationFailed, ZonalAllocationFailed, SkuNotAvailable,
# OverconstrainedAllocationRequest) and low-priority (spot) core quota.
_QUOTA = re.compile(r"quota", re.IGNORECASE)
_CAPACITY = re.compile(r"capacity|AllocationFailed|SkuNotAvailable|Overconstrained|"
                       r"not enough (cores|nodes|resources)", re.IGNORECASE)  # fmt: skip
_SPOT = re.compile(r"low.?priority|spot", re.IGNORECASE)
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


# The scope azure-ai-ml's management calls ask for (Azure public cloud).
ARM_SCOPE = "https://management.azure.com/.default"
# azure.identity logs every credential it tried at WARNING when none works (a dozen lines that
# Python's last-resort handler prints before our one-line error); azure.core's pipeline logs
# retries and request details. Our errors say what went wrong; these stay quiet while we call.
QUIET_LOGGERS = ("azure.identity", "azure.core.pipeline")


@contextlib.contextmanager
def quiet_azure_logs():
    """Raise the SDK loggers above to ERROR for the duration; a logger somebody gave a level
    of their own (to debug a login, say) is left as it is."""
    changed = []
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)
            changed.append(logger)
    try:
        yield
    finally:
        for logger in changed:
            logger.setLevel(logging.NOTSET)


def _quiet(operation):
    """Run an operation (a generator too, for as long as it is iterated) with quiet_azure_logs."""
    if inspect.isgeneratorfunction(operation):

        @functools.wraps(operation)
        def quiet_generator(*args, **kwargs):
            with quiet_azure_logs():
                yield from operation(*args, **kwargs)

        return quiet_generator

    @functools.wraps(operation)
    def quiet(*args, **kwargs):
        with quiet_azure_logs():
            return operation(*args, **kwargs)

    return quiet


class _FirstToken:
    """A credential that hands out the management token it was created with (until five
    minutes before it expires), and asks the wrapped credential for anything else."""

    def __init__(self, credential, scope: str, token):
        self._credential, self._scope, self._token = credential, scope, token

    def _cached(self, scopes: tuple, extra: dict) -> bool:
        expires = self._token.expires_on
        fresh = isinstance(expires, (int, float)) and expires - 300 > time.time()
        return fresh and scopes == (self._scope,) and not any(extra.values())

    def get_token(self, *scopes: str, **kwargs):
        if self._cached(scopes, kwargs):
            from azure.core.credentials import AccessToken

            return AccessToken(self._token.token, self._token.expires_on)
        return self._credential.get_token(*scopes, **kwargs)

    def close(self) -> None:
        self._credential.close()

    def __enter__(self):
        self._credential.__enter__()
        return self

    def __exit__(self, *args) -> None:
        self._credential.__exit__(*args)


class _FirstTokenInfo(_FirstToken):
    """The same for a credential that has ``get_token_info`` (azure-identity 1.18+; azure-core
    then prefers it), whose answer is what is kept."""

    def get_token_info(self, *scopes: str, options=None):
        if self._cached(scopes, dict(options or {})):
            return self._token
        return self._credential.get_token_info(*scopes, options=options)


def credential():
    """DefaultAzureCredential, asked for a management token before azure-ai-ml is imported:
    without any credential this fails in about a second instead of after the seconds that
    importing azure-ai-ml and building an MLClient take. The token is then reused by MLClient's
    first calls, so a working login costs nothing extra (the Azure CLI's credential caches no
    token: without this, each call would run `az` again).

    Raises:
        azure.core.exceptions.ClientAuthenticationError: no credential gave a token (the
            provider's ``credentials_hint`` turns it into the `az login` hint).
    """
    identity = require("azure.identity", "azure")
    found = identity.DefaultAzureCredential()
    if os.environ.get("AZUREML_CURRENT_CLOUD", "AzureCloud").lower() != "azurecloud":
        return found  # a sovereign cloud has its own management scope: azure-ai-ml asks for it
    with quiet_azure_logs():
        if hasattr(found, "get_token_info"):
            return _FirstTokenInfo(found, ARM_SCOPE, found.get_token_info(ARM_SCOPE))
        if hasattr(found, "get_token"):
            return _FirstToken(found, ARM_SCOPE, found.get_token(ARM_SCOPE))
    return found


def ml_client(subscription_id: str | None = None, resource_group: str | None = None,
              workspace: str | None = None):  # fmt: skip
    """An MLClient for the workspace named, or for config.json's workspace when none is."""
    given = [subscription_id, resource_group, workspace]
    if any(given) and not all(given):
        missing = [n for n, v in zip(("subscription_id", "resource_group", "workspace"), given)
                   if not v]  # fmt: skip
        raise ProviderError(f"azure.{', azure.'.join(missing)} not set: give all three of "
                            "azure.subscription_id, azure.resource_group, azure.workspace, or "
                            "none and a config.json from the workspace",
                            headline="Azure ML workspace not configured")  # fmt: skip
    login = credential()
    ml = require("azure.ai.ml", "azure")
    if all(given):
        return ml.MLClient(login, subscription_id, resource_group, workspace)
    try:
        return ml.MLClient.from_config(login)
    except Exception as exc:  # noqa: BLE001 - from_config raises several SDK-private types
        raise ProviderError(f"no Azure ML workspace configured ({exc}); set azure.subscription_id,"
                            " azure.resource_group and azure.workspace",
                            headline="Azure ML workspace not configured") from None  # fmt: skip


def _not_found():
    return require("azure.core.exceptions", "azure").ResourceNotFoundError


def _is_transient(exc: Exception) -> bool:
    errors = require("azure.core.exceptions", "azure")
    if isinstance(exc, (errors.ServiceRequestError, errors.ServiceResponseError)):
        return True
    return isinstance(exc, errors.HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


def placement_problem(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, message)`` when an Azure answer means no capacity / quota / spot for this
    placement (kind: ``capacity``, ``quota`` or ``spot``), else None."""
    errors = require("azure.core.exceptions", "azure")
    if not isinstance(exc, errors.HttpResponseError):
        return None
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    text = f"{code}: {exc.message}" if code else str(exc.message)
    return _classify(text)


def _classify(text: str) -> tuple[str, str] | None:
    if _QUOTA.search(text):
        return ("spot" if _SPOT.search(text) else "quota"), text
    if _CAPACITY.search(text):
        return ("spot" if _SPOT.search(text) else "capacity"), text
    return None


def placement_problem_in_status(status: JobStatus) -> str | None:
    """Why a job that ended got no machines, when its status message says so, else None."""
    if status.state is not JobState.FAILED or not status.message:
        return None
    problem = _classify(status.message)
    return f"{problem[0]}: {problem[1]}" if problem else None


class Unavailable(ProviderError):
    """Azure ML stayed throttled or unreachable through every retry."""

    headline = "Azure ML unavailable"


def _call(what: str, fn, *args, attempts: int = CALL_ATTEMPTS, **kwargs):
    """``fn(*args, **kwargs)``, retried on throttling and transient errors.

    Raises:
        PlacementError: no capacity / quota / spot (another placement may have it).
        Unavailable: still throttled / unreachable after ``attempts`` tries.
    """
    return call_with_retries(
        what, lambda: fn(*args, **kwargs), attempts=attempts, is_transient=_is_transient,
        placement_problem=placement_problem, unavailable=Unavailable,
        delay=lambda attempt: min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S),
        sleep=lambda seconds: _sleep(seconds),  # looked up per call: tests replace _sleep
    )  # fmt: skip


def _get(client, name: str):
    not_found = _not_found()

    def get():
        try:
            return client.jobs.get(name)
        except not_found:
            return None

    return _call(f"looking up job {name!r}", get)


def _handle(job, *, created: bool) -> JobHandle:
    return JobHandle(provider="azureml", job_id=job.id or job.name, name=job.name,
                     created=created, console_url=getattr(job, "studio_url", None),
                     details={"state": job.status})  # fmt: skip


def load_rendered_job(plan: Plan, job: dict, directory: str | Path):
    """The rendered dict as an azure-ai-ml Job entity (its own loader validates it)."""
    ml = require("azure.ai.ml", "azure")
    return ml.load_job(write_job_files(plan, directory, job))


def _status_of(job) -> JobStatus:
    native = job.status or "Unknown"
    return JobStatus(job_id=job.id or job.name, state=STATES.get(native, JobState.PENDING),
                     native_state=native, details=_details(job))  # fmt: skip


def _details(job) -> dict:
    """What the cross-provider job table prices a job by (see jobs.py). Azure ML's job entity
    carries its creation time but no start or end time, so a running job is billed from its
    creation (queueing included: an upper bound) and a finished one's runtime is unknown.
    ``instance_type`` is only on serverless jobs; on a cluster the table reads the tag
    render_command_job adds. Every attribute is read defensively: ``jobs.list`` answers with
    lighter entities than ``jobs.get``."""
    created = getattr(getattr(job, "creation_context", None), "created_at", None)
    resources = getattr(job, "resources", None)
    tier = getattr(getattr(job, "queue_settings", None), "job_tier", None)
    instance_type = getattr(resources, "instance_type", None)  # the SDK allows a list too
    details = {
        "name": job.name, "display_name": getattr(job, "display_name", None),
        "tags": dict(job.tags or {}),
        "created": created.isoformat() if hasattr(created, "isoformat") else created,
        "instance_type": instance_type if isinstance(instance_type, str) else None,
        "instance_count": getattr(resources, "instance_count", None),
        "spot": str(tier).lower() == "spot" if tier else None,
    }  # fmt: skip
    return {k: v for k, v in details.items() if v is not None}


class AzureMLOps:
    """The Azure ML calls of one ``AzureMLProvider``: one MLClient per workspace, made on first
    use (making one signs in and reads the workspace)."""

    def __init__(self):
        self.clients: dict[tuple[str | None, str | None, str | None], object] = {}

    def client(self, subscription_id: str | None = None, resource_group: str | None = None,
               workspace: str | None = None):  # fmt: skip
        """The workspace's MLClient (config.json's workspace when none is named)."""
        key = (subscription_id, resource_group, workspace)
        if key not in self.clients:
            self.clients[key] = ml_client(*key)
        return self.clients[key]

    def _workspace_client(self, plan: Plan):
        azure = plan.spec.azure
        return self.client(azure.subscription_id, azure.resource_group, azure.workspace)

    def _client_for(self, job_id: str):
        """The client and job name of a job id: an ARM id names its workspace, a bare name
        is in config.json's."""
        match = _ARM_ID.match(job_id)
        if match:
            sub, rg, ws, name = match.groups()
            return self.client(sub, rg, ws), name
        if "/" in job_id:
            raise ProviderError(f"{job_id!r} is not an Azure ML job id; expected the job name "
                                "or its ARM id (what `submit` printed)",
                                headline="Invalid Azure ML job id")  # fmt: skip
        return self.client(), job_id

    @_quiet
    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        """The job this plan already launched (the job name is the plan's), with its status."""
        job = _get(self._workspace_client(plan), plan.job_name)
        return None if job is None else (_handle(job, created=False), _status_of(job))

    @_quiet
    def submit(self, plan: Plan, job: dict) -> JobHandle:
        client = self._workspace_client(plan)
        existing = _get(client, plan.job_name)
        if existing is not None:
            return _handle(existing, created=False)
        what = f"creating job {plan.job_name!r}"
        with tempfile.TemporaryDirectory(prefix="genai-azureml-") as tmp:
            entity = load_rendered_job(plan, job, tmp)
            for attempt in range(CALL_ATTEMPTS):
                try:
                    # One try per call: between tries the job is looked up, because a create
                    # whose answer was lost may have landed. create_or_update uploads the code
                    # folder while `tmp` still exists.
                    made = _call(what, client.jobs.create_or_update, entity, attempts=1)
                    return _handle(made, created=True)
                except Unavailable as exc:
                    if attempt == CALL_ATTEMPTS - 1:
                        raise Unavailable(f"Azure ML did not accept the job after "
                                          f"{CALL_ATTEMPTS} tries: {exc.message}") from None  # fmt: skip
                    _sleep(min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S))
                    existing = _get(client, plan.job_name)
                    if existing is not None:
                        return _handle(existing, created=False)
        raise AssertionError("unreachable")

    @_quiet
    def status(self, job_id: str) -> JobStatus:
        client, name = self._client_for(job_id)
        return _status_of(client.jobs.get(name))

    @_quiet
    def cancel(self, job_id: str) -> None:
        client, name = self._client_for(job_id)
        client.jobs.begin_cancel(name).result()

    @_quiet
    def list(self, labels: dict[str, str]) -> list[JobStatus]:
        found = []
        for job in self.client().jobs.list():
            tags = job.tags or {}
            if KEY_TAG in tags and all(tags.get(k) == v for k, v in labels.items()):
                found.append(_status_of(job))
        return found

    @_quiet
    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        """Log lines of a job.

        With ``follow``, azure-ai-ml's own ``jobs.stream`` prints the live log to this process's
        stdout (the SDK offers no line iterator), and this yields the final state once it ends.
        Without it, a finished job's logs are downloaded and yielded line by line.
        """
        client, name = self._client_for(job_id)
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
            raise ProviderError(f"job {name} is {job.status}: Azure ML serves a running job's "
                                "log only as a stream; use `logs --follow`")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="genai-azlogs-") as tmp:
            client.jobs.download(name, download_path=tmp)
            files = sorted(Path(tmp).rglob("*.txt"),
                           key=lambda p: (not p.name.startswith("std_"), p))  # fmt: skip
            for path in files:
                yield from path.read_text(errors="replace").splitlines()

    @_quiet
    def register(self, plan: Plan) -> str:
        """Register the plan's completed job's ``model`` output as a version of the workspace model
        ``output.register.name`` (versions count up); registering the same job again returns the
        version made before (found by the plan's key tag). Returns ``azureml:<name>:<version>``."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        from .render import KEY_TAG

        settings = plan.spec.output.register_model
        if settings is None:
            raise ProviderError("output.register is not set: name the model",
                                headline="Nothing to register")  # fmt: skip
        client = self._workspace_client(plan)
        job = _get(client, plan.job_name)
        if job is None or job.status != "Completed":
            state = job.status if job is not None else "not launched"
            raise ProviderError(f"job {plan.job_name} is {state}; register its model once it has "
                                "completed", headline="Not ready")  # fmt: skip
        not_found = _not_found()

        def versions() -> list:
            try:
                return list(client.models.list(name=settings.name))  # paged: requests while read
            except not_found:
                return []  # no model of that name yet

        for model in _call(f"listing model {settings.name!r}", versions):
            if (model.tags or {}).get(KEY_TAG) == plan.key:
                return f"azureml:{model.name}:{model.version}"
        entity = Model(name=settings.name, type=AssetTypes.CUSTOM_MODEL,
                       path=f"azureml://jobs/{plan.job_name}/outputs/model",
                       description=settings.description or f"genai-cloud job {plan.job_name}",
                       tags={KEY_TAG: plan.key, "genai-cloud-job": plan.job_name})  # fmt: skip
        made = _call(f"registering model {settings.name!r}", client.models.create_or_update, entity)
        return f"azureml:{made.name}:{made.version}"
