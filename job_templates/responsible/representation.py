"""Demographic representation of a dataset and, with labels, pre-training bias metrics.

Per axis (gender, religion, ... or a group column): how many records mention each group, each
group's share of the mentions, and the total-variation distance of those shares from uniform,
``TVD = 1/2 * sum_g |share_g - 1/k|`` (0 = every group equally present; approaching 1 = one group
only). With labels, per group: the label distribution and SageMaker Clarify's pre-training metrics
with the group as facet *d* and the rest of the axis as facet *a*:

- class imbalance ``CI = (n_a - n_d) / (n_a + n_d)`` (in [-1, 1]; > 0: the group is a minority);
- difference in proportions of labels ``DPL = q_a - q_d`` with ``q`` the share of positive labels
  (> 0: the group receives the positive label less often than the rest).
"""

from __future__ import annotations

from collections import Counter


def tvd_from_uniform(counts: dict[str, int]) -> float | None:
    total = sum(counts.values())
    if not counts or total == 0:
        return None
    k = len(counts)
    return 0.5 * sum(abs(c / total - 1 / k) for c in counts.values())


def axis_representation(memberships: list[list[str]], groups: list[str]) -> dict:
    """``memberships[i]``: the groups record i belongs to (possibly none or several)."""
    counts = dict.fromkeys(groups, 0)
    for member in memberships:
        for g in member:
            counts[g] = counts.get(g, 0) + 1
    mentions = sum(counts.values())
    covered = sum(bool(m) for m in memberships)
    return {
        "counts": counts,
        "shares": {g: (c / mentions if mentions else 0.0) for g, c in counts.items()},
        "records_mentioning": covered,
        "coverage": covered / max(len(memberships), 1),
        "tvd_from_uniform": tvd_from_uniform(counts),
    }


def label_metrics(memberships: list[list[str]], labels: list, groups: list[str],
                  positive) -> dict:  # fmt: skip
    """Per-group label rates, CI and DPL; records mentioning no group of the axis are left out.

    A group with no records gets ``None`` rates (reported, not an error: the audit describes data).
    """
    on_axis = [(set(m), y) for m, y in zip(memberships, labels) if m]
    classes = sorted({str(y) for _, y in on_axis})
    out = {}
    for g in groups:
        inside = [y for m, y in on_axis if g in m]
        rest = [y for m, y in on_axis if g not in m]
        n_d, n_a = len(inside), len(rest)
        dist = Counter(str(y) for y in inside)
        q_d = _positive_share(inside, positive)
        q_a = _positive_share(rest, positive)
        out[g] = {
            "n": n_d,
            "label_rates": {c: (dist[c] / n_d if n_d else None) for c in classes},
            "positive_rate": q_d,
            "ci": (n_a - n_d) / (n_a + n_d) if n_a + n_d else None,
            "dpl": (q_a - q_d) if q_a is not None and q_d is not None else None,
        }
    return out


def _positive_share(labels: list, positive) -> float | None:
    if not labels:
        return None
    return sum(str(y) == str(positive) for y in labels) / len(labels)
