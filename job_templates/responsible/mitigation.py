"""Bias mitigation on training data (``fairness.mitigation`` in a ``finetune`` spec).

- ``counterfactual``: counterfactual data augmentation (Lu et al. 2018; Zmigrod et al. 2019):
  each record that mentions a swappable term of an axis gets a copy with the terms swapped (she
  <-> he, young man <-> old man, church <-> mosque, ...) and the same label, so the label no
  longer tells the groups apart. Every lexicon axis with ``swap_pairs`` takes part (the bundled
  lexicon has them for gender, race/ethnicity, religion, age, disability and nationality); a
  copy's group column (``data.group_field``) is rewritten to the group its swapped text is about.
  ``mitigate`` says what it added per axis; adding nothing is a warning, not a silent no-op.
- ``reweight``: reweighing (Kamiran & Calders 2012): record weight
  ``w(g, y) = P(g) * P(y) / P(g, y)``, so group and label are independent under the weighted
  data. Records without a group keep weight 1. Finetune multiplies each example's loss by it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from ..config import JobError
from .lexicon import Axis, Lexicon

log = logging.getLogger("genai.mitigation")

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
                           axes: list[str] | None = None, group_field: str | None = None,
                           added: dict | None = None) -> list[dict]:  # fmt: skip
    """``records`` plus one swapped copy per record (and axis) whose text the swap changes.

    ``group_field``: the copy's group value is rewritten (see ``swapped_group``). ``added``, if
    given, receives axis -> copies made.

    Raises:
        JobError: none of the chosen axes has ``swap_pairs``.
    """
    chosen = [lexicon.axes[a] for a in (axes or lexicon.axes) if a in lexicon.axes]
    maps = [(axis, swap_map(axis)) for axis in chosen if axis.swap_pairs]
    if not maps:
        raise JobError("counterfactual augmentation needs an axis with 'swap_pairs' in the "
                       f"lexicon ({lexicon.source})", "fairness.mitigation")  # fmt: skip
    added = {} if added is None else added
    added.update({axis.name: 0 for axis, _ in maps})
    out = list(records)
    for record in records:
        for axis, mapping in maps:
            copy = dict(record)
            for f in fields:
                if isinstance(record.get(f), str):
                    copy[f] = swap_terms(record[f], mapping)
            if any(copy.get(f) != record.get(f) for f in fields):
                copy[COUNTERFACTUAL_KEY] = axis.name
                if group_field and record.get(group_field) not in (None, ""):
                    text = " ".join(str(copy.get(f, "")) for f in fields)
                    copy[group_field] = swapped_group(record[group_field], axis, mapping, text)
                added[axis.name] += 1
                out.append(copy)
    return out


def swapped_group(value, axis: Axis, mapping: dict[str, str], swapped_text: str):
    """The group column's value for a counterfactual copy.

    A value naming a group of the axis ("female") becomes the one group the swapped text
    mentions; a value that is a swap term ("woman") is swapped like the text; any other value
    (another axis's group, or a code the lexicon does not know) is kept.
    """
    text = str(value)
    if text.lower() in {g.lower() for g in axis.groups}:
        mentioned = axis.groups_in(swapped_text)
        if len(mentioned) == 1:
            new = mentioned[0]
            return new.capitalize() if text[:1].isupper() else new
        return value  # the copy mentions several groups or none: no single group to name
    if text.lower() in mapping:
        return swap_terms(text, mapping)
    return value


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
    """``mitigate`` without its summary."""
    return mitigate(records, spec, lexicon)[0]


def mitigate(records: list[dict], spec, lexicon: Lexicon) -> tuple[list[dict], dict]:
    """What ``finetune`` calls: ``spec.fairness.mitigation`` applied to the training records.

    Counterfactual copies come first, then reweighting over the augmented set; the weight sits
    in each record under ``_weight``.

    Returns:
        ``(records, summary)``; the summary says per step what it did (``counterfactual``:
        copies per axis; ``reweight``: the weight range) and ``lines``, one sentence per step
        for logs and the model card. A step that changed nothing is logged as a warning.
    """
    steps = (spec.get("fairness") or {}).get("mitigation") or []
    data = spec.data
    fields = [data.prompt_field, data.response_field] if data.format == "instruction" \
        else [data.text_field]  # fmt: skip
    summary: dict = {"steps": list(steps), "records_before": len(records), "lines": []}
    if "counterfactual" in steps:
        added: dict = {}
        records = counterfactual_augment(records, fields, lexicon,
                                         group_field=data.get("group_field"), added=added)  # fmt: skip
        summary["counterfactual"] = added
        total = sum(added.values())
        if total:
            per_axis = ", ".join(f"{a} {n}" for a, n in added.items() if n)
            summary["lines"].append(f"counterfactual augmentation added {total} swapped copies "
                                    f"({per_axis})")  # fmt: skip
        else:
            line = (f"counterfactual augmentation added nothing: no training record mentions a "
                    f"swap term of any axis with swap pairs ({', '.join(added)}; lexicon "
                    f"{Path(lexicon.source).name})")  # fmt: skip
            summary["lines"].append(line)
            log.warning("%s; add swap_pairs for your groups' words to a lexicon "
                        "(audit.lexicon)", line)  # fmt: skip
    if "reweight" in steps:
        if data.format != "classification":
            raise JobError("reweight needs labels: use data.format 'classification'",
                           "fairness.mitigation")  # fmt: skip
        groups = record_groups(records, lexicon, data.text_field, data.get("group_field"))
        labels = [r[data.label_field] for r in records]
        weights = reweight(groups, labels)
        records = [{**r, WEIGHT_KEY: w} for r, w in zip(records, weights)]
        summary["reweight"] = {"min": min(weights), "max": max(weights)}
        if max(weights) - min(weights) < 1e-9:
            line = ("reweighting changed nothing: every group already has the same label mix, "
                    "or no record has a group")  # fmt: skip
            log.warning("%s", line)
        else:
            line = f"reweighting: weights {min(weights):.3g} to {max(weights):.3g} (Kamiran-Calders)"
        summary["lines"].append(line)
    summary["records_after"] = len(records)
    return records, summary
