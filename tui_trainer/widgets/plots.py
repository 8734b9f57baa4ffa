"""The training plots: loss, accuracy and learning rate, drawn with textual-plotext.

Every plot's x axis is the epoch (fractional for per-step points), so the
smoothed per-step curve and the per-epoch points line up. The dashboard hands
:meth:`TrainingPlots.update_from` the run on every tick; the plots are drawn at
once for the first step, an epoch's end or a new state (the :attr:`~TrainingPlots.phase`
reactive), else at most every PLOT_SECONDS, and a plot whose data did not change
(accuracy between two epochs) is not drawn again (each plot's :attr:`~_Plot.shown`).

Series differ by marker as well as by colour. The y axis has round ticks, one
every few rows; on the loss plot a lone outlier (an epoch-1 validation loss of
558) is left above the range, with a note, instead of flattening the curves,
and ``l`` switches it to a log scale.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widget import Widget
from textual_plotext import PlotextPlot

from ..runstate import RunState
from .view import Pace, RunView

PLOT_SECONDS = 2.0  # new steps alone redraw the plots at most this often (an epoch's end: at once)

Color = tuple[int, int, int]
TRAIN: Color = (80, 160, 255)  # blue
TRAIN_EPOCH: Color = (255, 170, 60)  # orange
VAL: Color = (90, 210, 120)  # green
LR: Color = (220, 120, 230)  # magenta


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


def log_ticks(lo: float, hi: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Ticks for a log10 axis given in log10 units: powers of ten (and 2x, 5x between them
    when there is room), labelled in the data's units."""
    ticks: list[float] = []
    for mults in ((1, 2, 5), (1, 3), (1,)):
        ticks = [math.log10(m) + k for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in mults]
        ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
        if len(ticks) <= max_ticks:
            break
    if len(ticks) > max_ticks:  # many decades: every other power of ten
        ticks = ticks[:: math.ceil(len(ticks) / max_ticks)]
    return ticks, [f"{10 ** t:.4g}" for t in ticks]


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


