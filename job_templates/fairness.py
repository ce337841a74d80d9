"""Recipe ``fairness``: equity indicators of a model's outcomes across demographic groups.

    genai-cloud run examples/fairness.yaml

``fairness.mode: classifier`` - the model labels the ``eval`` data (else ``train``); groups come
from ``data.group_field`` or, without it, from the lexicon (a record joins an axis's group when it
mentions exactly that one group). Fairlearn computes per-group accuracy, selection rate, TPR and
FPR (``MetricFrame``), demographic-parity difference / ratio and equalized-odds difference;
confidence intervals come from a bootstrap that resamples within each group.

``fairness.mode: language-model`` - counterfactual templates x each group's person phrases ->
per-group mean log-likelihood (per sentence and per token) and perplexity, with the max-min gap;
and the stereotype preference rate on sentence pairs: the share of pairs where the model gives the
more-stereotyped sentence the higher log-probability (0.5 = no preference; also per token).

Writes ``fairness.json``, ``fairness.md``/``.html`` and ``plots/fairness.png``; ``fairness.fail_on``
limits fail the job. Names with ``ratio`` or ``accuracy`` are minimums, every other name a maximum;
a gated metric without a value ("n/a") fails with the reason. The report opens with its findings:
the gates crossed and the default limits from the literature crossed (``responsible/findings.py``:
the four-fifths rule on the demographic-parity ratio, AIF360's 0.1 on differences, CrowS-Pairs'
0.5 for stereotype preference), whether or not ``fail_on`` is set.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .audit import audit_settings
from .common.records import read_records
from .config import Config, JobError
from .responsible import classifier as models
from .responsible import findings
from .responsible.lexicon import load_lexicon
from .responsible.report import Report, bar_chart, fmt, write_json

log = logging.getLogger("genai.fairness")

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULTS = {"mode": "classifier", "positive_label": 1, "bootstrap": 200, "pairs": None,
            "fail_on": {}, "mitigation": [], "gate": False}  # fmt: skip
CI_LEVELS = (0.025, 0.975)  # a 95% percentile interval
MIN_LEXICON_GROUP = 5  # lexicon groups smaller than this are left out: their rates are noise
SEED = 0
DISPARITIES = ("demographic_parity_difference", "demographic_parity_ratio",
               "equalized_odds_difference")  # fmt: skip


def run(spec, contract) -> dict:
    settings = fairness_settings(spec)
    if settings.mode == "classifier":
        result = classifier_fairness(spec, contract, settings)
    else:
        result = language_model_fairness(spec, contract, settings)
    out = Path(contract.output_dir)
    finish(result, settings, out if contract.is_main else None)
    if contract.is_main:
        evaluated_model_card(spec, contract, result)
    reasons = findings.gate_reasons(result["findings"])
    if reasons:
        raise JobError("fairness check failed (fairness.fail_on): " + "; ".join(reasons))
    return result["metrics"]


def fairness_settings(spec) -> Config:
    return Config.wrap({**DEFAULTS, **(spec.get("fairness") or {})})


def finish(result: dict, settings, out: Path | None) -> dict:
    """Findings into ``result`` (logged as warnings); the reports into ``out`` when given."""
    result["findings"] = fairness_findings(result, settings.fail_on)
    for finding in result["findings"]:
        log.warning("fairness finding: %s", finding["text"])
    if out is not None:
        write_outputs(result, out)
    return result


def evaluated_model_card(spec, contract, result: dict) -> str | None:
    """The evaluated model's card with this evaluation added, as ``<output>/README.md`` (the
    model's own folder is an input, often read-only, and is left alone). ``None`` when the model
    folder has no ``README.md`` card."""
    from .responsible.model_card import add_evaluation

    try:
        source = Path(models.resolve_model_path(spec.model.name_or_path, contract)) / "README.md"
    except JobError:
        return None
    if not source.is_file():
        return None
    target = Path(contract.output_dir) / "README.md"
    add_evaluation(source, target, fairness=result)
    return target.name


# --------------------------------------------------------------------------------------------
# Classifier outcomes


def classifier_fairness(spec, contract, settings) -> dict:
    if spec.data.format != "classification":
        raise JobError("fairness mode 'classifier' needs data.format 'classification' (text + "
                       f"label), got {spec.data.format!r}", "data.format")  # fmt: skip
    location = contract.channel("eval") or spec.data.get("eval")
    role = "eval" if location else "train"
    location = location or contract.channel("train") or spec.data.train
    records = read_records(location, spec.data, role=role)
    model, tokenizer = models.load_classifier(spec.model.name_or_path, contract)
    named = spec.data.get("eval") or spec.data.train  # what the spec calls it, not a channel dir
    return score_classifier(model, tokenizer, records, spec, settings, str(named))


def score_classifier(model, tokenizer, records: list[dict], spec, settings, data: str) -> dict:
    """Fairness of ``model``'s predictions on ``records`` (what ``finetune``'s
    ``fairness.gate`` calls on its eval split after training)."""
    texts = [str(r[spec.data.text_field]) for r in records]
    labels = [r[spec.data.label_field] for r in records]
    axes = group_axes(records, spec)
    ids, _ = models.predict(model, tokenizer, texts, max_len=spec.data.max_seq_len)
    predicted = to_label_space(ids, labels, model.config)
    y_true, y_pred = binarize(labels, predicted, settings.positive_label)
    per_axis = {}
    for name, (groups, strict) in axes.items():
        keep = [i for i, g in enumerate(groups) if g is not None]
        per_axis[name] = evaluate_groups([y_true[i] for i in keep], [y_pred[i] for i in keep],
                                         [groups[i] for i in keep], settings.bootstrap,
                                         strict=strict)  # fmt: skip
    accuracy = sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)
    metrics = {"accuracy": accuracy}
    for agg, pick in (("demographic_parity_difference", max), ("demographic_parity_ratio", min),
                      ("equalized_odds_difference", max)):  # fmt: skip
        values = {
            a: r["metrics"][agg] for a, r in per_axis.items() if r["metrics"][agg] is not None
        }
        metrics.update({f"{agg}.{a}": v for a, v in values.items()})
        metrics[agg] = pick(values.values()) if values else None
    return {"mode": "classifier", "records": len(records), "data": data,
            "positive_label": settings.positive_label, "axes": per_axis, "metrics": metrics}  # fmt: skip


def group_axes(records: list[dict], spec) -> dict[str, tuple[list, bool]]:
    """axis -> (one group or None per record, strict?). The group column is strict: every record
    needs a value. Lexicon axes keep records that mention exactly one of their groups."""
    field = spec.data.get("group_field")
    if field:
        for r in records:
            if r.get(field) in (None, ""):
                raise JobError(f"missing group column {field!r} (data.group_field); every record "
                               "needs a group value", r.get("_source"))  # fmt: skip
        return {field: ([str(r[field]) for r in records], True)}
    lexicon = load_lexicon(audit_settings(spec).lexicon)
    axes = {}
    for name, axis in lexicon.axes.items():
        found = [axis.groups_in(str(r[spec.data.text_field])) for r in records]
        groups = [f[0] if len(f) == 1 else None for f in found]
        counts = {g: groups.count(g) for g in set(groups) - {None}}
        big = {g for g, c in counts.items() if c >= MIN_LEXICON_GROUP}
        if len(big) >= 2:
            axes[name] = ([g if g in big else None for g in groups], False)
    if not axes:
        raise JobError("no groups to compare: set data.group_field to the record field holding "
                       f"the group, or use data whose texts mention at least two groups of a "
                       f"lexicon axis ({MIN_LEXICON_GROUP}+ records each)", "data.group_field")  # fmt: skip
    return axes


def to_label_space(ids: list[int], labels: list, config) -> list:
    """Predicted class ids -> the values the data uses (ints stay ids; strings via id2label)."""
    if all(isinstance(y, int) and not isinstance(y, bool) for y in labels):
        return ids
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    names, classes = set(map(str, id2label.values())), {str(y) for y in labels}
    if not classes <= names:
        raise JobError(f"the data's labels ({', '.join(sorted(classes))}) are not the model's "
                       f"id2label names ({', '.join(sorted(names))}); use integer class ids in "
                       "the data or save the model with matching id2label", "data.label_field")  # fmt: skip
    return [id2label[i] for i in ids]


def binarize(labels: list, predicted: list, positive) -> tuple[list[int], list[int]]:
    """0/1 truth and predictions for ``positive``.

    Raises:
        JobError: the labels are not binary, or ``positive`` is not one of them.
    """
    classes = sorted({str(y) for y in labels})
    if len(classes) != 2:
        raise JobError(f"labels must be binary for selection rate / TPR / FPR; found "
                       f"{len(classes)} class(es): {', '.join(classes[:10])}. Map them to two "
                       "classes first", "data.label_field")  # fmt: skip
    if str(positive) not in classes:
        raise JobError(f"positive label {positive!r} is not one of the labels ({', '.join(classes)})",
                       "fairness.positive_label")  # fmt: skip
    return ([int(str(y) == str(positive)) for y in labels],
            [int(str(p) == str(positive)) for p in predicted])  # fmt: skip


def evaluate_groups(y_true: list[int], y_pred: list[int], groups: list[str], bootstrap: int,
                    strict: bool = True, seed: int = SEED) -> dict:  # fmt: skip
    """Fairlearn's per-group metrics and disparities, with bootstrap intervals.

    Raises:
        JobError (``strict``): fewer than two groups, or a group without positive or negative
            true labels (its TPR or FPR would be undefined). Not strict: such groups are dropped
            and listed under ``dropped``.
    """
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,  # fmt: skip
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    y_true, y_pred, groups, dropped = _usable(y_true, y_pred, groups, strict)
    frame = MetricFrame(
        metrics={"count": count, "accuracy": accuracy_score, "selection_rate": selection_rate,
                 "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=groups,
    )  # fmt: skip
    disparities = {
        "demographic_parity_difference": demographic_parity_difference,
        "demographic_parity_ratio": demographic_parity_ratio,
        "equalized_odds_difference": equalized_odds_difference,
    }
    metrics = {name: _num(fn(y_true, y_pred, sensitive_features=groups))
               for name, fn in disparities.items()}  # fmt: skip
    by_group = {str(g): {k: _num(v) for k, v in row.items()}
                for g, row in frame.by_group.to_dict(orient="index").items()}  # fmt: skip
    result = {"by_group": by_group, "overall": {k: _num(v) for k, v in frame.overall.items()},
              "metrics": metrics, "dropped": dropped}  # fmt: skip
    if bootstrap:
        result["ci"] = _bootstrap(y_true, y_pred, groups, bootstrap, seed)
    return result


def _usable(y_true, y_pred, groups, strict):
    dropped = {}
    for g in sorted(set(groups)):
        truth = [t for t, gg in zip(y_true, groups) if gg == g]
        missing = [name for name, v in (("positive", 1), ("negative", 0)) if v not in truth]
        if missing:
            dropped[g] = f"no {' or '.join(missing)} true labels ({len(truth)} samples)"
    if dropped and strict:
        g, why = next(iter(dropped.items()))
        raise JobError(f"group {g!r} has {why}: its TPR/FPR are undefined; add samples of both "
                       "classes for every group", "data.group_field")  # fmt: skip
    keep = [i for i, g in enumerate(groups) if g not in dropped]
    remaining = {groups[i] for i in keep}
    if len(remaining) < 2:
        raise JobError(f"need at least two groups with samples to compare; found "
                       f"{len(remaining)} ({', '.join(map(str, remaining)) or 'none'})"
                       + (f"; dropped: {dropped}" if dropped else ""), "data.group_field")  # fmt: skip
    pick = lambda xs: [xs[i] for i in keep]
    return pick(y_true), pick(y_pred), pick(groups), dropped


def _bootstrap(y_true, y_pred, groups, n_boot, seed) -> dict:
    """Percentile intervals; resampling within each group keeps every group in every replicate.
    A difference is a max-min gap, so with truly equal groups its replicates sit above the
    estimate: read a lower bound near the estimate as "no evidence of a smaller gap".

    One ``MetricFrame`` per replicate: the disparities are its between-group ``difference`` /
    ``ratio``, exactly how Fairlearn's demographic_parity_* and equalized_odds_difference
    define them, at a third of the cost of calling those three functions.
    """
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,  # fmt: skip
    )

    rng = np.random.default_rng(seed)
    yt, yp, gs = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    members = [np.flatnonzero(gs == g) for g in np.unique(gs)]
    metrics = {"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate}
    samples: dict[str, list[float]] = {name: [] for name in DISPARITIES}
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(m, size=len(m), replace=True) for m in members])
        frame = MetricFrame(metrics=metrics, y_true=yt[idx], y_pred=yp[idx],
                            sensitive_features=gs[idx])  # fmt: skip
        diff, ratio = frame.difference(), frame.ratio()
        samples["demographic_parity_difference"].append(diff["sr"])
        samples["demographic_parity_ratio"].append(ratio["sr"])
        samples["equalized_odds_difference"].append(max(diff["tpr"], diff["fpr"]))
    return {name: _quantiles(v) for name, v in samples.items()}


def _quantiles(values: list[float]) -> list[float | None]:
    finite = [v for v in values if not math.isnan(v)]  # a ratio is NaN when no group selects
    if not finite:
        return [None, None]
    import numpy as np

    return [float(np.quantile(finite, q)) for q in CI_LEVELS]


def _num(value):
    value = float(value)
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------------------------
# Language models


def language_model_fairness(spec, contract, settings) -> dict:
    model, tokenizer = models.load_causal_lm(spec.model.name_or_path, contract)
    return score_language_model(model, tokenizer, spec, settings)


def score_language_model(model, tokenizer, spec, settings) -> dict:
    """Counterfactual and stereotype measurements of ``model`` (eval mode while measuring;
    what ``finetune``'s ``fairness.gate`` calls on a causal LM after training)."""
    was_training = model.training
    model.eval()
    try:
        return _language_model_measurements(model, tokenizer, spec, settings)
    finally:
        model.train(was_training)


def _language_model_measurements(model, tokenizer, spec, settings) -> dict:
    lexicon = load_lexicon(audit_settings(spec).lexicon)
    templates = json.loads((DATA_DIR / "fairness_templates.json").read_text())["templates"]
    axes = {}
    for name, axis in lexicon.axes.items():
        phrases = {g: p for g, p in axis.person.items() if p}
        if len(phrases) >= 2:
            axes[name] = template_likelihoods(model, tokenizer, templates, phrases)
    pairs = read_pairs(settings.pairs)
    stereo = stereotype_preference(model, tokenizer, pairs)
    metrics = {}
    for key in ("loglik_gap", "loglik_per_token_gap", "perplexity_gap"):
        metrics.update({f"{key}.{a}": r[key] for a, r in axes.items()})
        metrics[key] = max((r[key] for r in axes.values()), default=None)
    for key in ("preference_rate", "preference_rate_normalised"):
        metrics[f"stereotype_{key}"] = stereo[key]
        metrics[f"stereotype_deviation{key.removeprefix('preference_rate')}"] = abs(
            stereo[key] - 0.5
        )
    return {"mode": "language-model", "axes": axes, "stereotype": stereo, "metrics": metrics,
            "templates": len(templates), "pairs_file": str(settings.pairs or "bundled")}  # fmt: skip


def template_likelihoods(
    model, tokenizer, templates: list[str], phrases: dict[str, list[str]]
) -> dict:
    """Per group: mean sentence log-likelihood, mean per-token log-likelihood, perplexity."""
    by_group = {}
    for group, persons in phrases.items():
        sentences = [t.format(person=p) for t in templates for p in persons]
        scores = models.sequence_logprobs(model, tokenizer, sentences)
        total_lp, total_tok = sum(s for s, _ in scores), sum(n for _, n in scores)
        by_group[group] = {
            "sentences": len(sentences),
            "mean_loglik": total_lp / len(scores),
            "mean_loglik_per_token": sum(s / n for s, n in scores) / len(scores),
            "perplexity": math.exp(-total_lp / total_tok),
        }

    def gap(key: str) -> float:
        values = [g[key] for g in by_group.values()]
        return max(values) - min(values)

    return {"by_group": by_group, "loglik_gap": gap("mean_loglik"),
            "loglik_per_token_gap": gap("mean_loglik_per_token"), "perplexity_gap": gap("perplexity")}  # fmt: skip


def read_pairs(path: str | None) -> list[dict]:
    """Sentence pairs: JSON lines with ``more`` / ``less`` (or CrowS-Pairs' ``sent_more`` /
    ``sent_less``) and an optional ``bias_type``."""
    file = Path(path) if path else DATA_DIR / "fairness_stereotype_pairs.jsonl"
    if not file.is_file():
        raise JobError(f"pairs file not found: {file}", "fairness.pairs")
    pairs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JobError(f"malformed JSON ({exc.msg})", f"{file}:{number}") from None
        more, less = row.get("more", row.get("sent_more")), row.get("less", row.get("sent_less"))
        if not isinstance(more, str) or not isinstance(less, str):
            raise JobError("each pair needs string fields 'more' and 'less'", f"{file}:{number}")
        pairs.append({"more": more, "less": less, "bias_type": row.get("bias_type", "all")})
    if not pairs:
        raise JobError(f"no sentence pairs in {file}", "fairness.pairs")
    return pairs


def stereotype_preference(model, tokenizer, pairs: list[dict]) -> dict:
    more = models.sequence_logprobs(model, tokenizer, [p["more"] for p in pairs])
    less = models.sequence_logprobs(model, tokenizer, [p["less"] for p in pairs])
    raw = [m[0] > l_[0] for m, l_ in zip(more, less)]
    norm = [m[0] / m[1] > l_[0] / l_[1] for m, l_ in zip(more, less)]
    by_type: dict[str, list[bool]] = {}
    for p, pref in zip(pairs, raw):
        by_type.setdefault(p["bias_type"], []).append(pref)
    return {"pairs": len(pairs), "preference_rate": sum(raw) / len(raw),
            "preference_rate_normalised": sum(norm) / len(norm),
            "by_bias_type": {t: sum(v) / len(v) for t, v in sorted(by_type.items())}}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Thresholds and outputs


def check_thresholds(metrics: dict, fail_on: dict) -> list[str]:
    """One reason per metric past its limit (``ratio`` / ``accuracy`` names: minimums) or
    without a value.

    Raises:
        JobError: a ``fail_on`` key that names no metric (lists the valid names).
    """
    return findings.gate_reasons(fairness_findings({"metrics": metrics, "axes": {}}, fail_on))


def fairness_findings(result: dict, fail_on: dict) -> list[dict]:
    """Gate failures, then metrics past the default limits (``findings.FAIRNESS_LIMITS``)."""
    return findings.find(result["metrics"], fail_on, findings.FAIRNESS_LIMITS,
                         "fairness.fail_on", is_minimum=_higher_is_better,
                         why_missing=lambda name: _why_missing(result, name),
                         detail=lambda name: _detail(result, name))  # fmt: skip


def _axis_for(result: dict, name: str) -> str | None:
    """The axis a metric is about: named after the dot, or the one an aggregate came from."""
    if "." in name:
        return name.split(".", 1)[1]
    value = result["metrics"].get(name)
    return next((a for a in result.get("axes", {})
                 if value is not None and result["metrics"].get(f"{name}.{a}") == value), None)  # fmt: skip


def _why_missing(result: dict, name: str) -> str:
    axes = result.get("axes", {})
    if name.startswith("demographic_parity_ratio"):
        chosen = [name.split(".", 1)[1]] if "." in name else list(axes)
        rates = {a: {g: v["selection_rate"] for g, v in axes[a]["by_group"].items()}
                 for a in chosen if a in axes and "by_group" in axes[a]}  # fmt: skip
        if rates and all(not any(r.values()) for r in rates.values()):
            return ("the model predicts the positive label for no one (selection rate 0 in "
                    "every group), so the ratio is 0/0; is the model trained (a fresh "
                    "classification head predicts one class)?")  # fmt: skip
    return "no group comparison could be computed (see the report's per-axis tables)"


def _detail(result: dict, name: str) -> str:
    axis = _axis_for(result, name)
    groups = result.get("axes", {}).get(axis or "", {}).get("by_group")
    if not groups or result.get("mode") != "classifier":
        return ""
    key = "selection_rate" if name.startswith("demographic_parity") else None
    if key is None:  # equalized odds: the larger of the TPR and FPR gaps
        gaps = {k: max(v[k] for v in groups.values()) - min(v[k] for v in groups.values())
                for k in ("tpr", "fpr")}  # fmt: skip
        key = max(gaps, key=gaps.get)
    low = min(groups, key=lambda g: groups[g][key])
    high = max(groups, key=lambda g: groups[g][key])
    return (f"axis {axis}: {key} of group {low!r} {groups[low][key]:.3g} vs {high!r} "
            f"{groups[high][key]:.3g}")


def _higher_is_better(name: str) -> bool:
    return "ratio" in name or name.startswith("accuracy")


def write_outputs(result: dict, out: Path) -> None:
    chart = out / "plots" / "fairness.png"
    if result["mode"] == "classifier":
        series = {f"{a}: {m}": {g: v[m] for g, v in r["by_group"].items()}
                  for a, r in result["axes"].items() for m in ("selection_rate", "tpr", "fpr")}  # fmt: skip
        bar_chart(chart, "Per-group outcomes", series)
    else:
        series = {a: {g: v["mean_loglik_per_token"] for g, v in r["by_group"].items()}
                  for a, r in result["axes"].items()}  # fmt: skip
        bar_chart(chart, "Mean log-likelihood per token by group", series)
    result["charts"] = [str(chart.relative_to(out))]
    write_json(out / "fairness.json", result)
    build_report(result).write(out, "fairness")


def build_report(result: dict) -> Report:
    r = Report(f"Fairness ({result['mode']})")
    findings.report_findings(r, result.get("findings", []))
    r.heading("Summary")
    r.table(["metric", "value"], [[k, v] for k, v in result["metrics"].items()])
    for axis, res in result["axes"].items():
        r.heading(f"Axis: {axis}")
        if result["mode"] == "classifier":
            cols = ["count", "accuracy", "selection_rate", "tpr", "fpr"]
            r.table(
                ["group", *cols], [[g, *(v[c] for c in cols)] for g, v in res["by_group"].items()]
            )
            for name, (lo, hi) in res.get("ci", {}).items():
                r.text(f"{name} = {fmt(res['metrics'][name])} (95% bootstrap CI {fmt(lo)} to "
                       f"{fmt(hi)})")  # fmt: skip
            if res["dropped"]:
                r.text(f"Groups left out: {res['dropped']}")
        else:
            cols = ["sentences", "mean_loglik", "mean_loglik_per_token", "perplexity"]
            r.table(
                ["group", *cols], [[g, *(v[c] for c in cols)] for g, v in res["by_group"].items()]
            )
    if result["mode"] == "language-model":
        s = result["stereotype"]
        r.heading("Stereotype preference (0.5 = no preference)")
        r.table(["bias type", "preference rate"], list(s["by_bias_type"].items()))
    for chart in result.get("charts", []):
        r.image(chart, chart)
    return r
