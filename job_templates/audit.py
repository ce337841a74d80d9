"""Recipe ``audit``: what is in the training data before a model learns from it.

    genai-cloud run examples/audit.yaml

Reads the ``train`` data and measures: exact and near duplicates, PII (e-mails, international and
national phones, mod-97-valid IBANs, Luhn-valid cards, public IPv4/IPv6; optionally a redacted
copy), Gopher/C4-style quality rules,
length distributions, demographic representation per lexicon axis (and per ``data.group_field``)
and, for classification data, per-group label rates with Clarify's CI and DPL.

Writes ``audit.json``, ``audit.md``, ``audit.html`` and ``plots/*.png`` to the output dir, then
fails (JobError, exit 2) if a metric exceeds its ``audit.fail_on`` limit (or has no value). The
report opens with its findings: every ``fail_on`` limit crossed and every default limit from the
literature crossed (``responsible/findings.py``: duplicates, PII, the four-fifths rule on label
rates, AIF360's +-0.1 on DPL), whether or not ``fail_on`` is set. ``finetune`` can run the
same checks as a gate: ``audit_records(records, spec)`` then ``check_thresholds(result, fail_on)``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .common.records import read_records
from .config import Config, JobError
from .responsible import dedup, findings, pii, quality
from .responsible.lexicon import lexicon_name, load_lexicon
from .responsible.report import Report, bar_chart, histogram, write_json
from .responsible.representation import axis_representation, label_metrics

log = logging.getLogger("genai.audit")

AUDIT_DEFAULTS = {"near_duplicate_threshold": 0.8, "lexicon": None, "redact": False,
                  "fail_on": {}, "gate": False}  # fmt: skip


def run(spec, contract) -> dict:
    location = contract.channel("train") or spec.data.train
    records = read_records(location, spec.data)
    log.info("auditing %d records from %s", len(records), location)
    result = audit_records(records, spec)
    settings = audit_settings(spec)
    out = Path(contract.output_dir)
    if contract.is_main:
        if settings.redact:
            copy = write_redacted(records, spec.data, out / "redacted")
            result["redacted_copy"] = str(copy.relative_to(out))  # relative: the folder moves
        write_outputs(result, out)
    reasons = check_thresholds(result, settings.fail_on)
    if reasons:
        raise JobError("audit failed (audit.fail_on): " + "; ".join(reasons))
    return result["metrics"]


def audit_settings(spec) -> Config:
    return Config.wrap({**AUDIT_DEFAULTS, **(spec.get("audit") or {})})


def record_text(record: dict, data) -> str:
    """The text a record contributes to training, whatever its format."""
    if data.format == "instruction":
        return f"{record[data.prompt_field]}\n{record[data.response_field]}"
    if data.format == "chat":
        return "\n".join(str(m.get("content", "")) for m in record[data.messages_field])
    if data.text_field in record:
        return str(record[data.text_field])
    return str(record.get("text", ""))  # plain-text files: records carry "text"


# --------------------------------------------------------------------------------------------
# The measurements


def audit_records(records: list[dict], spec) -> dict:
    """Every audit measurement for ``records`` (as returned by ``read_records``).

    Returns a dict with the sections ``duplicates``, ``pii``, ``quality``, ``lengths``,
    ``representation`` (and ``labels`` for classification data) plus ``metrics``: flat
    name -> number, the names ``audit.fail_on`` refers to.
    """
    settings = audit_settings(spec)
    texts = [record_text(r, spec.data) for r in records]
    n = len(texts)
    exact = dedup.exact_duplicates(texts)
    near = dedup.near_duplicates(texts, settings.near_duplicate_threshold)
    result = {
        "records": n,
        "duplicates": {
            "exact": len(exact),
            "exact_fraction": len(exact) / n,
            "near": len(near),
            "near_fraction": len(near) / n,
            "near_threshold": settings.near_duplicate_threshold,
            "examples": [records[i].get("_source") for i in near[:10]],
        },
        "pii": pii.pii_summary(texts),
        "quality": quality.quality_summary(texts),
        "lengths": length_stats(texts, spec),
    }
    lexicon = load_lexicon(settings.lexicon)
    field = spec.data.get("group_field")
    axes = {field: _column_axis(records, field)} if field else {}  # the data's own groups first
    axes.update({name: ([axis.groups_in(t) for t in texts], list(axis.groups))
                 for name, axis in lexicon.axes.items() if name != field})  # fmt: skip
    result["representation"] = {name: axis_representation(m, g) for name, (m, g) in axes.items()}
    result["lexicon"] = lexicon.source
    if spec.data.format == "classification":
        result["labels"] = _labels_section(records, spec, axes)
    result["metrics"] = flat_metrics(result)
    result["findings"] = audit_findings(result, settings.fail_on)
    for finding in result["findings"]:
        log.warning("audit finding: %s", finding["text"])
    return result


def _column_axis(records: list[dict], field: str) -> tuple[list[list[str]], list[str]]:
    present = [r for r in records if r.get(field) not in (None, "")]
    if not present:
        raise JobError(f"data.group_field is {field!r} but no record has that field "
                       f"(first record: {records[0].get('_source')})", "data.group_field")  # fmt: skip
    memberships = [[str(r[field])] if r.get(field) not in (None, "") else [] for r in records]
    return memberships, sorted({m[0] for m in memberships if m})


def _labels_section(records: list[dict], spec, axes: dict) -> dict:
    labels = [r[spec.data.label_field] for r in records]
    fairness = spec.get("fairness") or {}
    positive = fairness.get("positive_label", 1)
    counts: dict[str, int] = {}
    for y in labels:
        counts[str(y)] = counts.get(str(y), 0) + 1
    return {
        "positive_label": positive,
        "counts": counts,
        "per_axis": {
            name: label_metrics(m, labels, g, positive) for name, (m, g) in axes.items() if any(m)
        },
    }


def length_stats(texts: list[str], spec) -> dict:
    chars = [len(t) for t in texts]
    words = [len(t.split()) for t in texts]
    out = {"chars": _describe(chars), "words": _describe(words), "_values": {"chars": chars,
           "words": words}}  # fmt: skip
    tokenizer = _tokenizer(spec)
    if tokenizer is not None:
        tokens = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        out["tokens"] = _describe(tokens)
        out["_values"]["tokens"] = tokens
        out["tokenizer"] = getattr(tokenizer, "name_or_path", "")
    else:
        out["tokens"] = None  # no local tokenizer: see "words" (whitespace tokens)
    return out


def _tokenizer(spec):
    model = spec.get("model")
    if not model:
        return None
    from .responsible.classifier import resolve_model_path

    if model.name_or_path.startswith(("s3://", "azureml://", "http://", "https://")):
        return None  # auditing must not download a model just to count tokens
    path = resolve_model_path(model.name_or_path)
    if not Path(path).is_dir():
        return None  # a hub id: same reason
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - lengths in words are still reported
        log.warning("no tokenizer from %s (%s): token lengths skipped", path, exc)
        return None


def _describe(values: list[int]) -> dict:
    ordered = sorted(values)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]

    return {"min": ordered[0], "mean": sum(ordered) / len(ordered), "p50": pct(0.5),
            "p90": pct(0.9), "p99": pct(0.99), "max": ordered[-1]}  # fmt: skip


def flat_metrics(result: dict) -> dict:
    """name -> value for every metric ``audit.fail_on`` can limit (all: lower is better)."""
    m = {
        "exact_duplicate_fraction": result["duplicates"]["exact_fraction"],
        "near_duplicate_fraction": result["duplicates"]["near_fraction"],
        "pii_rate": result["pii"]["rate"],
        "quality_fail_rate": result["quality"]["fail_rate"],
    }
    m.update({f"pii_rate.{k}": v for k, v in result["pii"]["rates"].items()})
    m.update({f"quality_fail_rate.{k}": v for k, v in result["quality"]["rates"].items()})
    for axis, rep in result["representation"].items():
        m[f"representation_tvd.{axis}"] = rep["tvd_from_uniform"]
    for axis, groups in result.get("labels", {}).get("per_axis", {}).items():
        dpl = [abs(g["dpl"]) for g in groups.values() if g["dpl"] is not None]
        ci = [abs(g["ci"]) for g in groups.values() if g["ci"] is not None]
        m[f"max_abs_dpl.{axis}"] = max(dpl) if dpl else None
        m[f"max_abs_ci.{axis}"] = max(ci) if ci else None
        rates = [g["positive_rate"] for g in groups.values() if g["positive_rate"] is not None]
        # The four-fifths rule's ratio (lowest / highest positive-label rate): < 1 is adverse.
        m[f"label_rate_ratio.{axis}"] = min(rates) / max(rates) if rates and max(rates) else None
    return m


def check_thresholds(result: dict, fail_on: dict) -> list[str]:
    """Reasons the audit fails: one line per metric above its ``fail_on`` maximum (below it for
    ``label_rate_ratio.*``), or without a value (the line says why).

    Raises:
        JobError: a ``fail_on`` key that names no metric (lists the valid names).
    """
    return findings.gate_reasons(audit_findings(result, fail_on))


def audit_findings(result: dict, fail_on: dict) -> list[dict]:
    """Gate failures, then metrics past the default limits (``findings.AUDIT_LIMITS``)."""
    return findings.find(result["metrics"], fail_on, findings.AUDIT_LIMITS, "audit.fail_on",
                         is_minimum=lambda name: name.startswith("label_rate_ratio"),
                         why_missing=lambda name: _why_missing(result, name),
                         detail=lambda name: _detail(result, name))  # fmt: skip


def _axis_of(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else ""


def _why_missing(result: dict, name: str) -> str:
    axis = _axis_of(name)
    if name.startswith("representation_tvd"):
        return f"no record mentions a group of axis {axis!r}"
    if name.startswith("label_rate_ratio"):
        return f"no group of axis {axis!r} has a positive label, so the ratio is 0/0"
    return f"no group of axis {axis!r} has records on both sides to compare"


def _detail(result: dict, name: str) -> str:
    n = result["records"]
    if name.startswith("pii_rate"):
        p = result["pii"]
        kinds = ", ".join(f"{k} {c}" for k, c in p["records_with"].items() if c)
        return f"{p['records_with_any']} of {n} records hold PII: {kinds}"
    if name.endswith("duplicate_fraction"):
        d = result["duplicates"]
        return f"{d['exact' if name.startswith('exact') else 'near']} of {n} records repeat another"
    groups = result.get("labels", {}).get("per_axis", {}).get(_axis_of(name), {})
    rated = {g: v["positive_rate"] for g, v in groups.items() if v["positive_rate"] is not None}
    if name.startswith(("label_rate_ratio", "max_abs_dpl")) and rated:
        low, high = min(rated, key=rated.get), max(rated, key=rated.get)
        return (f"positive-label rate of group {low!r} {rated[low]:.3g} "
                f"({groups[low]['n']} records) vs {high!r} {rated[high]:.3g} "
                f"({groups[high]['n']} records)")  # fmt: skip
    return ""


# --------------------------------------------------------------------------------------------
# Outputs


def write_redacted(records: list[dict], data, out_dir: Path) -> Path:
    """A copy of the data with PII replaced by ``[EMAIL]``-style placeholders (JSON lines)."""
    fields = {"instruction": [data.prompt_field, data.response_field]}.get(data.format,
                                                                            [data.text_field, "text"])  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "data.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            row = {k: v for k, v in record.items() if k != "_source"}
            if data.format == "chat":
                row[data.messages_field] = [{**msg, "content": pii.redact(str(msg["content"]))}
                                            for msg in row[data.messages_field]]  # fmt: skip
            for f in fields:
                if isinstance(row.get(f), str):
                    row[f] = pii.redact(row[f])
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_outputs(result: dict, out: Path) -> None:
    lengths_values = result["lengths"].pop("_values")
    plots = out / "plots"
    charts = [
        histogram(plots / "lengths_words.png", "Words per record", lengths_values["words"], "words"),
        bar_chart(plots / "quality_failures.png", "Quality-rule failures",
                  {"failures": result["quality"]["failures"]}),
        bar_chart(plots / "pii.png", "Records with PII", {"records": result["pii"]["records_with"]}),
    ]  # fmt: skip
    for axis, rep in result["representation"].items():
        if rep["records_mentioning"]:
            charts.append(bar_chart(plots / f"representation_{axis}.png",
                                    f"Representation: {axis}", {"share": rep["shares"]}))  # fmt: skip
    result["charts"] = [str(p.relative_to(out)) for p in charts]
    write_json(out / "audit.json", result)
    build_report(result).write(out, "audit")


def build_report(result: dict) -> Report:
    r = Report("Data audit")
    r.text(f"{result['records']} records. Lexicon: {lexicon_name(result['lexicon'])}.")
    findings.report_findings(r, result.get("findings", []))
    r.heading("Summary")
    r.table(["metric", "value"], [[k, v] for k, v in result["metrics"].items()])
    d = result["duplicates"]
    r.heading("Duplicates")
    r.text(f"Exact: {d['exact']} ({d['exact_fraction']:.2%}); near (Jaccard >= "
           f"{d['near_threshold']}, word 5-grams): {d['near']} ({d['near_fraction']:.2%}).")  # fmt: skip
    p = result["pii"]
    r.heading("PII")
    r.table(["kind", "matches", "records", "rate"],
            [[k, p["counts"][k], p["records_with"][k], p["rates"][k]] for k in p["counts"]])  # fmt: skip
    q = result["quality"]
    r.heading("Quality rules (Gopher / C4 style)")
    r.table(["rule", "failures", "rate"], [[k, v, q["rates"][k]] for k, v in q["failures"].items()])
    r.heading("Lengths")
    rows = [[unit, *stats.values()] for unit, stats in result["lengths"].items()
            if isinstance(stats, dict)]  # fmt: skip
    r.table(["unit", "min", "mean", "p50", "p90", "p99", "max"], rows)
    labels = result.get("labels", {}).get("per_axis", {})
    r.heading("Representation")
    unmentioned = [a for a, rep in result["representation"].items() if not rep["records_mentioning"]]
    if unmentioned:
        r.text(f"No record mentions a group of: {', '.join(unmentioned)}.")
    for axis, rep in result["representation"].items():
        if not rep["records_mentioning"]:
            continue
        per_group = labels.get(axis, {})
        r.text(f"{axis}: {rep['records_mentioning']} records ({rep['coverage']:.1%}) mention a group; "
               f"TVD from uniform = {rep['tvd_from_uniform'] if rep['tvd_from_uniform'] is not None else 'n/a'}.")  # fmt: skip
        r.table(["group", "records", "share", "positive rate", "CI", "DPL"],
                [[g, c, rep["shares"][g], per_group.get(g, {}).get("positive_rate"),
                  per_group.get(g, {}).get("ci"), per_group.get(g, {}).get("dpl")]
                 for g, c in rep["counts"].items()])  # fmt: skip
    r.heading("Charts")
    for chart in result.get("charts", []):
        r.image(chart, chart)
    return r
