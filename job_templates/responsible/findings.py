"""Findings: what the audit and fairness reports open with, whether or not ``fail_on`` is set.

A finding is a metric past a limit: either a ``fail_on`` limit the spec set (a *gate*: the job
fails) or a default limit from the literature (reported, never failing the job). A metric a gate
names but that has no value ("n/a", e.g. a ratio of two zero rates) is a gate failure that says
why: a gate that cannot be measured has not been passed.

Default limits (``AUDIT_LIMITS``, ``FAIRNESS_LIMITS``) apply to the metric of that name, or, for
a key ending in ``.``, to every metric under it (one per axis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import JobError

FOUR_FIFTHS = ("four-fifths rule: a group selected at under 80% of the rate of the most "
               "selected group shows adverse impact (US EEOC Uniform Guidelines on Employee "
               "Selection Procedures, 29 CFR 1607.4(D))")  # fmt: skip
AIF360_RANGE = ("outside AIF360's fair range of -0.1 to 0.1 for group differences in rates "
                "(Bellamy et al. 2018, AI Fairness 360)")  # fmt: skip
DUPLICATES = ("duplicated training text is memorised and emitted verbatim far more often; "
              "deduplicate (Lee et al. 2022, Deduplicating Training Data Makes Language Models "
              "Better; Kandpal et al. 2022)")  # fmt: skip
PERSONAL_DATA = ("models can emit personal data from their training set verbatim (Carlini et al. "
                 "2021, Extracting Training Data from Large Language Models); keep only what is "
                 "needed (GDPR Art. 5(1)(c), data minimisation): redact or drop")  # fmt: skip
STEREOTYPE = ("an unbiased model prefers the more-stereotyped sentence half the time (CrowS-Pairs, "
              "Nangia et al. 2020); the 0.1 margin is this project's default")  # fmt: skip


@dataclass(frozen=True)
class Limit:
    value: float
    minimum: bool  # True: the metric must be at least `value`; False: at most
    source: str


AUDIT_LIMITS = {
    "exact_duplicate_fraction": Limit(0.0, False, DUPLICATES),
    "near_duplicate_fraction": Limit(0.0, False, DUPLICATES),
    "pii_rate": Limit(0.0, False, PERSONAL_DATA),
    "label_rate_ratio.": Limit(0.8, True, FOUR_FIFTHS),
    "max_abs_dpl.": Limit(0.1, False, AIF360_RANGE),
}
FAIRNESS_LIMITS = {
    "demographic_parity_ratio.": Limit(0.8, True, FOUR_FIFTHS),
    "demographic_parity_difference.": Limit(0.1, False, AIF360_RANGE),
    "equalized_odds_difference.": Limit(0.1, False, AIF360_RANGE),
    "stereotype_deviation": Limit(0.1, False, STEREOTYPE),
    "stereotype_deviation_normalised": Limit(0.1, False, STEREOTYPE),
}


def find(metrics: dict, fail_on: dict, defaults: dict[str, Limit], field: str,
         is_minimum: Callable[[str], bool] = lambda name: False,
         why_missing: Callable[[str], str] = lambda name: "no value was measured",
         detail: Callable[[str], str] = lambda name: "") -> list[dict]:  # fmt: skip
    """Every finding for ``metrics``: gate failures (``fail_on``) first, then default limits.

    Each finding: ``metric``, ``value``, ``limit``, ``minimum``, ``gate`` (from ``fail_on``),
    ``source`` (where the limit comes from), ``detail`` (which groups) and ``text`` (one line).

    Raises:
        JobError: a ``fail_on`` key that names no metric; ``field`` and the valid names are in
            the message.
    """
    unknown = [k for k in fail_on if k not in metrics]
    if unknown:
        raise JobError(f"unknown metric(s) {', '.join(map(repr, unknown))}; valid: "
                       f"{', '.join(metrics)}", field)  # fmt: skip
    out = []
    for name, limit in fail_on.items():
        minimum = is_minimum(name)
        value = metrics[name]
        if value is None:
            out.append(_finding(name, None, limit, minimum, True, f"{field}.{name}",
                                f"n/a: {why_missing(name)}"))  # fmt: skip
        elif value < limit if minimum else value > limit:
            out.append(_finding(name, value, limit, minimum, True, f"{field}.{name}",
                                detail(name)))  # fmt: skip
    for name, value in metrics.items():
        limit = next((lim for key, lim in defaults.items()
                      if name == key or (key.endswith(".") and name.startswith(key))), None)  # fmt: skip
        if limit is None or name in fail_on or not isinstance(value, (int, float)):
            continue
        if value < limit.value if limit.minimum else value > limit.value:
            out.append(_finding(name, value, limit.value, limit.minimum, False, limit.source,
                                detail(name)))  # fmt: skip
    return out


def gate_reasons(found: list[dict]) -> list[str]:
    """The lines a failed gate reports (one per ``fail_on`` metric past its limit or n/a)."""
    return [f["text"] for f in found if f["gate"]]


def _finding(name, value, limit, minimum, gate, source, detail) -> dict:
    if value is None:
        text = f"{name} = n/a under a {'minimum' if minimum else 'maximum'} of {limit:g}"
    else:
        text = f"{name} = {value:.4g} {'<' if minimum else '>'} {limit:g}"
    if detail:
        text += f" ({detail})"
    return {"metric": name, "value": value, "limit": limit, "minimum": minimum, "gate": gate,
            "source": source, "detail": detail, "text": text}  # fmt: skip


def report_findings(report, found: list[dict]) -> None:
    """The report's opening section: one line per finding with where its limit comes from."""
    report.heading("Findings")
    if not found:
        report.text("Nothing crossed a fail_on limit or a default limit.")
        return
    for f in found:
        kind = "fail_on limit" if f["gate"] else "default limit"
        report.text(f"[{kind}] {f['text']}. Limit: {f['source']}.")
