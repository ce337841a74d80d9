"""Prices before launch: estimates, the budget as a hard runtime cap, and the cheapest placement.

Pure arithmetic on the catalogs (``data/catalog/<provider>.json``, each naming its price source
and date): no network, no credentials, no cloud SDK. A run costs ``hourly price x machines x
hours``: the catalog's on-demand ``price``, or its ``spot_price`` (an estimate) when the spec runs
on spot capacity there; machines = ``compute.nodes`` (x the hosts of a multi-host TPU slice on
Vertex); the region, instance, spot and machines are the plan's (``Plan.placement``, resolved
once); hours = ``compute.max_runtime`` (the worst case: every provider stops the job there), or
``tokens / throughput`` when both are given.

``budget.max_usd`` becomes each provider's hard runtime cap (``capped_runtime``). When the spec
sets ``compute.max_runtime`` itself and that run would cost more than the budget, the launch is
refused (the user asked for something the budget cannot pay for); when it is the 1-day default,
the budget lowers it. Spot runs are bounded by the same cap: SageMaker's MaxWait also counts time
spent *waiting* for capacity, which is not billed. Providers bill a few minutes of provisioning
that some caps do not count, and the prices are approximate: the budget caps the run, it is not
an invoice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .catalog import CatalogError, Instance, catalog
from .errors import GenaiCloudError, ProviderError
from .plan import Plan, make_plan
from .regions import pinned_region

if TYPE_CHECKING:
    from .spec import JobSpec

HOUR = 3600
# A budget that buys less than this is refused instead of turned into a cap: every provider
# spends the first minutes pulling the image and installing requirements, so a shorter job
# would be billed without ever reaching a training step.
MIN_CAPPED_RUNTIME_S = 600


class BudgetError(GenaiCloudError):
    """The run's worst case exceeds ``budget.max_usd``, or the budget cannot be enforced."""

    headline = "Over budget"


# --------------------------------------------------------------------------------------------
# What is priced


def catalog_providers() -> list[str]:
    """Registered providers that have a price catalog (all but ``local``)."""
    from .catalog import DATA_DIR
    from .providers import provider_names

    return [name for name in provider_names() if (DATA_DIR / f"{name}.json").is_file()]


def explicit_runtime(spec: JobSpec) -> bool:
    """True when the spec sets ``compute.max_runtime`` itself (not the 1-day default)."""
    return "max_runtime" in spec.compute.model_fields_set


# --------------------------------------------------------------------------------------------
# Quotes


@dataclass(frozen=True)
class Quote:
    """The price of one run on one provider in one region."""

    provider: str
    region: str
    instance: Instance
    machines: int
    seconds: int  # the run time priced
    spot: bool  # the spec runs on spot capacity here
    on_demand_hourly: float | None  # USD per machine-hour; None when the catalog has no price
    spot_hourly: float | None
    note: str = ""

    def _usd(self, rate: float | None) -> float | None:
        return None if rate is None else rate * self.machines * self.seconds / HOUR

    @property
    def on_demand_usd(self) -> float | None:
        return self._usd(self.on_demand_hourly)

    @property
    def spot_usd(self) -> float | None:
        return self._usd(self.spot_hourly)

    @property
    def hourly(self) -> float | None:
        """USD per hour for all machines, at the rate the spec pays (spot or on-demand)."""
        rate = self.spot_hourly if self.spot else self.on_demand_hourly
        return None if rate is None else rate * self.machines

    @property
    def usd(self) -> float | None:
        """The cost at the rate the spec pays."""
        return self.spot_usd if self.spot else self.on_demand_usd


def quote(plan: Plan, region: str | None = None, seconds: int | None = None) -> Quote:
    """Price ``seconds`` (default ``compute.max_runtime``) of the plan's placement, in ``region``
    (default: where it launches).

    Raises:
        CatalogError: the provider has no instance for ``compute`` (the message lists options).
    """
    placement = plan.placement
    instance, region = placement.instance, region or placement.region
    return Quote(
        provider=plan.provider, region=region, instance=instance, machines=placement.machines,
        seconds=plan.spec.compute.max_runtime if seconds is None else seconds,
        spot=placement.spot,
        on_demand_hourly=instance.hourly(region), spot_hourly=instance.hourly(region, spot=True),
    )  # fmt: skip


