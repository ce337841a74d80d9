"""Bias mitigation on training data (``fairness.mitigation`` in a ``finetune`` spec).

- ``counterfactual``: counterfactual data augmentation (Lu et al. 2018; Zmigrod et al. 2019):
  each record that mentions a swappable term gets a copy with the terms swapped (she <-> he,
  woman <-> man, ...) and the same label, so the label no longer tells the groups apart.
- ``reweight``: reweighing (Kamiran & Calders 2012): record weight
  ``w(g, y) = P(g) * P(y) / P(g, y)``, so group and label are independent under the weighted
  data. Records without a group keep weight 1. Finetune multiplies each example's loss by it.
"""

from __future__ import annotations

import re
from collections import Counter

from ..config import JobError
from .lexicon import Axis, Lexicon

WEIGHT_KEY = "_weight"
COUNTERFACTUAL_KEY = "_counterfactual"


def swap_map(axis: Axis) -> dict[str, str]:
    """Both directions of an axis's swap pairs; the first pair naming a word wins."""
    mapping: dict[str, str] = {}
    for a, b in axis.swap_pairs:
        mapping.setdefault(a, b)
        mapping.setdefault(b, a)
    return mapping


def swap_terms(text: str, mapping: dict[str, str]) -> str:
    """``text`` with every mapped whole word replaced, keeping its capitalisation."""
    if not mapping:
        return text
    words = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, words)) + r")(?![\w-])",
                         re.IGNORECASE)  # fmt: skip

    def replace(m: re.Match) -> str:
        word = m.group(0)
        new = mapping[word.lower()]
        if word.isupper() and len(word) > 1:
            return new.upper()
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return pattern.sub(replace, text)


def counterfactual_augment(records: list[dict], fields: list[str], lexicon: Lexicon,
                           axes: list[str] | None = None) -> list[dict]:  # fmt: skip
    """``records`` plus one swapped copy per record (and axis) whose text the swap changes.

    Raises:
        JobError: none of the chosen axes has ``swap_pairs``.
    """
    chosen = [lexicon.axes[a] for a in (axes or lexicon.axes) if a in lexicon.axes]
    maps = [(axis.name, swap_map(axis)) for axis in chosen if axis.swap_pairs]
    if not maps:
        raise JobError("counterfactual augmentation needs an axis with 'swap_pairs' in the "
                       f"lexicon ({lexicon.source})", "fairness.mitigation")  # fmt: skip
    out = list(records)
    for record in records:
        for name, mapping in maps:
            copy = dict(record)
            for f in fields:
                if isinstance(record.get(f), str):
                    copy[f] = swap_terms(record[f], mapping)
            if any(copy.get(f) != record.get(f) for f in fields):
                copy[COUNTERFACTUAL_KEY] = name
                out.append(copy)
    return out


def reweight(groups: list, labels: list) -> list[float]:
    """Kamiran-Calders weights, one per record; ``None`` group -> 1.0.

    Raises:
        JobError: ``groups`` and ``labels`` differ in length.
    """
    if len(groups) != len(labels):
        raise JobError(f"reweighting needs one group per label ({len(groups)} vs {len(labels)})")
    pairs = [(g, str(y)) for g, y in zip(groups, labels) if g is not None]
    n = len(pairs)
    if n == 0:
        return [1.0] * len(labels)
    p_g = Counter(g for g, _ in pairs)
    p_y = Counter(y for _, y in pairs)
    p_gy = Counter(pairs)
    weight = {(g, y): (p_g[g] * p_y[y]) / (n * c) for (g, y), c in p_gy.items()}
    return [1.0 if g is None else weight[(g, str(y))] for g, y in zip(groups, labels)]


def record_groups(records: list[dict], lexicon: Lexicon, text_field: str,
                  group_field: str | None = None, axis: str = "gender") -> list[str | None]:  # fmt: skip
    """One group per record: the ``group_field`` value, else the single ``axis`` group the text
    mentions (``None`` when it mentions none or several)."""
    if group_field:
        return [None if r.get(group_field) in (None, "") else str(r[group_field]) for r in records]
    if axis not in lexicon.axes:
        raise JobError(f"axis {axis!r} is not in the lexicon; valid: {', '.join(lexicon.axes)}")
    found = [lexicon.axes[axis].groups_in(str(r.get(text_field, ""))) for r in records]
    return [f[0] if len(f) == 1 else None for f in found]


def apply_mitigation(records: list[dict], spec, lexicon: Lexicon) -> list[dict]:
    """What ``finetune`` calls: ``spec.fairness.mitigation`` applied to the training records.

    Counterfactual copies come first, then reweighting over the augmented set; the weight sits
    in each record under ``_weight``.
    """
    steps = (spec.get("fairness") or {}).get("mitigation") or []
    data = spec.data
    fields = [data.prompt_field, data.response_field] if data.format == "instruction" \
        else [data.text_field]  # fmt: skip
    if "counterfactual" in steps:
        records = counterfactual_augment(records, fields, lexicon)
    if "reweight" in steps:
        if data.format != "classification":
            raise JobError("reweight needs labels: use data.format 'classification'",
                           "fairness.mitigation")  # fmt: skip
        groups = record_groups(records, lexicon, data.text_field, data.get("group_field"))
        labels = [r[data.label_field] for r in records]
        records = [{**r, WEIGHT_KEY: w} for r, w in zip(records, reweight(groups, labels))]
    return records
