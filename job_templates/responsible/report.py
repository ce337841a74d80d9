"""Reports: one list of blocks rendered both as Markdown and as a self-contained HTML page, plus
bar charts (matplotlib, Agg backend: no display in a training container).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", (headers, rows)))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "h2":
                out += [f"## {body}", ""]
            elif kind == "p":
                out += [str(body), ""]
            elif kind == "table":
                headers, rows = body
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
                out.append("")
            elif kind == "img":
                out += [f"![{body[1]}]({body[0]})", ""]
        return "\n".join(out)

    def html(self) -> str:
        parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                 "</title><style>body{font-family:sans-serif;max-width:60em;margin:auto}"
                 "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
                 "</style></head><body>"), f"<h1>{html.escape(self.title)}</h1>"]  # fmt: skip
        for kind, body in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{html.escape(body)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{html.escape(str(body))}</p>")
            elif kind == "table":
                headers, rows = body
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                    for row in rows
                )
                parts.append(f"<table><tr>{head}</tr>{cells}</table>")
            elif kind == "img":
                parts.append(f"<img src='{html.escape(body[0])}' alt='{html.escape(body[1])}'>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir: Path, stem: str) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        md.write_text(self.markdown(), encoding="utf-8")
        page.write_text(self.html(), encoding="utf-8")
        return [md, page]


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n",
                    encoding="utf-8")  # fmt: skip
    return path


def _plain(value):
    # numpy scalars and arrays reach the JSON through fairlearn / torch results.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def bar_chart(path: Path, title: str, series: dict[str, dict[str, float]],
              errors: dict[str, dict[str, tuple[float, float]]] | None = None,
              ylabel: str = "") -> Path:  # fmt: skip
    """Grouped bars: ``series[name][category] = value``; optional (low, high) error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(dict.fromkeys(c for values in series.values() for c in values))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(categories) * max(len(series), 1)), 3.5))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(categories))]
        ys = [_num(values.get(c)) for c in categories]
        yerr = None
        if errors and name in errors:
            lows = [
                ys[j] - _num(errors[name].get(c, (ys[j], ys[j]))[0])
                for j, c in enumerate(categories)
            ]
            highs = [
                _num(errors[name].get(c, (ys[j], ys[j]))[1]) - ys[j]
                for j, c in enumerate(categories)
            ]
            yerr = [lows, highs]
        ax.bar(xs, ys, width, label=name, yerr=yerr, capsize=3 if yerr else 0)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(categories))])
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def histogram(path: Path, title: str, values: list[float], xlabel: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(values, bins=min(40, max(5, len(set(values)))))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _num(value) -> float:
    return (
        0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    )


def threshold_reasons(metrics: dict, fail_on: dict, field: str,
                      is_minimum=lambda name: False) -> list[str]:  # fmt: skip
    """One reason per metric past its ``fail_on`` limit (a maximum unless ``is_minimum(name)``).

    A metric without a value (e.g. a group no record mentions) cannot fail.

    Raises:
        JobError: a ``fail_on`` key that names no metric; ``field`` (e.g. ``audit.fail_on``) and
            the valid names are in the message.
    """
    from ..config import JobError

    unknown = [k for k in fail_on if k not in metrics]
    if unknown:
        raise JobError(f"unknown metric(s) {', '.join(map(repr, unknown))}; valid: "
                       f"{', '.join(metrics)}", field)  # fmt: skip
    reasons = []
    for name, limit in fail_on.items():
        value = metrics[name]
        if value is None:
            continue
        if is_minimum(name) and value < limit:
            reasons.append(f"{name} = {value:.4g} < {limit:g}")
        elif not is_minimum(name) and value > limit:
            reasons.append(f"{name} = {value:.4g} > {limit:g}")
    return reasons