def _finite(values: Sequence[Optional[float]]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


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


class _Plot(PlotextPlot):
    """A PlotextPlot that draws itself from a :class:`RunState`.

    The legend is not drawn by plotext (it would sit on top of the curves' start,
    top left); :class:`Legend` shows it on the line above the plot instead.
    """

    TITLE = ""
    SHORT_TITLE = ""
    # what in the run state this plot draws: "steps" (every step event) or "epochs"
    DEPENDS = "steps"
    # (name, short name, colour, glyph) of each series, for the legend
    SERIES: tuple[tuple[str, str, Color, str], ...] = ()

    DEFAULT_CSS = """
    _Plot { height: 1fr; width: 1fr; min-height: 5; }
    """

    note: var[str] = var("", init=False)
    """Shown after the legend, e.g. "1 off the top"."""
    shown: var[tuple] = var((), init=False)
    """What the drawing on screen depends on (:meth:`data_key`): a change draws the plot."""

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.points: dict[str, int] = {}
        """How many points each series got at the last draw (for tests and debugging)."""
        self._xrange = (0.0, 1.0)
        self._note = ""
        self._state: Optional[RunState] = None
        self.draws = 0
        self.ylim: tuple[float, float] = (0.0, 1.0)

    def draw(self, state: RunState) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def show(self, state: RunState) -> None:
        """Draw ``state`` if what the plot depends on changed since it was last drawn."""
        self._state = state
        self.shown = self.data_key(state)

    def watch_shown(self) -> None:
        if self._state is not None:
            self.draw(self._state)

    def on_resize(self) -> None:
        # the ticks are chosen for the plot's height: draw again at the new size
        if self._state is not None:
            self.show(self._state)

    def data_key(self, state: RunState) -> tuple:
        """What the drawing depends on: the plot is drawn again only when this changes."""
        last = state.history[-1] if state.history else None
        x_right = math.ceil(state.progress - 1e-9)
        if self.DEPENDS == "epochs":
            return (len(state.history), last, x_right, state.epochs, self.size)
        return (len(state.step_x), state.step_x[-1] if state.step_x else None, len(state.history), last, x_right,
                state.epochs, self.size, bool(state.config))

    def _series(self, name: str, xs: Sequence[float], ys: Sequence[float], **kw) -> None:
        self.points[name] = len(xs)
        if xs:
            self.plt.plot(list(xs), list(ys), **kw)

    def _points(self, name: str, xs: Sequence[float], ys: Sequence[float], marker: str, color: Color) -> None:
        """Per-epoch values: a thin line through them, and each one marked with ``marker``."""
        self.points[name] = len(xs)
        if xs:
            self.plt.plot(list(xs), list(ys), marker="braille", color=color)
            self.plt.scatter(list(xs), list(ys), marker=marker, color=color)

    def _finish(self, ylim: tuple[float, float], empty_note: str, log: bool = False) -> None:
        rows = max(2, (self.size.height or 10) - CANVAS_MARGIN)
        if log:
            ticks, labels = log_ticks(ylim[0], ylim[1], max(2, min(6, rows // 2)))
        else:  # round ticks, each on a row of its own, the same number of rows apart
            ylim, ticks, labels = aligned_axis(ylim[0], ylim[1], rows)
        self.note = self._note
        self.plt.ylim(*ylim)
        self.ylim = ylim
        self.plt.yticks(ticks, labels)
        self.draws += 1
        if not any(self.points.values()):
            (x0, x1), (y0, y1) = self._xrange, ylim
            self.plt.text(empty_note, (x0 + x1) / 2, (y0 + y1) / 2, alignment="center", color="gray",
                          background="default")
        self.refresh()

    def _begin(self) -> None:
        self.plt.clear_figure()
        self.points = {}
        self._note = ""
        self.plt.xlabel("epoch")

    @property
    def _max_points(self) -> int:
        return max(16, 2 * (self.size.width or 60))

    def _x_axis(self, state: RunState, whole_run: bool = False) -> None:
        """x from the first epoch shown to the current one (or the planned last one), integer ticks."""
        left = 0.0
        if state.history:
            left = float(min(h.epoch for h in state.history) - 1)
        elif state.step_x:
            left = float(math.floor(state.step_x[0]))
        if whole_run and state.epochs:
            right = float(state.epochs)
        else:
            right = float(max(1, math.ceil(state.progress - 1e-9)))
        right = max(right, left + 1.0)
        self._xrange = (left, right)
        self.plt.xlim(left, right)
        ticks = epoch_ticks(left, right, self.size.width or 40)
        self.plt.xticks(ticks, [str(t) for t in ticks])


EPOCH_MARK, VAL_MARK = "•", "x"  # per-epoch train points, validation points
LOG_FLOOR = 1e-3  # the smallest loss a log axis shows


class LossPlot(_Plot):
    TITLE, SHORT_TITLE = "Loss", "Loss"
    SERIES = (("train (smoothed)", "train", TRAIN, "━"), ("train/epoch", "epoch", TRAIN_EPOCH, EPOCH_MARK),
              ("val", "val", VAL, VAL_MARK))

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.log_scale = False

    def data_key(self, state: RunState) -> tuple:
        return super().data_key(state) + (self.log_scale,)

    def draw(self, state: RunState) -> None:
        self._begin()
        xs, ys = downsample(state.step_x, state.step_loss, self._max_points)
        ex = [h.epoch for h in state.history]
        tl = [h.train_loss for h in state.history]
        vx = [h.epoch for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        vl = [h.val_loss for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        y = (lambda vs: [math.log10(max(v, LOG_FLOOR)) for v in vs]) if self.log_scale else list
        self._series("train (smoothed)", xs, y(ys), marker="braille", color=TRAIN)
        self._points("train/epoch", ex, y(tl), EPOCH_MARK, TRAIN_EPOCH)
        self._points("val", vx, y(vl), VAL_MARK, VAL)
        values = _finite(list(ys) + tl + vl)
        self._x_axis(state)
        if self.log_scale:
            self._note = "log scale"
        if not values:
            self._finish((0, 1), "no steps yet")
        elif self.log_scale:
            logs = [math.log10(max(v, LOG_FLOOR)) for v in values]
            lo, hi = min(logs), max(logs)
            pad = max(0.05, (hi - lo) * 0.08)
            self._finish((lo - pad, hi + pad), "no steps yet", log=True)
        else:
            kept, above = split_outliers(values)
            if above:
                self._note = f"{above} off the top (max {max(values):.4g}; l: log scale)"
            self._finish(nice_range(kept, floor=0.0), "no steps yet")


class AccuracyPlot(_Plot):
    TITLE, SHORT_TITLE = "Accuracy %", "Acc %"
    SERIES = (("train", "train", TRAIN_EPOCH, EPOCH_MARK), ("val", "val", VAL, VAL_MARK))
    DEPENDS = "epochs"

    def draw(self, state: RunState) -> None:
        self._begin()
        ex = [h.epoch for h in state.history]
        ta = [100.0 * h.train_acc for h in state.history]
        vx = [h.epoch for h in state.history if h.val_acc is not None]
        va = [100.0 * h.val_acc for h in state.history if h.val_acc is not None]
        self._points("train", ex, ta, EPOCH_MARK, TRAIN_EPOCH)
        self._points("val", vx, va, VAL_MARK, VAL)
        values = _finite(ta + va)
        self._x_axis(state)
        self._finish(nice_range(values, floor=0.0, ceil=100.0, min_rel_span=0.1) if values else (0, 100),
                     "after epoch 1")


class LearningRatePlot(_Plot):
    TITLE, SHORT_TITLE = "Learning rate", "LR"
    SERIES = (("lr", "lr", LR, "━"),)

    def data_key(self, state: RunState) -> tuple:
        # the x axis is the whole run: draw again only when the curve reaches another column
        span = max(1.0, float(state.epochs or 1))
        column = int(state.progress / span * 2 * max(10, self.size.width or 40)) if state.step_x else -1
        return (column, len(state.history), state.epochs, self.size, bool(state.config), bool(state.step_x))

    def draw(self, state: RunState) -> None:
        self._begin()
        xs, ys = downsample(state.step_x, state.step_lr, self._max_points)
        self._series("lr", xs, ys, marker="braille", color=LR)
        self._x_axis(state, whole_run=True)  # the whole schedule's span: where we are in it
        peak = state.config.get("lr") if state.config else None
        peak = float(peak) if isinstance(peak, (int, float)) and not isinstance(peak, bool) and peak > 0 else None
        values = _finite(list(ys) + ([peak] if peak is not None else []))
        empty = f"peak {peak:g}, no steps yet" if peak is not None else "waiting for the run"
        self._finish((0, max(values) * 1.05 if values else 1.0), empty)


class Legend(Widget):
    """One line above a plot: its title and a coloured key to its series."""

    DEFAULT_CSS = """
    Legend { height: 1; width: 1fr; padding: 0 0 0 1; }
    """

    def __init__(self, plot: _Plot) -> None:
        super().__init__()
        self.plot = plot

    def on_mount(self) -> None:
        self.watch(self.plot, "note", self.refresh, init=False)

    def render(self) -> RenderResult:
        width = self.size.width - 1
        for short in (False, True):
            title = self.plot.SHORT_TITLE if short else self.plot.TITLE
            text = Text(title, style="bold")
            for name, short_name, (r, g, b), glyph in self.plot.SERIES:
                if len(self.plot.SERIES) == 1:
                    break  # one series: the title says it
                text.append("  " if not short else " ")
                text.append(glyph, style=f"rgb({r},{g},{b})")
                text.append(" " + (short_name if short else name))
            if self.plot.note:
                text.append(("  " if not short else " ") + self.plot.note, style="dim")
            if text.cell_len <= width or short:
                text.truncate(max(width, 1), overflow="ellipsis")
                return text
        return text  # pragma: no cover


class PlotPanel(Vertical):
    DEFAULT_CSS = """
    PlotPanel { height: 1fr; width: 1fr; }
    """

    def __init__(self, plot: _Plot, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.plot = plot

    def compose(self) -> ComposeResult:
        yield Legend(self.plot)
        yield self.plot


class TrainingPlots(Vertical):
    """Loss across the top; accuracy and learning rate side by side below it."""

    DEFAULT_CSS = """
    TrainingPlots { height: 1fr; width: 1fr; padding: 0 1 0 0; }
    TrainingPlots > #plots-lower { height: 1fr; }
    """

    phase: var[tuple] = var((), init=False)
    """(epochs done, the run's state, whether it has steps): a change draws at once."""

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.redraws = 0
        self._state: Optional[RunState] = None
        self._pace = Pace(PLOT_SECONDS)

    def compose(self) -> ComposeResult:
        yield PlotPanel(LossPlot(id="plot-loss"), id="panel-loss")
        with Horizontal(id="plots-lower"):
            yield PlotPanel(AccuracyPlot(id="plot-acc"), id="panel-acc")
            yield PlotPanel(LearningRatePlot(id="plot-lr"), id="panel-lr")

    def on_mount(self) -> None:
        self.show(RunState())  # empty axes until data arrives

    def update_from(self, view: RunView) -> None:
        """Drawing the plots is most of the dashboard's work, and it competes with training:
        at once for a new phase (:meth:`watch_phase`), else every PLOT_SECONDS."""
        st = view.state
        self._state = st
        self.phase = (len(st.history), st.state, bool(st.step_x))
        if self._pace.due():
            self.show(st)

    def watch_phase(self) -> None:
        if self._state is not None:
            self.show(self._state)

    def show(self, state: RunState) -> None:
        """Draw the plots whose data changed since they were last drawn."""
        self._state = state
        self._pace.drawn()
        plots = list(self.query(_Plot))
        before = sum(p.draws for p in plots)
        for plot in plots:
            plot.show(state)
        self.redraws += sum(p.draws for p in plots) != before

    def toggle_log_scale(self) -> bool:
        """Switch the loss plot between a linear and a log scale; returns True if now log."""
        loss = self.query_one(LossPlot)
        loss.log_scale = not loss.log_scale
        if self._state is not None:
            self.show(self._state)
        return loss.log_scale

    def on_resize(self) -> None:
        # the number of points kept and the ticks depend on the size
        if self._state is not None:
            self.show(self._state)
