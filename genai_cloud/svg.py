"""Small inline SVG charts for the run report: lines over steps, bars with confidence intervals.

Pure string building (no plotting library), so a report is one self-contained HTML file that
opens anywhere. Every mark carries a ``<title>`` (the browser shows it on hover) and a class the
report's tests look for: ``chart``, ``series``, ``point``, ``bar``, ``ci``.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 640, 300
MARGIN = {"left": 64, "right": 16, "top": 36, "bottom": 44}
# Colour-blind-safe (Okabe & Ito, "Color Universal Design", 2008).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high == low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= step * factor:
            step *= factor
            break
    first = math.floor(low / step) * step
    return [round(first + i * step, 10) for i in range(count + 2) if first + i * step <= high + step]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.2g}"
    return f"{value:.4g}"


class _Frame:
    """Data -> pixel scales and the axes of one chart."""

    def __init__(self, xs: list[float], ys: list[float], y_from_zero: bool = False):
        self.x_ticks = _ticks(min(xs), max(xs))
        low = min(0.0, min(ys)) if y_from_zero else min(ys)
        self.y_ticks = _ticks(low, max(ys))
        self.x0, self.x1 = self.x_ticks[0], self.x_ticks[-1]
        self.y0, self.y1 = self.y_ticks[0], self.y_ticks[-1]

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return MARGIN["left"] + (value - self.x0) / span * (WIDTH - MARGIN["left"] - MARGIN["right"])

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        inner = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
        return HEIGHT - MARGIN["bottom"] - (value - self.y0) / span * inner

    def axes(self, xlabel: str, ylabel: str, x_ticks: bool = True) -> list[str]:
        bottom, left = HEIGHT - MARGIN["bottom"], MARGIN["left"]
        right = WIDTH - MARGIN["right"]
        parts = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
                 f'<line class="axis" x1="{left}" y1="{MARGIN["top"]}" x2="{left}" y2="{bottom}"/>']
        for tick in self.y_ticks:
            y = self.y(tick)
            parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" '
                         f'x2="{WIDTH - MARGIN["right"]}" y2="{y:.1f}"/>')  # fmt: skip
            parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
                         f'text-anchor="end">{_fmt(tick)}</text>')  # fmt: skip
        for tick in self.x_ticks if x_ticks else []:
            parts.append(f'<text class="tick" x="{self.x(tick):.1f}" y="{bottom + 16}" '
                         f'text-anchor="middle">{_fmt(tick)}</text>')  # fmt: skip
        parts.append(f'<text class="label" x="{(left + WIDTH - MARGIN["right"]) / 2}" '
                     f'y="{HEIGHT - 8}" text-anchor="middle">{escape(xlabel)}</text>')  # fmt: skip
        parts.append(f'<text class="label" transform="translate(14 {HEIGHT / 2}) rotate(-90)" '
                     f'text-anchor="middle">{escape(ylabel)}</text>')  # fmt: skip
        return parts


def _svg(title: str, body: list[str], kind: str) -> str:
    return (f'<svg class="chart" data-kind="{kind}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
            f'<text class="title" x="{WIDTH / 2}" y="20" text-anchor="middle">{escape(title)}'
            f"</text>{''.join(body)}</svg>")  # fmt: skip


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], xlabel: str = "step",
               ylabel: str = "", markers: set[str] = frozenset()) -> str | None:  # fmt: skip
    """Lines (or, for names in ``markers``, points only) of ``(x, y)`` per series; None when
    there is nothing finite to draw."""
    series = {name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
              for name, points in series.items()}  # fmt: skip
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    frame = _Frame(xs, ys)
    body = frame.axes(xlabel, ylabel)
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        coords = [(frame.x(x), frame.y(y)) for x, y in points]
        if name not in markers and len(coords) > 1:
            d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            body.append(f'<path class="series" data-series="{escape(name)}" d="{d}" '
                        f'stroke="{colour}" fill="none" stroke-width="1.6"/>')  # fmt: skip
        radius = 3.5 if name in markers or len(coords) < 30 else 0
        for (x, y), (px, py) in zip(points, coords):
            if radius:
                body.append(f'<circle class="point" data-series="{escape(name)}" cx="{px:.1f}" '
                            f'cy="{py:.1f}" r="{radius}" fill="{colour}"><title>{escape(name)} '
                            f"at {_fmt(x)}: {_fmt(y)}</title></circle>")  # fmt: skip
        body.append(f'<text class="legend" x="{WIDTH - MARGIN["right"] - 4}" '
                    f'y="{MARGIN["top"] + 14 * n + 4}" text-anchor="end" fill="{colour}">'
                    f"{escape(name)}</text>")  # fmt: skip
    return _svg(title, body, "line")


def bar_chart(title: str, bars: list[tuple[str, float, float | None, float | None]],
              ylabel: str = "") -> str | None:  # fmt: skip
    """One bar per ``(label, value, ci_low, ci_high)``; an interval draws as an error bar."""
    bars = [b for b in bars if b[1] is not None and math.isfinite(b[1])]
    if not bars:
        return None
    ys = [v for _, v, *_ in bars] + [c for *_, lo, hi in bars for c in (lo, hi) if c is not None]
    frame = _Frame([0, len(bars)], ys, y_from_zero=True)
    body = frame.axes("", ylabel, x_ticks=False)
    slot = (WIDTH - MARGIN["left"] - MARGIN["right"]) / len(bars)
    base = frame.y(max(frame.y0, 0.0))
    for n, (label, value, low, high) in enumerate(bars):
        left = MARGIN["left"] + n * slot + slot * 0.15
        top = frame.y(value)
        interval = f" (95% CI {_fmt(low)} to {_fmt(high)})" if low is not None else ""
        body.append(f'<rect class="bar" data-label="{escape(label)}" x="{left:.1f}" '
                    f'y="{min(top, base):.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{abs(base - top):.1f}" fill="{PALETTE[n % len(PALETTE)]}">'
                    f"<title>{escape(label)}: {_fmt(value)}{interval}</title></rect>")  # fmt: skip
        middle = left + slot * 0.35
        if low is not None and high is not None:
            y_low, y_high = frame.y(low), frame.y(high)
            body.append(f'<path class="ci" data-label="{escape(label)}" d="M{middle:.1f},'
                        f"{y_low:.1f} L{middle:.1f},{y_high:.1f} M{middle - 6:.1f},{y_low:.1f} "
                        f"L{middle + 6:.1f},{y_low:.1f} M{middle - 6:.1f},{y_high:.1f} "
                        f'L{middle + 6:.1f},{y_high:.1f}" stroke="#333" stroke-width="1.4"/>')  # fmt: skip
        body.append(f'<text class="tick" x="{middle:.1f}" y="{HEIGHT - MARGIN["bottom"] + 16}" '
                    f'text-anchor="middle">{escape(label[:22])}</text>')  # fmt: skip
    return _svg(title, body, "bar")
