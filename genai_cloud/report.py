"""``genai-cloud report RUN [RUN...]``: one self-contained HTML page about one or more runs.

A run is a run folder (``runs/<job name>``, or any folder holding a job's ``metrics.json``, e.g.
an output folder downloaded from the cloud), a job name, or a spec name (its newest finished run,
``runs/latest/<name>``). The page shows, per run: the training-loss and eval curves, tokens/s,
the data audit and fairness charts (with their bootstrap confidence intervals), the model card and
the spec; with several runs, first a comparison table (sortable: click a column) and the runs'
loss curves on one chart. Charts are inline SVG (``svg.py``): no file or network is needed to
view the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .errors import GenaiCloudError
from .runs import find_run, known_runs
from .svg import bar_chart, line_chart

# Columns of the comparison table: metrics.json keys, in order, where any run has them.
COMPARED = ("task", "model", "steps", "final_train_loss", "eval_loss_after", "perplexity_after",
            "accuracy_after", "f1_macro_after", "tokens_per_s", "train_s", "wall_s", "params")  # fmt: skip
_SKIP_DIRS = {"code", "checkpoints", "mlruns", "tensorboard", "input"}
_SHORT = {"demographic_parity_difference": "dem. parity diff.",
          "demographic_parity_ratio": "dem. parity ratio",
          "equalized_odds_difference": "eq. odds diff."}  # fmt: skip


@dataclass
class RunData:
    name: str
    folder: Path
    metrics: dict = field(default_factory=dict)
    spec: dict | None = None
    card: str | None = None
    audit: dict | None = None
    fairness: dict | None = None


def _find(folder: Path, name: str) -> Path | None:
    """The shallowest ``name`` under ``folder``, outside code / checkpoints / trackers."""
    found = [p for p in folder.rglob(name)
             if p.is_file() and not _SKIP_DIRS & set(p.relative_to(folder).parts[:-1])]  # fmt: skip
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


def _json(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GenaiCloudError(f"{path}: not readable JSON ({exc})", headline="Bad run") from None


def load_run(ref: str, runs_root: str | Path = "runs") -> RunData:
    """What a report shows of the run ``ref`` names (a folder, a job name or a spec name).

    Raises:
        GenaiCloudError: no such run, or a run without ``metrics.json`` (not finished).
    """
    folder = Path(ref) if Path(ref).is_dir() else find_run(ref, runs_root)
    if folder is None:
        there = known_runs(runs_root)
        raise GenaiCloudError(f"no run {ref!r}: not a folder, nor a job or spec name in "
                              f"{runs_root}/" + (f" (runs: {', '.join(there[:12])})" if there
                                                 else ""), headline="No such run")  # fmt: skip
    folder = folder.resolve()
    metrics_path = _find(folder, "metrics.json")
    if metrics_path is None:
        raise GenaiCloudError(f"{folder} has no metrics.json: the run has not finished (or this "
                              "is not a run folder)", headline="No such run")  # fmt: skip
    code_spec = folder / "code" / "spec.json"
    card = None
    for readme in sorted(folder.rglob("README.md")):
        if (readme.parent / "config.json").is_file() or (readme.parent / "adapter_config.json").is_file():
            card = readme.read_text(encoding="utf-8", errors="replace")
            break
    return RunData(
        name=folder.name, folder=folder, metrics=_json(metrics_path) or {},
        spec=_json(code_spec if code_spec.is_file() else _find(folder, "spec.json")),
        card=card, audit=_json(_find(folder, "audit.json")),
        fairness=_json(_find(folder, "fairness.json")),
    )  # fmt: skip


# ---- charts from a run ------------------------------------------------------------------------


def loss_chart(run: RunData) -> str | None:
    m = run.metrics
    series = {"train loss": list(enumerate(m.get("train_losses") or [], start=1))}
    evals = []
    if (m.get("eval_before") or {}).get("loss") is not None:
        evals.append((0, m["eval_before"]["loss"]))
    evals += [(e["step"], e["loss"]) for e in m.get("evals_during_training") or [] if "loss" in e]
    if (m.get("eval_after") or {}).get("loss") is not None:
        evals.append((m.get("steps") or len(series["train loss"]), m["eval_after"]["loss"]))
    series["eval loss"] = evals
    return line_chart(f"{run.name}: loss", series, ylabel="loss", markers={"eval loss"})


def throughput_chart(run: RunData) -> str | None:
    log = run.metrics.get("train_log") or []
    points = [(line["step"], line["tokens_per_s"]) for line in log if "tokens_per_s" in line]
    return line_chart(f"{run.name}: training throughput", {"tokens/s": points},
                      ylabel="tokens / s")  # fmt: skip


def fairness_charts(result: dict) -> list[str]:
    charts = []
    for axis, res in (result.get("axes") or {}).items():
        ci = res.get("ci") or {}
        bars = [(_SHORT.get(name, name), value, *(ci.get(name) or (None, None)))
                for name, value in (res.get("metrics") or {}).items()]  # fmt: skip
        charts.append(bar_chart(f"Fairness, {axis}: disparities (95% bootstrap CI)", bars))
        for metric in ("selection_rate", "tpr", "fpr", "mean_loglik_per_token"):
            groups = [(g, v.get(metric), None, None) for g, v in (res.get("by_group") or {}).items()
                      if isinstance(v.get(metric), (int, float))]  # fmt: skip
            if groups:
                charts.append(bar_chart(f"Fairness, {axis}: {metric} by group", groups))
    return [c for c in charts if c]


def audit_charts(result: dict) -> list[str]:
    charts = []
    for axis, rep in (result.get("representation") or {}).items():
        shares = [(g, s, None, None) for g, s in (rep.get("shares") or {}).items()]
        if rep.get("records_mentioning"):
            charts.append(bar_chart(f"Data audit: representation by {axis}", shares, "share"))
    failures = (result.get("quality") or {}).get("failures") or {}
    # The rules that fired, most first: a bar per rule that never fired says nothing.
    fired = sorted(((k, v) for k, v in failures.items() if v), key=lambda kv: -kv[1])[:8]
    charts.append(bar_chart("Data audit: quality-rule failures (rules that fired)",
                            [(k, v, None, None) for k, v in fired], "records"))  # fmt: skip
    return [c for c in charts if c]


# ---- the page ---------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, dict) and "total" in value:  # params: {"total", "trainable"}
        value = value["total"]
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape("" if value is None else str(value))


def comparison(runs: list[RunData]) -> str:
    columns = [c for c in COMPARED if any(c in r.metrics for r in runs)]
    head = "".join(f"<th>{escape(c)}</th>" for c in ["run", *columns])
    rows = "".join("<tr>" + f"<td>{escape(r.name)}</td>" + "".join(
        f'<td data-value="{_cell(r.metrics.get(c))}">{_cell(r.metrics.get(c))}</td>'
        for c in columns) + "</tr>" for r in runs)  # fmt: skip
    return f'<table id="comparison" class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _card_html(card: str) -> str:
    try:
        import markdown  # optional: the card renders as formatted text when it is installed
    except ImportError:
        return f"<pre>{escape(card)}</pre>"
    body = card
    if card.startswith("---\n") and "\n---\n" in card[4:]:
        front, body = card[4:].split("\n---\n", 1)
        return f"<pre class='front-matter'>{escape(front)}</pre>" + markdown.markdown(
            body, extensions=["tables"])  # fmt: skip
    return markdown.markdown(body, extensions=["tables"])


def _section(run: RunData) -> str:
    charts = [loss_chart(run), throughput_chart(run)]
    charts += fairness_charts(run.fairness) if run.fairness else []
    charts += audit_charts(run.audit) if run.audit else []
    parts = [f'<section class="run" data-run="{escape(run.name)}"><h2>{escape(run.name)}</h2>',
             f"<p class='where'>{escape(str(run.folder))}</p>",
             '<div class="charts">' + "".join(c for c in charts if c) + "</div>"]  # fmt: skip
    if run.card:
        parts.append(f'<details open class="card"><summary>Model card</summary>'
                     f"{_card_html(run.card)}</details>")  # fmt: skip
    if run.spec:
        parts.append(f'<details class="spec"><summary>Spec</summary><pre>'
                     f"{escape(json.dumps(run.spec, indent=2, sort_keys=True))}</pre></details>")  # fmt: skip
    return "".join(parts) + "</section>"


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1340px;color:#222;padding:0 16px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{width:640px;max-width:100%;background:#fff;
border:1px solid #ddd;border-radius:6px}.axis{stroke:#444}.grid{stroke:#eee}
.tick,.legend{font-size:11px}.label{font-size:12px;fill:#444}.title{font-size:14px;font-weight:600}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f4f4f4;cursor:pointer}td:first-child{text-align:left}
pre{background:#f7f7f7;padding:10px;overflow:auto;max-height:480px}.where{color:#666}
section.run{border-top:2px solid #ddd;margin-top:28px}
"""
# Click a column of the comparison table to sort by it (numbers as numbers).
_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== 'asc'; th.dataset.order = up ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value || a.cells[col].textContent;
        var y = b.cells[col].dataset.value || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var d = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return up ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  table.dataset.sortable = 'ready';
});
"""


def render(runs: list[RunData]) -> str:
    """The HTML page for ``runs`` (one or more)."""
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs compared"
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{escape(title)} - genai-cloud report</title><style>{_STYLE}</style></head><body>")
    parts = [head, f"<h1>{escape(title)}</h1>"]
    if len(runs) > 1:
        parts.append("<h2>Comparison</h2>" + comparison(runs))
        overlay = line_chart("Training loss, all runs", {
            r.name: list(enumerate(r.metrics.get("train_losses") or [], start=1)) for r in runs},
            ylabel="loss")  # fmt: skip
        if overlay:
            parts.append(f'<div class="charts">{overlay}</div>')
    parts += [_section(run) for run in runs]
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


def write_report(refs: list[str], output: str | Path | None = None,
                 runs_root: str | Path = "runs") -> Path:  # fmt: skip
    """Write the report of ``refs``; default file: ``<run folder>/report.html`` for one run,
    ``report.html`` here for several."""
    runs = [load_run(ref, runs_root) for ref in refs]
    path = Path(output) if output else (runs[0].folder / "report.html" if len(runs) == 1
                                        else Path("report.html"))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(runs), encoding="utf-8")
    return path