def _no_price(q: Quote) -> str:
    known = sorted(set(q.instance.price) | set(q.instance.spot_price))
    kind = "spot " if q.spot else ""
    return (f"the {q.provider} catalog has no {kind}price for {q.instance.type} in {q.region} "
            f"(priced regions: {', '.join(known) or 'none'})")  # fmt: skip


def _cents_up(usd: float) -> str:
    # round first: 1.408 * 10 h is 14.080000000000002 in floating point, not 14.09
    return f"{math.ceil(round(usd * 100, 6)) / 100:.2f}"


def _affordable_seconds(budget: float, hourly: float) -> int:
    return int(budget * HOUR / hourly) if hourly > 0 else 2**31


def capped_runtime(plan: Plan) -> int:
    """The hard runtime cap (seconds) to render for the plan: ``compute.max_runtime``, or
    less when ``budget.max_usd`` buys less (``budget / hourly cost``).

    Each provider's render passes this to its own cap (SageMaker ``MaxRuntimeInSeconds``,
    Vertex ``scheduling.timeout``, Azure ML ``limits.timeout``), so the provider itself stops
    the job before it spends more than the budget.

    Raises:
        BudgetError: ``compute.max_runtime`` was set explicitly and its worst case exceeds the
            budget (the user asked for a run the budget cannot pay for); the budget buys less
            than ``MIN_CAPPED_RUNTIME_S``; or the catalog has no price to enforce it with.
        CatalogError: no instance fits ``compute``.
    """
    spec, provider = plan.spec, plan.provider
    runtime = spec.compute.max_runtime
    budget = spec.budget.max_usd
    if budget is None:
        return runtime
    q = quote(plan)
    if q.hourly is None:
        raise BudgetError(f"budget.max_usd cannot be enforced: {_no_price(q)}. Pick a priced "
                          "region or drop budget.max_usd.")  # fmt: skip
    worst = q.hourly * runtime / HOUR
    if worst <= budget:
        return runtime
    affordable = _affordable_seconds(budget, q.hourly)
    what = f"{q.instance.type} x {q.machines} in {q.region} at ${q.hourly:,.2f}/h " + (
        "(spot)" if q.spot else "(on-demand)"
    )
    if explicit_runtime(spec):
        raise BudgetError(
            f"worst case ${worst:,.2f} on {provider} ({what} for compute.max_runtime "
            f"{runtime} s) exceeds budget.max_usd ${budget:,.2f}. Lower compute.max_runtime to "
            f"{affordable} s or less, or raise budget.max_usd to {_cents_up(worst)}."
        )
    if affordable < MIN_CAPPED_RUNTIME_S:
        raise BudgetError(
            f"budget.max_usd ${budget:,.2f} buys only {affordable} s of {what} on {provider}; "
            f"a job needs at least {MIN_CAPPED_RUNTIME_S} s to start and train. Raise the budget "
            "or choose a smaller accelerator."
        )
    return affordable


def worst_case(plan: Plan) -> Quote:
    """The run priced at its hard cap (``capped_runtime``): what the provider bills at most.

    Raises:
        BudgetError, CatalogError: as ``capped_runtime``.
    """
    return quote(plan, seconds=capped_runtime(plan))


# --------------------------------------------------------------------------------------------
# Estimates across providers


@dataclass
class Estimate:
    quotes: list[Quote]  # cheapest first (at the rate each spec would pay)
    skipped: dict[str, str]  # provider -> why it cannot run the spec
    seconds: int  # the run time asked for, before any cap
    basis: str  # where ``seconds`` comes from, for the reader
    warnings: list[str] = field(default_factory=list)


def run_seconds(spec: JobSpec, tokens: int | None = None,
                throughput: float | None = None) -> tuple[int, str]:  # fmt: skip
    """Seconds to price and where they come from: ``tokens / throughput`` or max_runtime."""
    if (tokens is None) != (throughput is None):
        raise GenaiCloudError("give both --tokens and --throughput (tokens per second for the "
                              "whole job), or neither", headline="Bad option")  # fmt: skip
    if tokens is None:
        if explicit_runtime(spec):
            return spec.compute.max_runtime, "compute.max_runtime (worst case)"
        return spec.compute.max_runtime, (f"the default compute.max_runtime "
                                          f"({_duration(spec.compute.max_runtime)}; the spec "
                                          "sets none)")  # fmt: skip
    if tokens <= 0 or throughput <= 0:
        raise GenaiCloudError("--tokens and --throughput must be positive", headline="Bad option")
    seconds = math.ceil(tokens / throughput)
    return seconds, f"{tokens:,} tokens at {throughput:,.0f} tokens/s"


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("h", HOUR), ("min", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if unit == "day" and count != 1 else "")
    return f"{seconds} s"


