"""One view of all jobs: the recent genai-cloud jobs of every configured provider in one table.

Each provider's ``list(labels=...)`` returns ``JobStatus`` objects; this module turns them into
rows (name, provider, state, runtime, cost so far), newest first. Runtime and cost are read from
the ``details`` a provider's status carries, by these keys (what is missing shows as ``?``):

- ``name`` / ``display_name``; ``created`` / ``started`` / ``ended`` (datetime or ISO string);
- ``instance_type`` (or the Azure tag ``genai-cloud-instance-type``, or Vertex's
  ``machine_type`` + ``accelerator_count``), ``instance_count`` (machines), ``region`` (else
  parsed from an ARN or a Vertex resource name), ``spot``;
- ``billable_seconds``: SageMaker's BillableTimeInSeconds. Managed spot already shortens it by
  the spot saving, so it is priced at the on-demand rate (AWS's own savings formula).

Each provider's ops module fills these from its own answer. Azure ML's job entity carries a
creation time but no start or end time: a running Azure job is billed from its creation (queueing
included), and a finished one shows ``?``.

"Configured" (which providers the table asks when none are named), kept simple and offline:

- sagemaker: boto3 is installed and its credential chain finds credentials (env, profile, SSO,
  instance role); the region is boto3's own.
- vertex: google-cloud-aiplatform is installed, a project is named (spec ``gcp.project`` or
  ``GOOGLE_CLOUD_PROJECT`` / ``CLOUDSDK_CORE_PROJECT``) and Application Default Credentials
  exist (``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's ADC file).
- azureml: azure-ai-ml is installed and a workspace is named: spec ``azure.subscription_id`` +
  ``resource_group`` + ``workspace``, or the workspace ``config.json`` that
  ``MLClient.from_config`` finds (``.azureml/``, ``aml_config/`` or plain, from the current
  directory up). Credentials are DefaultAzureCredential's business, checked on the first call.
- any other registered provider: what its ``not_configured_reason(spec)`` says (the three
  above are theirs too).

An explicit provider list skips these checks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .catalog import CatalogError, catalog, find_instance
from .cost import HOUR, text_table
from .errors import GenaiCloudError, ProviderError
from .providers import get_provider, provider_names

if TYPE_CHECKING:
    from .providers import JobStatus
    from .spec import JobSpec


# --------------------------------------------------------------------------------------------
# Which providers are configured


def not_configured_reason(name: str, spec: JobSpec | None = None) -> str | None:
    """None when provider ``name`` is usable from here, else why not (see the module doc)."""
    return get_provider(name).not_configured_reason(spec)


def configured_providers(candidates: list[str], spec: JobSpec | None = None,
                         ) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """Split ``candidates`` into (configured, {name: why not})."""
    ready, missing = [], {}
    for name in candidates:
        reason = not_configured_reason(name, spec)
        if reason:
            missing[name] = reason
        else:
            ready.append(name)
    return ready, missing


def cloud_providers() -> list[str]:
    """Registered providers that can list jobs (every one but ``local``)."""
    from .providers import get_provider, provider_names

    names = []
    for name in provider_names():
        try:
            impl = get_provider(name)
        except GenaiCloudError:
            continue
        if callable(getattr(impl, "list", None)):
            names.append(name)
    return names


def listing_providers(names: list[str]) -> list[str]:
    """The providers ``names`` ask for, by canonical name ("aws" -> "sagemaker"), once each.

    Raises:
        ProviderError: a name no provider is registered under (the message lists the valid
            ones), or a provider that cannot list jobs (the message lists those that can).
    """
    from .providers import get_provider

    found: list[str] = []
    for name in names:
        impl = get_provider(name)
        if not callable(getattr(impl, "list", None)):
            raise ProviderError(f"provider {impl.name!r} does not list jobs; providers that do: "
                                f"{', '.join(cloud_providers())}", headline="Bad option")  # fmt: skip
        if impl.name not in found:
            found.append(impl.name)
    return found


def infer_provider(job_id: str) -> str | None:
    """The provider a job id belongs to, from its shape (None when a bare name is ambiguous)."""
    owners = [name for name in provider_names() if get_provider(name).owns_job_id(job_id)]
    return owners[0] if len(owners) == 1 else None


# --------------------------------------------------------------------------------------------
# Rows


@dataclass
class JobRow:
    provider: str
    job_id: str
    name: str
    state: str
    native_state: str
    created: datetime | None
    runtime_s: float | None
    cost_usd: float | None
    instance_type: str | None = None
    message: str | None = None


def _time(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _rate(provider: str, instance_type: str | None, region: str | None, spot: bool,
          ) -> float | None:  # fmt: skip
    if not instance_type:
        return None
    try:
        instance = find_instance(provider, instance_type)
        return instance.hourly(region or catalog(provider)["default_region"], spot=spot)
    except CatalogError:
        return None


def _runtime(status: JobStatus, now: datetime) -> float | None:
    details = status.details
    start = _time(details.get("started")) or _time(details.get("created"))
    end = _time(details.get("ended"))
    if start is not None and (end is not None or not status.state.done):
        return max(0.0, ((end or now) - start).total_seconds())
    billable = details.get("billable_seconds")
    return float(billable) if billable is not None else None


def row_from_status(provider: str, status: JobStatus, now: datetime | None = None) -> JobRow:
    """A table row for one job: runtime so far and its cost at the catalog's prices."""
    now = now or datetime.now(timezone.utc)
    details = status.details
    impl = get_provider(provider)
    try:
        instance_type = impl.job_instance_type(status)
    except CatalogError:  # a provider without a catalog: no price, still a row
        instance_type = None
    count = int(details.get("instance_count") or 1)
    region = impl.job_region(status)
    runtime = _runtime(status, now)
    billable = details.get("billable_seconds")
    if billable is not None:  # SageMaker: billed time, already net of the spot saving
        rate, seconds = _rate(provider, instance_type, region, False), float(billable)
    else:
        rate, seconds = _rate(provider, instance_type, region, bool(details.get("spot"))), runtime
    cost = None if rate is None or seconds is None else rate * count * seconds / HOUR
    return JobRow(
        provider=provider, job_id=status.job_id,
        name=details.get("name") or details.get("display_name") or status.job_id,
        state=status.state.value, native_state=status.native_state,
        created=_time(details.get("created")), runtime_s=runtime, cost_usd=cost,
        instance_type=instance_type, message=status.message,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# The table


@dataclass
class JobTable:
    rows: list[JobRow]
    errors: dict[str, str] = field(default_factory=dict)  # provider -> why it could not list
    asked: list[str] = field(default_factory=list)  # the providers asked, canonical names

    @property
    def total_usd(self) -> float:
        return sum(r.cost_usd for r in self.rows if r.cost_usd is not None)


def _list(name: str, labels: dict[str, str]) -> list[JobStatus]:
    from .providers import get_provider

    impl = get_provider(name)
    lister = getattr(impl, "list", None)
    if not callable(lister):
        raise GenaiCloudError(f"provider {name!r} does not list jobs")
    return lister(labels=labels)


def collect(providers: list[str], labels: dict[str, str] | None = None, *,
            limit: int | None = 20, now: datetime | None = None) -> JobTable:  # fmt: skip
    """Ask every provider for its genai-cloud jobs (in parallel) and merge them, newest first.

    A provider that fails (no access, network down, SDK error) does not hide the others: its
    error is kept in ``JobTable.errors``; when every one failed, ``errors`` covers ``asked``.

    Raises:
        ProviderError: before any provider is asked, for a name that is not a provider or one
            that cannot list jobs (``listing_providers``).
    """
    labels = labels or {}
    now = now or datetime.now(timezone.utc)
    rows: list[JobRow] = []
    errors: dict[str, str] = {}
    providers = listing_providers(providers)
    if not providers:
        return JobTable(rows, errors, providers)
    with ThreadPoolExecutor(max_workers=len(providers)) as pool:
        futures = {name: pool.submit(_list, name, labels) for name in providers}
        for name, future in futures.items():
            try:
                statuses = future.result()
            except GenaiCloudError as exc:
                errors[name] = exc.message
                continue
            except Exception as exc:  # noqa: BLE001 - one cloud's SDK error must not hide the rest
                errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            rows += [row_from_status(name, s, now) for s in statuses]
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    rows.sort(key=lambda r: r.created or oldest, reverse=True)
    return JobTable(rows[:limit] if limit else rows, errors, providers)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_table(table: JobTable) -> str:
    """The table `genai-cloud status` (no job id) and `genai-cloud list` print."""
    if not table.rows:
        return "No genai-cloud jobs found."
    headers = ["NAME", "PROVIDER", "STATE", "RUNTIME", "COST SO FAR", "JOB ID"]
    rows = [[r.name, r.provider, r.state, _duration(r.runtime_s),
             "?" if r.cost_usd is None else f"${r.cost_usd:,.2f}", r.job_id]
            for r in table.rows]  # fmt: skip
    unknown = sum(r.cost_usd is None for r in table.rows)
    total = f"Total so far: ${table.total_usd:,.2f} (catalog prices)"
    if unknown:
        total += f"; {unknown} job(s) without a known instance or runtime not counted"
    return text_table(headers, rows) + "\n" + total


def parse_labels(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("team=nlp", "env=dev")`` -> ``{"team": "nlp", "env": "dev"}``."""
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GenaiCloudError(f"--label expects KEY=VALUE, got {pair!r}", headline="Bad option")
        labels[key] = value
    return labels
