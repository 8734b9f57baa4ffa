"""The training plots: loss, accuracy and learning rate, drawn with textual-plotext.

Every plot's x axis is the epoch (fractional for per-step points), so the
smoothed per-step curve and the per-epoch points line up. The plots only change
when :meth:`TrainingPlots.update_from` is called with new data; the dashboard
does that at most once per timer tick, and only when data arrived.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual_plotext import PlotextPlot

from ..runstate import RunState

Color = tuple[int, int, int]
TRAIN: Color = (80, 160, 255)  # blue
TRAIN_EPOCH: Color = (255, 170, 60)  # orange
VAL: Color = (90, 210, 120)  # green
LR: Color = (220, 120, 230)  # magenta


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
    # (name, short name, colour, glyph) of each series, for the legend
    SERIES: tuple[tuple[str, str, Color, str], ...] = ()

    DEFAULT_CSS = """
    _Plot { height: 1fr; width: 1fr; min-height: 5; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.points: dict[str, int] = {}
        """How many points each series got at the last draw (for tests and debugging)."""
        self._xrange = (0.0, 1.0)

    def draw(self, state: RunState) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _series(self, name: str, xs: Sequence[float], ys: Sequence[float], **kw) -> None:
        self.points[name] = len(xs)
        if xs:
            self.plt.plot(list(xs), list(ys), **kw)

    def _finish(self, ylim: tuple[float, float], empty_note: str) -> None:
        self.plt.ylim(*ylim)
        if not any(self.points.values()):
            (x0, x1), (y0, y1) = self._xrange, ylim
            self.plt.text(empty_note, (x0 + x1) / 2, (y0 + y1) / 2, alignment="center", color="gray",
                          background="default")
        self.refresh()

    def _begin(self) -> None:
        self.plt.clear_figure()
        self.points = {}
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
        max_ticks = max(2, (self.size.width or 40) // 9)
        step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9)
                    if (right - left) / s <= max_ticks)
        first = math.ceil(left / step) * step
        ticks = list(range(int(first), int(right) + 1, step))
        if ticks and right - ticks[-1] >= 0.6 * step and right == int(right):
            ticks.append(int(right))  # show where the axis ends (the planned last epoch)
        self.plt.xticks(ticks, [str(t) for t in ticks])


class LossPlot(_Plot):
    TITLE, SHORT_TITLE = "Loss", "Loss"
    SERIES = (("train (smoothed)", "train", TRAIN, "━"), ("train/epoch", "epoch", TRAIN_EPOCH, "●"),
              ("val", "val", VAL, "●"))

    def draw(self, state: RunState) -> None:
        self._begin()
        xs, ys = downsample(state.step_x, state.step_loss, self._max_points)
        ex = [h.epoch for h in state.history]
        tl = [h.train_loss for h in state.history]
        vx = [h.epoch for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        vl = [h.val_loss for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        self._series("train (smoothed)", xs, ys, marker="braille", color=TRAIN)
        self._series("train/epoch", ex, tl, marker="dot", color=TRAIN_EPOCH)
        self._series("val", vx, vl, marker="dot", color=VAL)
        values = _finite(list(ys) + tl + vl)
        self._x_axis(state)
        self._finish(nice_range(values, floor=0.0) if values else (0, 1), "no steps yet")


class AccuracyPlot(_Plot):
    TITLE, SHORT_TITLE = "Accuracy %", "Acc %"
    SERIES = (("train", "train", TRAIN_EPOCH, "●"), ("val", "val", VAL, "●"))

    def draw(self, state: RunState) -> None:
        self._begin()
        ex = [h.epoch for h in state.history]
        ta = [100.0 * h.train_acc for h in state.history]
        vx = [h.epoch for h in state.history if h.val_acc is not None]
        va = [100.0 * h.val_acc for h in state.history if h.val_acc is not None]
        self._series("train", ex, ta, marker="dot", color=TRAIN_EPOCH)
        self._series("val", vx, va, marker="dot", color=VAL)
        values = _finite(ta + va)
        self._x_axis(state)
        self._finish(nice_range(values, floor=0.0, ceil=100.0, min_rel_span=0.1) if values else (0, 100),
                     "after epoch 1")


class LearningRatePlot(_Plot):
    TITLE, SHORT_TITLE = "Learning rate", "LR"
    SERIES = (("lr", "lr", LR, "━"),)

    def draw(self, state: RunState) -> None:
        self._begin()
        xs, ys = downsample(state.step_x, state.step_lr, self._max_points)
        self._series("lr", xs, ys, marker="braille", color=LR)
        self._x_axis(state, whole_run=True)  # the whole schedule's span: where we are in it
        peak = state.config.get("lr") if state.config else None
        values = _finite(list(ys) + ([float(peak)] if isinstance(peak, (int, float)) else []))
        self._finish((0, max(values) * 1.05 if values else 0.1), "no steps yet")


class Legend(Widget):
    """One line above a plot: its title and a coloured key to its series."""

    DEFAULT_CSS = """
    Legend { height: 1; width: 1fr; padding: 0 0 0 1; }
    """

    def __init__(self, plot: _Plot) -> None:
        super().__init__()
        self.plot = plot

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
    TrainingPlots { height: 1fr; width: 1fr; }
    TrainingPlots > #plots-lower { height: 1fr; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.redraws = 0
        self._state: Optional[RunState] = None

    def compose(self) -> ComposeResult:
        yield PlotPanel(LossPlot(id="plot-loss"), id="panel-loss")
        with Horizontal(id="plots-lower"):
            yield PlotPanel(AccuracyPlot(id="plot-acc"), id="panel-acc")
            yield PlotPanel(LearningRatePlot(id="plot-lr"), id="panel-lr")

    def on_mount(self) -> None:
        self.update_from(RunState())  # empty axes until data arrives

    def update_from(self, state: RunState) -> None:
        self._state = state
        for plot in self.query(_Plot):
            plot.draw(state)
        self.redraws += 1

    def on_resize(self) -> None:
        # the number of points kept and the ticks depend on the size
        if self._state is not None:
            self.update_from(self._state)
