"""The plots' axes and curves as plain math (no Textual): round ticks, a y range whose
ticks fall on whole rows, log ticks, outliers, the epoch ticks, downsampling and
TensorBoard's smoothing. Shared by the dashboard's plots and the compare screen's."""

from __future__ import annotations

import math
from typing import Optional, Sequence


def nice_step(span: float, max_ticks: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ``max_ticks`` ticks over ``span``."""
    span = max(span, 1e-12)
    raw = span / max(1, max_ticks)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag  # pragma: no cover


def nice_ticks(lo: float, hi: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Round tick values inside [lo, hi] and their labels, all with the same decimals; at
    least two ticks (a finer step when the range holds only one)."""
    step = nice_step(hi - lo, max_ticks)
    for _ in range(6):
        first = math.ceil(lo / step - 1e-9)
        ticks = [k * step for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]
        if len(ticks) >= 2:
            break
        mag = 10 ** math.floor(math.log10(step) + 1e-9)
        step = {1: 0.5, 2: 1, 5: 2}.get(round(step / mag), 0.5) * mag  # the next finer round step
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


CANVAS_MARGIN = 4  # plotext's frame, x ticks and x label take 4 of a plot's rows


def aligned_axis(lo: float, hi: float, rows: int, max_labels: int = 8) -> tuple[tuple[float, float], list[float], list[str]]:
    """A y range holding [lo, hi] whose round ticks fall exactly every k rows of a canvas of
    ``rows`` rows (plotext puts y at row round((y - bottom) / (top - bottom) * (rows - 1))),
    so the tick labels are evenly spaced even on an 80x24 terminal. Of the round steps and
    spacings that fit, the one that keeps the range tight (the most detail) with about
    one label every three rows wins."""
    best = None
    target = min(6, max(3, rows // 3))
    step = nice_step(max(hi - lo, 1e-12), max(1, rows - 1))
    for _ in range(4):  # this step and the next coarser ones
        for per in range(1, rows):  # rows from one tick to the next
            unit = step / per  # the value of one row
            first = math.ceil(lo / step - 1e-9) * step  # the lowest tick at or above lo
            below = math.ceil((first - lo) / unit - 1e-9)  # rows under it, down to lo
            bottom = first - below * unit
            top = bottom + unit * (rows - 1)
            count = (rows - 1 - below) // per + 1
            if top < hi - 1e-12 or count < 2 or count > max(3, min(rows, max_labels)):
                continue
            score = (top - bottom) / max(hi - lo, 1e-12) + 0.25 * abs(count - target)
            if best is None or score < best[0] - 1e-12:
                best = (score, bottom, top, first, count, step)
        mag = 10 ** math.floor(math.log10(step) + 1e-9)
        step = {1: 2, 2: 5, 5: 10}.get(round(step / mag), 10) * mag  # the next coarser round step
    if best is None:  # a canvas too small for two ticks
        ticks, labels = nice_ticks(lo, hi, 2)
        return (lo, hi), ticks, labels
    _, bottom, top, first, count, step = best
    ticks = [first + i * step for i in range(count)]
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    return (bottom, top), ticks, [f"{t:.{decimals}f}" for t in ticks]


def log_ticks(lo: float, hi: float, max_ticks: int, min_ticks: int = 3) -> tuple[list[float], list[str]]:
    """Ticks for a log10 axis given in log10 units: powers of ten (and 2x, 5x between them
    when there is room), labelled in the data's units. A range too narrow for ``min_ticks``
    of those (a loss from 1.3 to 2.8) gets round linear values instead (1.5, 2.0, 2.5)."""
    ticks: list[float] = []
    for mults in ((1, 2, 5), (1, 3), (1,)):
        ticks = [math.log10(m) + k for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in mults]
        ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
        if len(ticks) <= max_ticks:
            break
    if len(ticks) > max_ticks:  # many decades: every other power of ten
        ticks = ticks[:: math.ceil(len(ticks) / max_ticks)]
    if len(ticks) >= min_ticks:
        return ticks, [f"{10 ** t:.4g}" for t in ticks]
    values, labels = [], []
    for n in range(max(min_ticks, max_ticks), 4 * max(min_ticks, max_ticks)):  # finer round steps
        values, labels = nice_ticks(10 ** lo, 10 ** hi, n)
        if len(values) >= min_ticks:
            break
    kept = [(math.log10(v), label) for v, label in zip(values, labels) if v > 0]
    return [t for t, _ in kept], [label for _, label in kept]


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with ``weight`` on the past
    (0: the values as they are), debiased so that the curve's start is not pulled to 0."""
    out: list[float] = []
    last = 0.0
    for n, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n) if weight else v)
    return out


def split_outliers(values: Sequence[float], gap: float = 3.0, max_out: int = 3) -> tuple[list[float], int]:
    """Drop the few largest values that stand far above all the others (more than ``gap``
    times the next one down): at most ``max_out`` of them, and at most one in ten values,
    so a curve is never cut, only a lone spike. Returns the values kept and how many were dropped."""
    v = sorted(values, reverse=True)
    limit = min(max_out, len(v) // 10)
    cut = 0
    for i in range(min(limit, len(v) - 1)):
        if v[i + 1] > 0 and v[i] > gap * v[i + 1]:
            cut = i + 1
    return v[cut:], cut


def epoch_ticks(left: float, right: float, width: int) -> list[int]:
    """Whole-epoch ticks from ``left`` to ``right``, about one per 9 columns, and the last epoch."""
    max_ticks = max(2, width // 9)
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9)
                if (right - left) / s <= max_ticks)
    first = math.ceil(left / step) * step
    ticks = list(range(int(first), int(right) + 1, step))
    if ticks and right - ticks[-1] >= 0.6 * step and right == int(right):
        ticks.append(int(right))  # show where the axis ends (the planned last epoch)
    return ticks


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` evenly spaced points, always keeping the last one."""
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    stride = n / (max_points - 1)
    idx = sorted({min(n - 1, int(i * stride)) for i in range(max_points - 1)} | {n - 1})
    return [xs[i] for i in idx], [ys[i] for i in idx]


# The largest magnitude a plot draws: a value past it (1e308 from a damaged or diverged run,
# inf, NaN) is left out of the curves and the axis, whose arithmetic stays finite.
PLOT_LIMIT = 1e12


def finite(values: Sequence[Optional[float]]) -> list[float]:
    """The values a plot can draw: finite and within :data:`PLOT_LIMIT`."""
    return [v for v in values if v is not None and math.isfinite(v) and abs(v) <= PLOT_LIMIT]


def nice_range(values: Sequence[float], *, floor: Optional[float] = None, ceil: Optional[float] = None,
               pad: float = 0.08, min_rel_span: float = 0.2) -> tuple[float, float]:
    """A y range around ``values`` with some padding; a flat or single-point series gets a
    range of at least ``min_rel_span`` of its size, so the axis labels stay readable."""
    lo, hi = min(values), max(values)
    span = hi - lo
    need = max(abs(hi), abs(lo), 1e-6) * min_rel_span
    if span < need:
        mid = (hi + lo) / 2
        lo, hi, span = mid - need / 2, mid + need / 2, need
    lo, hi = lo - span * pad, hi + span * pad
    if floor is not None and lo < floor:  # shift the window inside [floor, ceil], then clip
        lo, hi = floor, hi + (floor - lo)
    if ceil is not None and hi > ceil:
        lo, hi = lo - (hi - ceil), ceil
    if floor is not None:
        lo = max(lo, floor)
    return lo, hi
