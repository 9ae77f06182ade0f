"""Small line charts drawn on the server as SVG: no JavaScript, no CDN, readable without colour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class Threshold:
    label: str
    value: float
    color: str = "#ba2121"


def _ticks(top: float) -> list[float]:
    """About four round gridline values from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    step = 10 ** len(str(int(top / 4))) / 10 if top >= 4 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if top / (step * factor) <= 4:
            step *= factor
            break
    ticks, value = [], 0.0
    while value < top + step:
        ticks.append(value)
        value += step
    return ticks


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[str],
    *,
    title: str,
    unit: str = "",
    thresholds: Sequence[Threshold] = (),
    width: int = 960,
    height: int = 240,
) -> SafeString:
    """An SVG line chart of `series` over `x_labels`, with horizontal threshold lines.

    Every text in it is escaped; the result is safe to put in a template as it is.
    """
    left, right, top, bottom = 48, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    points = max(len(x_labels), 1)
    peak = max([*(v for s in series for v in s.values), *(t.value for t in thresholds), 0.0])
    ticks = _ticks(peak)
    ceiling = ticks[-1] or 1.0

    def x(index: int) -> float:
        return left + (plot_w * index / (points - 1) if points > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / ceiling

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for tick in ticks:
        label = f"{tick:g}{escape(unit)}"
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="dw-grid"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="dw-axis">{label}</text>'
        )
    every = max(1, points // 8)
    for index, label in enumerate(x_labels):
        if index % every == 0 or index == points - 1:
            parts.append(
                f'<text x="{x(index):.1f}" y="{height - bottom + 16}" text-anchor="middle" class="dw-axis">'
                f"{escape(label)}</text>"
            )
    for threshold in thresholds:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(threshold.value):.1f}" y2="{y(threshold.value):.1f}" '
            f'stroke="{escape(threshold.color)}" stroke-dasharray="6 4" class="dw-threshold"/>'
            f'<text x="{width - right - 4}" y="{y(threshold.value) - 4:.1f}" text-anchor="end" '
            f'fill="{escape(threshold.color)}" class="dw-axis">{escape(threshold.label)}</text>'
        )
    for line in series:
        coordinates = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line.values))
        dash = ' stroke-dasharray="4 3"' if line.dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{escape(line.color)}" stroke-width="2"{dash} points="{coordinates}">'
            f"<title>{escape(line.label)}</title></polyline>"
        )
        if points <= 60:
            # Dots on few points: a reader sees where the data is, and hovers for the value.
            parts.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{escape(line.color)}">'
                f"<title>{escape(x_labels[i])}: {v:g}{escape(unit)} {escape(line.label)}</title></circle>"
                for i, v in enumerate(line.values)
            )
    legend_x = left
    for line in series:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 14}" width="12" height="3" fill="{escape(line.color)}"/>'
            f'<text x="{legend_x + 16}" y="{height - 10}" class="dw-axis">{escape(line.label)}</text>'
        )
        legend_x += 24 + 7 * len(line.label)
    parts.append("</svg>")
    # Built only from numbers and escaped labels above.
    return mark_safe("".join(parts))
