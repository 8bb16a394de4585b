"""Charts as server-rendered SVG: no chart library, no script, readable without JavaScript.

Each function takes plain (label, value) points and returns an SVG document as a string;
every label is escaped. The charts are small by design: a few hundred points at most
(the series the engine answers are bounded: 3,660 days, 3,650 days left).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

WIDTH = 720
HEIGHT = 240
PAD_LEFT = 64
PAD_RIGHT = 16
PAD_TOP = 16
PAD_BOTTOM = 40
MAX_X_LABELS = 8  # axis labels shown at most, evenly spaced


def _scale_max(values: Sequence[int]) -> int:
    """A round upper bound for the y axis (1, 2 or 5 times a power of ten)."""
    top = max([*values, 1])
    step = 1
    while True:
        for mult in (1, 2, 5):
            if step * mult >= top:
                return step * mult
        step *= 10


def _frame(title: str, y_max: int, fmt: Callable[[float], str], body: list[str]) -> str:
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    grid = []
    for i in range(5):
        value = y_max * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        grid.append(
            f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{escape(fmt(value))}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>'
        + "".join(grid)
        + "".join(body)
        + "</svg>"
    )


def _x_labels(labels: Sequence[str], xs: Sequence[float]) -> list[str]:
    if not labels:
        return []
    every = max(1, -(-len(labels) // MAX_X_LABELS))
    y = HEIGHT - PAD_BOTTOM + 16
    return [
        f'<text x="{xs[i]:.1f}" y="{y}" text-anchor="middle" class="axis">{escape(labels[i])}</text>'
        for i in range(0, len(labels), every)
    ]


def line_chart(title: str, points: Sequence[tuple[str, int]], fmt: Callable[[float], str]) -> str:
    """A line over the points in order (a daily series): one vertex per point."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    y_max = _scale_max([v for _, v in points])
    n = len(points)
    xs = [PAD_LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    ys = [PAD_TOP + plot_h - plot_h * v / y_max for _, v in points]
    body: list[str] = []
    if n:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(f'<polyline points="{path}" class="series"/>')
        body.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" class="dot"><title>{escape(label)}: {escape(fmt(v))}'
            f"</title></circle>"
            for (label, v), x, y in zip(points, xs, ys, strict=True)
        )
    body.extend(_x_labels([label for label, _ in points], xs))
    return _frame(title, y_max, fmt, body)


def bar_chart(title: str, points: Sequence[tuple[str, int]], fmt: Callable[[float], str]) -> str:
    """One bar per point, in order (e.g. quantity by days left)."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    y_max = _scale_max([v for _, v in points])
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1.0)
    xs = [PAD_LEFT + slot * (i + 0.5) for i in range(len(points))]
    body = []
    for (label, v), x in zip(points, xs, strict=True):
        h = plot_h * v / y_max
        body.append(
            f'<rect x="{x - bar_w / 2:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'class="bar"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
        )
    body.extend(_x_labels([label for label, _ in points], xs))
    return _frame(title, y_max, fmt, body)
