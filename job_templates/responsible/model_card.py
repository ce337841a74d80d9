"""The model directory's Hugging Face model card: ``README.md`` = YAML metadata + Markdown.

The metadata follows the Hub's model-card spec (``library_name``, ``tags``, ``base_model``,
``pipeline_tag``, ``model-index`` with ``results``), so the Hub shows the evaluation results;
the body says what the model was trained on, how it scored, what the data audit and the fairness
evaluation found, what bias mitigation did, and where it should not be used. Paths on the
machine that trained the model are never written: a local file shows as its name, a cloud URI
(``s3://``, ``gs://``, ...) or a ``pkg://`` location as given.
"""

from __future__ import annotations

from pathlib import Path

from .report import fmt

PIPELINE = {"causal-lm": "text-generation", "sequence-classification": "text-classification"}


def write_model_card(model_dir, spec, metrics: dict, audit: dict | None = None,
                     fairness: dict | None = None, mitigation: dict | None = None) -> Path:  # fmt: skip
    """Write ``<model_dir>/README.md``; returns its path.

    Args:
        spec: the job spec (``Config`` or dict).
        metrics: evaluation results, name -> number (e.g. ``{"eval_loss": 2.1, "accuracy": 0.9}``).
        audit: ``audit_records`` output, if the data was audited.
        fairness: the fairness recipe's result dict, if the model was evaluated for fairness.
        mitigation: ``mitigation.mitigate``'s summary, if bias mitigation ran.
    """
    path = Path(model_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + _yaml(_metadata(spec, metrics)) + "---\n\n" + _body(spec, metrics,
                    audit, fairness, mitigation), encoding="utf-8")  # fmt: skip
    return path


EVALUATIONS = "## Later evaluations"


def add_evaluation(card: Path, target: Path, fairness: dict | None = None,
                   audit: dict | None = None) -> Path:  # fmt: skip
    """Write ``card`` plus one section with an evaluation run against its model to ``target``
    (which may be ``card`` itself); earlier evaluations already in the card stay."""
    text = Path(card).read_text(encoding="utf-8").rstrip("\n")
    if EVALUATIONS not in text:
        text += f"\n\n{EVALUATIONS}\n"
    lines = [""]
    if fairness is not None:
        data = display_path(str(fairness.get("data") or fairness.get("pairs_file") or ""))
        lines += [f"### Fairness evaluation (task `fairness`, data `{data}`)", ""]
        lines += _fairness_lines(fairness)
    if audit is not None:
        lines += ["### Data audit (task `audit`)", "", *_audit_lines(audit)]
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    return target


def display_path(location) -> str:
    """A location as a card may show it: URIs and ``pkg://`` as given, a local path by its
    name (an absolute path of the training machine means nothing to a reader)."""
    text = str(location)
    if "://" in text or not text:
        return text
    path = Path(text)
    return path.name if path.is_absolute() else text


def _metadata(spec, metrics: dict) -> dict:
    model = spec.get("model") or {}
    head = model.get("head", "causal-lm")
    base = model.get("name_or_path")
    meta = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE.get(head, "text-generation"),
        "tags": ["genai-cloud", str(spec.get("task", "finetune"))],
    }
    # The Hub validates base_model as a repo id: local folders and package paths are left out.
    if base and "://" not in base and not base.startswith(("/", ".")) and not Path(base).exists():
        meta["base_model"] = base
    if model.get("lora"):
        meta["tags"].append("lora")
    numbers = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if numbers:
        data = spec.get("data") or {}
        meta["model-index"] = [{
            "name": spec.get("name", "model"),
            "results": [{
                "task": {"type": meta["pipeline_tag"]},
                "dataset": {"name": Path(str(data.get("eval") or data.get("train", "data"))).name,
                            "type": "custom"},
                "metrics": [{"type": k, "value": round(float(v), 6), "name": k}
                            for k, v in numbers.items()],
            }],
        }]  # fmt: skip
    return meta


def _yaml(meta: dict) -> str:
    try:
        import yaml

        return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    except ImportError:  # JSON is valid YAML; the Hub reads either
        import json

        return json.dumps(meta, indent=2) + "\n"


