"""The public Python API beside the CLI: what notebooks, infra code and serverless handlers call."""

from __future__ import annotations

from pathlib import Path

from .loading import load_spec
from .plan import Plan, make_plan
from .providers import JobHandle, JobStatus, get_provider
from .spec import JobSpec


def _spec(spec: JobSpec | str | Path | dict) -> JobSpec:
    return spec if isinstance(spec, JobSpec) else load_spec(spec)


def plan(spec: JobSpec | str | Path | dict, provider: str) -> Plan:
    """Validate a spec and plan it for a provider (features checked, job name decided)."""
    return make_plan(_spec(spec), provider)


def render(spec: JobSpec | str | Path | dict, provider: str) -> dict:
    """The provider's native request for this spec. Pure: no network, no credentials."""
    job_plan = plan(spec, provider)
    return get_provider(job_plan.provider).render(job_plan)


def submit(spec: JobSpec | str | Path | dict, provider: str) -> JobHandle:
    """Launch (or find the identical, already launched) job and return its handle at once.

    With ``compute.fallback`` set, capacity / quota / no-spot refusals move the job to the next
    placement; ``handle.details["placement"]`` says where it landed.
    """
    job_spec = _spec(spec)
    from .memory import check

    check(job_spec)  # a model that fits its accelerators under no strategy is refused here
    if job_spec.compute.fallback:
        from .failover import submit_with_fallback

        return submit_with_fallback(job_spec, provider)[0]
    job_plan = make_plan(job_spec, provider)
    return get_provider(job_plan.provider).submit(job_plan)


def status(provider: str, job_id: str) -> JobStatus:
    return get_provider(provider).status(job_id)


def cancel(provider: str, job_id: str) -> None:
    get_provider(provider).cancel(job_id)
