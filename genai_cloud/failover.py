"""Capacity and quota failover: the spec's own placement first, then each ``compute.fallback``.

A cloud that answers "no capacity", "over quota" or "no spot capacity" may well say yes in another
region, on another accelerator or on another provider; any other answer (a bad role, a missing
bucket, a bug) would repeat everywhere and is raised at once. Each provider's ``ops`` module
classifies its own SDK's exceptions (``placement_problem``) and raises ``PlacementError`` for
them, so this module never imports a cloud SDK.

Retry-safety: every placement has its own deterministic job name (the plan's key hashes the
placement's spec), so before creating anything the job of every placement is looked up. A retried
failover submit therefore returns the job an earlier attempt launched in fallback 2 instead of
launching a second one on the primary that has since found capacity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .errors import (
    GenaiCloudError,
    PlacementError,
    ProviderError,
    SpecError,
)
from .plan import Plan, make_plan
from .providers.base import (
    JobHandle,
    JobState,
    JobStatus,
    Provider,
    get_provider,
    provider_class,
)

if TYPE_CHECKING:
    from .spec import FallbackSpec, JobSpec

log = logging.getLogger("genai_cloud.failover")

POLL_S = 15.0  # waiting for a job to leave provisioning: capacity errors surface within minutes


class NoPlacementError(GenaiCloudError):
    """Every placement (the spec's and each fallback) was refused; ``attempts`` says why."""

    headline = "No placement had capacity"

    def __init__(self, attempts: list[tuple[Placement, str]]):
        self.attempts = list(attempts)
        lines = "\n".join(f"  - {p}: {reason}" for p, reason in self.attempts)
        super().__init__(
            f"tried {len(self.attempts)} placement(s), none accepted the job:\n{lines}\n"
            "Add another entry to compute.fallback, ask for a quota increase, or retry later."
        )


@dataclass(frozen=True)
class Placement:
    """Where one attempt runs: what ``compute.fallback`` entries change."""

    provider: str
    region: str | None
    accelerator: str
    count: int
    spot: bool

    def __str__(self) -> str:
        where = f"{self.provider}/{self.region}" if self.region else self.provider
        return f"{where} {self.count}x{self.accelerator}" + (" spot" if self.spot else "")


def placement_of(plan: Plan) -> Placement:
    """Where the plan launches (``Plan.placement``: the region its render and submit use, and
    whether it runs on spot), with the accelerator and count as the spec asks for them. A
    provider whose region is not the spec's to choose (Azure ML: the workspace's) names none."""
    compute, resolved = plan.spec.compute, plan.placement
    region = None if provider_class(plan.provider).fixed_region else resolved.region
    return Placement(plan.provider, region, compute.accelerator, compute.count, resolved.spot)


def fallback_spec(spec: JobSpec, entry: FallbackSpec, index: int) -> tuple[JobSpec, str | None]:
    """The spec with ``compute.fallback[index]`` applied, and the provider it names (or None).

    Raises:
        SpecError: the combination is not a valid spec; each problem names compute.fallback.N.
    """
    data = spec.model_dump(mode="json")
    compute = data["compute"]
    compute["fallback"] = []  # the fallback job's spec says where it runs, not where else
    moved = entry.accelerator is not None or entry.count is not None or entry.provider is not None
    for field in ("region", "accelerator", "count", "spot"):
        value = getattr(entry, field)
        if value is not None:
            compute[field] = value
    if moved:
        compute["instance_type"] = None  # a pinned instance type belongs to the old placement
    if entry.region is not None:  # provider sections win over compute.region: move them too
        data["aws"]["region"] = entry.region
        data["gcp"]["region"] = entry.region
    if entry.spot is not None:  # the fallback's spot choice wins over provider-specific tiers
        if (data["gcp"]["strategy"] == "SPOT") != entry.spot:
            data["gcp"]["strategy"] = None
        if (data["azure"]["job_tier"] == "spot") != entry.spot:
            data["azure"]["job_tier"] = None
    try:
        new = type(spec).model_validate(data)
    except ValidationError as exc:
        raise SpecError([f"compute.fallback.{index}: {e['msg']} (at {'.'.join(map(str, e['loc']))})"
                         for e in exc.errors(include_url=False)]) from None  # fmt: skip
    return new, entry.provider


def candidate_plans(spec: JobSpec, provider: str) -> list[Plan]:
    """The primary plan, then one per fallback entry, each checked and rendered (pure) up front
    so that a fallback that could never run is reported before anything is launched.

    Raises:
        GenaiCloudError: naming the fallback entry (compute.fallback.N) that cannot be planned.
    """
    plans = [make_plan(spec, provider)]
    get_provider(provider).render(plans[0])
    for index, entry in enumerate(spec.compute.fallback):
        new_spec, new_provider = fallback_spec(spec, entry, index)
        name = new_provider or provider
        fixed = provider_class(name).fixed_region
        if fixed and entry.region is not None:
            problem = (f"compute.fallback.{index}.region: {fixed}; name another provider or "
                       "leave region out")
            raise SpecError([problem])
        try:
            plan = make_plan(new_spec, name)
            get_provider(plan.provider).render(plan)
        except SpecError:
            raise
        except GenaiCloudError as exc:
            raise ProviderError(f"compute.fallback.{index} ({name}): {exc.message}",
                                headline=exc.headline) from None
        plans.append(plan)
    return plans


def submit_with_fallback(
    spec: JobSpec, provider: str, *, providers: dict[str, Provider] | None = None,
    confirm_s: float = 0.0, poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep,
) -> tuple[JobHandle, list[tuple[Placement, str]]]:  # fmt: skip
    """Submit to the first placement that accepts the job.

    Args:
        spec: the validated spec; its ``compute.fallback`` lists the other placements in order.
        provider: the primary provider's name.
        providers: provider instances to use by name (tests, long-lived sessions); others come
            from the registry.
        confirm_s: how long to watch a new job while it is pending: SageMaker and Vertex report
            "no capacity" on the job itself minutes after accepting it. 0 returns at once.
        poll_s, sleep: the status polling interval and how to wait (tests pass a fake).

    Returns:
        The handle (``details["placement"]`` says where it landed) and the placements passed
        over, in order, each with the reason the SDK moved on.

    Raises:
        NoPlacementError: every placement refused, listing each with its reason.
        GenaiCloudError: any other refusal, at once (it would repeat on every placement).
    """
    plans = candidate_plans(spec, provider)
    instances = dict(providers or {})

    def impl(name: str) -> Provider:
        if name not in instances:
            instances[name] = get_provider(name)
        return instances[name]

    passed: list[tuple[Placement, str]] = []
    ruled_out: set[int] = set()
    if len(plans) > 1:  # one placement: the provider's own describe-or-create is enough
        found = _find_launched(plans, impl, passed, ruled_out)
        if found is not None:
            return found, passed
    for index, plan in enumerate(plans):
        if index in ruled_out:
            continue
        placement = placement_of(plan)
        try:
            handle = impl(plan.provider).submit(plan)
            problem = _confirm(impl(plan.provider), handle, confirm_s, poll_s, sleep)
        except PlacementError as exc:
            problem = f"{exc.kind}: {exc.message}"
        if problem is None:
            handle.details["placement"] = str(placement)
            return handle, passed
        log.warning("moving on from %s: %s", placement, problem)
        passed.append((placement, problem))
    raise NoPlacementError(passed)


def _find_launched(plans: list[Plan], impl, passed: list, ruled_out: set[int]) -> JobHandle | None:
    """The job an earlier submit launched on any placement, unless it died for lack of capacity
    (then that placement is passed over: its job name is taken by the dead job)."""
    for index, plan in enumerate(plans):
        provider = impl(plan.provider)
        try:
            found = provider.find_existing(plan)
        except PlacementError:
            found = None
        except GenaiCloudError as exc:  # e.g. no credentials for a fallback's cloud yet
            log.warning("could not look for an earlier job on %s: %s", placement_of(plan), exc)
            continue
        if found is None:
            continue
        handle, status = found
        problem = placement_problem_in_status(provider, status)
        if problem is None:
            handle.details["placement"] = str(placement_of(plan))
            return handle
        passed.append((placement_of(plan), f"{problem} (earlier job {handle.job_id})"))
        ruled_out.add(index)
    return None


def _confirm(provider: Provider, handle: JobHandle, confirm_s: float, poll_s: float,
             sleep: Callable[[float], None]) -> str | None:  # fmt: skip
    """None when the job got (or may still get) machines; the reason when it died without."""
    deadline = time.monotonic() + confirm_s
    while confirm_s > 0:
        status = provider.status(handle.job_id)
        if status.state is not JobState.PENDING:
            return placement_problem_in_status(provider, status)
        if time.monotonic() + poll_s > deadline:
            return None  # still queued: capacity may come; the job is left to wait for it
        sleep(poll_s)
    return None


def placement_problem_in_status(provider: Provider, status: JobStatus) -> str | None:
    """'capacity: ...' when a job ended because no machines could be had, else None."""
    if status.state not in (JobState.FAILED, JobState.STOPPED):
        return None
    return provider.placement_problem_in_status(status)