def _regions(spec: JobSpec, provider: str, instance: Instance) -> list[str]:
    pinned = pinned_region(spec, provider)
    if pinned:
        return [pinned]
    return sorted(set(instance.price) | set(instance.spot_price)) or [
        catalog(provider)["default_region"]
    ]


def _quotes_for(spec: JobSpec, provider: str, seconds: int) -> list[Quote]:
    plan = Plan(spec=spec, provider=provider)  # priced, not launched: no feature check
    quotes = []
    for region in _regions(spec, provider, plan.placement.instance):
        q = quote(plan, region, seconds)
        run, notes = seconds, []
        if run > spec.compute.max_runtime:
            run = spec.compute.max_runtime
            notes.append("stopped at compute.max_runtime before the tokens are done")
        budget = spec.budget.max_usd
        if budget is not None and q.hourly:
            worst = q.hourly * spec.compute.max_runtime / HOUR
            if worst > budget and explicit_runtime(spec):
                notes.append(f"over budget: max_runtime costs ${worst:,.2f}; refused at launch")
            elif q.hourly * run / HOUR > budget:
                run = _affordable_seconds(budget, q.hourly)
                too_little = run < MIN_CAPPED_RUNTIME_S
                notes.append("budget buys too little; refused at launch" if too_little
                             else f"budget stops it after {run / HOUR:.2f} h")  # fmt: skip
        if q.hourly is None:
            notes.append("no price in this region")
        quotes.append(replace(q, seconds=run, note="; ".join(notes)))
    return quotes


def estimate(spec: JobSpec, providers: list[str] | None = None, *, tokens: int | None = None,
             throughput: float | None = None) -> Estimate:  # fmt: skip
    """Price the spec on every provider (default: all with a catalog), cheapest first.

    A provider that cannot run the spec (feature matrix, or no such instance in its catalog)
    lands in ``skipped`` with the reason.

    Raises:
        ProviderError: a name in ``providers`` that is not a provider, or one without a price
            catalog (the message lists the valid names); nothing is priced then.
    """
    from .providers import get_provider

    seconds, basis = run_seconds(spec, tokens, throughput)
    quotes: list[Quote] = []
    skipped: dict[str, str] = {}
    for name in _priced_names(providers) if providers else catalog_providers():
        try:
            get_provider(name).check_features(spec)
            quotes += _quotes_for(spec, name, seconds)
        except (ProviderError, CatalogError) as exc:
            skipped[name] = _reason(name, exc)
    quotes.sort(key=_rank)
    warnings = []
    if any(q.spot for q in quotes):
        warnings.append("spot prices are catalog estimates; the providers bill a varying rate")
    return Estimate(quotes, skipped, seconds, basis, warnings)


def _priced_names(names: list[str]) -> list[str]:
    """The canonical name ("aws" -> "sagemaker") of each provider asked for, once each, every
    one checked before anything is priced."""
    from .providers import get_provider

    priced = catalog_providers()
    found: list[str] = []
    for name in names:
        canonical = get_provider(name).name  # an unknown name: ProviderError naming valid ones
        if canonical not in priced:
            raise ProviderError(f"provider {canonical!r} has no price catalog; priced providers: "
                                f"{', '.join(priced)}", headline="Bad option")  # fmt: skip
        if canonical not in found:
            found.append(canonical)
    return found


def _reason(name: str, exc: GenaiCloudError) -> str:
    """An error as one line without "<name> cannot run this spec:" (the caller prints that),
    wherever the provider put it (after the field path, for a feature it lacks)."""
    text = " ".join(exc.message.split())
    return text.replace(f"{name} cannot run this spec: ", "").removesuffix(".")


def _rank(q: Quote) -> tuple:
    usd = q.usd
    return (usd is None, usd if usd is not None else 0.0, q.provider, q.region)


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces (what `kubectl get` prints)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