def _body(spec, metrics: dict, audit: dict | None, fairness: dict | None,
          mitigation: dict | None) -> str:  # fmt: skip
    model, data = spec.get("model") or {}, spec.get("data") or {}
    training = spec.get("training") or {}
    lines = [f"# {spec.get('name', 'model')}", "",
             f"Trained with genai-cloud (task `{spec.get('task')}`).", "",
             "## Training data and settings", "",
             (f"- Base model: `{display_path(model.get('name_or_path'))}` (head: "
             f"{model.get('head')}, init: {model.get('init', 'pretrained')})"),
             (f"- Data: `{display_path(data.get('train'))}` (format: {data.get('format')}); eval: "
             f"`{display_path(data.get('eval')) if data.get('eval') else 'a split of train'}`"),
             (f"- Training: epochs={training.get('epochs')}, max_steps={training.get('max_steps')}, "
             f"lr={training.get('lr')}, batch_size={training.get('batch_size')}, "
             f"seed={training.get('seed')}")]  # fmt: skip
    if model.get("lora"):
        lora = model["lora"]
        lines.append(f"- LoRA: r={lora.get('r')}, alpha={lora.get('alpha')}")
    steps = (spec.get("fairness") or {}).get("mitigation")
    if mitigation and mitigation.get("lines"):
        lines.append("- Bias mitigation on the training data: " + "; ".join(mitigation["lines"])
                     + f" ({mitigation['records_before']} -> {mitigation['records_after']} "
                     "training records)")  # fmt: skip
    elif steps:
        lines.append(f"- Bias mitigation requested: {', '.join(steps)}")
    lines += ["", "## Evaluation results", ""]
    lines += _table(["metric", "value"], [[k, v] for k, v in metrics.items()]) if metrics \
        else ["No evaluation was run."]  # fmt: skip
    not_audited = "The training data was not audited (add an `audit` section to the spec)."
    lines += ["", "## Data audit", ""] + (_audit_lines(audit) if audit else [not_audited])
    lines += ["", "## Fairness", ""] + (_fairness_lines(fairness) if fairness else
                                        ["No fairness evaluation was run (task `fairness`)."])  # fmt: skip
    lines += ["", "## Intended use", "",
              ("Research and prototyping on data like the training data above. Review the audit "
              "and fairness sections before any use that affects people."), "",
              "## Limitations", "",
              ("- Quality and fairness were measured only on the data named above; other domains, "
              "languages and populations may see different behaviour."),
              ("- Group membership in the audit and fairness checks comes from a group column or "
              "an English word lexicon: it misses groups, misreads ambiguous words and does not "
              "capture intersectional groups."),
              "- Metrics are point estimates on finite samples; small groups have wide intervals.",
              "- The model can reproduce biases present in its pre-training and training data.", ""]  # fmt: skip
    return "\n".join(lines)


def _audit_lines(audit: dict) -> list[str]:
    m = audit.get("metrics", {})
    keys = ["exact_duplicate_fraction", "near_duplicate_fraction", "pii_rate", "quality_fail_rate"]
    rows = [[k, m.get(k)] for k in keys if k in m]
    rows += [[k, v] for k, v in m.items() if k.startswith(("representation_tvd.", "max_abs_dpl."))
             and v is not None]  # fmt: skip
    found = [f"- {'Over its fail_on limit' if f['gate'] else 'Finding'}: {f['text']}"
             for f in audit.get("findings") or []]  # fmt: skip
    return [
        f"{audit.get('records', '?')} training records audited.",
        "",
        *(found + [""] if found else []),
        *_table(["metric", "value"], rows),
    ]


def _fairness_lines(fairness: dict) -> list[str]:
    lines = [f"Mode: {fairness.get('mode')}."]
    if fairness.get("data"):
        lines[0] += f" Data: `{display_path(fairness['data'])}` ({fairness.get('records')} records)."
    lines.append("")
    found = fairness.get("findings") or []
    lines += [f"- {'Over its fail_on limit' if f['gate'] else 'Finding'}: {f['text']}" for f in found]
    lines += ["- No fairness finding: no gate or default limit was crossed."] if not found else []
    lines.append("")
    if fairness.get("mode") == "classifier":
        for axis, res in fairness.get("axes", {}).items():
            cols = ["count", "accuracy", "selection_rate", "tpr", "fpr"]
            lines += [f"**{axis}**", ""]
            lines += _table(["group", *cols], [[g, *(v.get(c) for c in cols)]
                                               for g, v in res["by_group"].items()])  # fmt: skip
            lines.append("")
    lines += _table(["metric", "value"], [[k, v] for k, v in fairness.get("metrics", {}).items()])
    return lines


def _table(headers: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows)]  # fmt: skip