def format_estimate(result: Estimate, spec: JobSpec) -> str:
    """The table `genai-cloud estimate` prints."""
    headers = ["PROVIDER", "REGION", "INSTANCE", "MACHINES", "HOURS", "ON-DEMAND", "SPOT",
               "NOTE"]  # fmt: skip
    rows = []
    for q in result.quotes:
        paid = "spot" if q.spot else "on-demand"
        rows.append([q.provider, q.region, q.instance.type, str(q.machines),
                     f"{q.seconds / HOUR:.2f}", _money(q.on_demand_usd), _money(q.spot_usd),
                     "; ".join(filter(None, [f"pays {paid}", q.note]))])  # fmt: skip
    compute = spec.compute
    lines = [(f"{spec.name}: {compute.count} x {compute.accelerator} x {compute.nodes} node(s); "
              f"priced for {result.seconds / HOUR:.2f} h from {result.basis}")]  # fmt: skip
    if any(q.seconds < result.seconds for q in result.quotes):  # budget or max_runtime cut it
        lines[0] += ", or less where a row's NOTE says what stops it sooner"
    if spec.budget.max_usd is not None:
        lines.append(f"budget.max_usd: ${spec.budget.max_usd:,.2f}")
    lines += ["", text_table(headers, rows) if rows else "(no provider can run this spec)"]
    for name, reason in sorted(result.skipped.items()):
        lines.append(f"{name} cannot run this spec: {reason}")
    lines += [f"Note: {w}" for w in result.warnings]
    sources = {q.provider for q in result.quotes}
    for name in sorted(sources):
        data = catalog(name)
        lines.append(f"Prices: {name} catalog of {data['date']} ({data['source']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Cheapest placement


@dataclass
class Placement:
    quote: Quote  # the chosen provider, priced at its hard runtime cap
    ranked: list[Quote]  # every provider that can take the spec, cheapest first
    skipped: dict[str, str]  # provider -> why not

    @property
    def provider(self) -> str:
        return self.quote.provider

    def why(self) -> str:
        """One paragraph saying what was chosen, against what, and what was ruled out."""
        q = self.quote
        paid = "spot" if q.spot else "on-demand"
        text = (f"cheapest placement: {q.provider} ({q.instance.type} x {q.machines} in "
                f"{q.region}, ${q.hourly:,.2f}/h {paid}, at most {_money(q.usd)} for "
                f"{q.seconds / HOUR:.2f} h)")  # fmt: skip
        others = [f"{o.provider} ${o.hourly:,.2f}/h" for o in self.ranked[1:]]
        if others:
            text += "; next: " + ", ".join(others)
        for name, reason in sorted(self.skipped.items()):
            text += f"; not {name}: {reason}"
        return text


def _can_render(plan: Plan) -> None:
    from .providers import get_provider

    get_provider(plan.provider).render(plan)


def cheapest(spec: JobSpec, providers: list[str] | None = None, *,
             check_render: bool = True) -> Placement:  # fmt: skip
    """The cheapest of ``providers`` (default: all with a catalog) that can run the spec.

    A provider is ruled out when it lacks a feature the spec needs (the feature matrix), has no
    instance or price for ``compute`` where the job would launch, cannot keep within the budget,
    or (``check_render``) cannot render the spec (e.g. its data is on another cloud's storage).
    The price compared is the hourly cost at each provider's launch region.

    Raises:
        ProviderError: no provider qualifies; the message gives each one's reason.
    """
    from .providers import get_provider

    ranked: list[Quote] = []
    skipped: dict[str, str] = {}
    for name in providers or catalog_providers():
        try:
            name = get_provider(name).name
            plan = make_plan(spec, name)  # checks the provider's features
            q = worst_case(plan)
            if q.hourly is None:
                skipped[name] = _no_price(q)
                continue
            if check_render:
                _can_render(plan)
        except GenaiCloudError as exc:
            skipped[name] = _reason(name, exc)
            continue
        ranked.append(q)
    if not ranked:
        reasons = "\n".join(f"  - {n}: {r}" for n, r in sorted(skipped.items()))
        raise ProviderError(f"no provider can run this spec:\n{reasons}",
                            headline="No placement")  # fmt: skip
    ranked.sort(key=lambda q: (q.hourly, q.provider))
    return Placement(ranked[0], ranked, skipped)
