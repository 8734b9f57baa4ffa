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
and ``l`` switches it to a log scale. The per-step loss is drawn raw, faint, with
an exponential moving average over it whose weight a key cycles (as TensorBoard's
smoothing slider), shown in the plot's title.
"""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widget import Widget
from textual_plotext import PlotextPlot

from ..runstate import RunState
from .axes import (PLOT_LIMIT, CANVAS_MARGIN, aligned_axis, downsample, epoch_ticks, finite, log_ticks, nice_range,  # noqa: F401
                   nice_ticks, smooth, split_outliers)
from .view import Pace, RunView

PLOT_SECONDS = 2.0  # new steps alone redraw the plots at most this often (an epoch's end: at once)

Color = tuple[int, int, int]
TRAIN: Color = (80, 160, 255)  # blue
TRAIN_EPOCH: Color = (255, 170, 60)  # orange
VAL: Color = (90, 210, 120)  # green
LR: Color = (220, 120, 230)  # magenta
MARK: Color = (150, 150, 150)  # a steering action (pause, mixup, lr, save, stop): a grey line


def _plottable(v: Optional[float]) -> bool:
    return v is not None and math.isfinite(v) and abs(v) <= PLOT_LIMIT


def _drawable(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """The (x, y) points a plot can draw (both finite, within :data:`PLOT_LIMIT`)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if _plottable(x) and _plottable(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _safe_ylim(lo: float, hi: float) -> tuple[float, float]:
    """A y range plotext and the tick arithmetic can use, whatever they were given."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    lo, hi = max(-PLOT_LIMIT, lo), min(PLOT_LIMIT, hi)
    return (lo, hi) if hi > lo else (lo, lo + max(1.0, abs(lo)))


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
    LEGEND_WATCH: tuple[str, ...] = ("note",)  # what the legend shows besides the series
    MARK_LABELS = False  # steering actions: a line on every plot; named on this one

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
        self.ytick_labels: list[str] = []  # the y axis's labels at the last draw
        self.drawn_marks: list[tuple[float, str]] = []  # the steering actions drawn at the last draw

    def draw(self, state: RunState) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def title(self, short: bool = False) -> str:
        """The plot's name on its legend line."""
        return self.SHORT_TITLE if short else self.TITLE

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
            return (len(state.history), last, x_right, state.epochs, self.size, len(state.marks))
        return (len(state.step_x), state.step_x[-1] if state.step_x else None, len(state.history), last, x_right,
                state.epochs, self.size, bool(state.config), len(state.marks))

    def _series(self, name: str, xs: Sequence[float], ys: Sequence[float], **kw) -> None:
        xs, ys = _drawable(xs, ys)
        self.points[name] = len(xs)
        if xs:
            self.plt.plot(list(xs), list(ys), **kw)

    def _points(self, name: str, xs: Sequence[float], ys: Sequence[float], marker: str, color: Color) -> None:
        """Per-epoch values: a thin line through them, and each one marked with ``marker``."""
        xs, ys = _drawable(xs, ys)
        self.points[name] = len(xs)
        if xs:
            self.plt.plot(list(xs), list(ys), marker="braille", color=color)
            self.plt.scatter(list(xs), list(ys), marker=marker, color=color)

    def _finish(self, ylim: tuple[float, float], empty_note: str, log: bool = False) -> None:
        rows = max(2, (self.size.height or 10) - CANVAS_MARGIN)
        ylim = _safe_ylim(*ylim)
        if log:
            ticks, labels = log_ticks(ylim[0], ylim[1], max(2, min(6, rows // 2)))
        else:  # round ticks, each on a row of its own, the same number of rows apart
            ylim, ticks, labels = aligned_axis(ylim[0], ylim[1], rows)
        self.note = self._note
        self.plt.ylim(*ylim)
        self.ylim = ylim
        self.ytick_labels = list(labels)
        self.plt.yticks(ticks, labels)
        self._marks(ylim, rows, labels)
        self.draws += 1
        if not any(self.points.values()):
            self._placeholder(empty_note, ylim, rows, labels)
        self.refresh()

    def _marks(self, ylim: tuple[float, float], rows: int, labels: Sequence[str]) -> None:
        """Each steering action (pause, resume, mixup, lr, save, stop) as a vertical line at
        the step where it took effect; on the loss plot named along the top, a name that would
        run into the one before it a row lower (three rows at most, then left out)."""
        self.drawn_marks = []
        state = self._state
        if state is None:
            return
        (x0, x1), (y0, y1) = self._xrange, ylim
        width = max(1, (self.size.width or 40) - max((len(label) for label in labels), default=1) - 3)
        row = (y1 - y0) / max(1, rows - 1)
        free = [-1, -1, -1]  # per label row: the first column after the last name written there
        for mark in state.marks:
            if not x0 - 1e-9 <= mark.x <= x1 + 1e-9:
                continue
            self.plt.vline(mark.x, color=MARK)
            self.drawn_marks.append((mark.x, mark.label))
            if not self.MARK_LABELS:
                continue
            col = round((mark.x - x0) / max(x1 - x0, 1e-9) * (width - 1))
            line = next((i for i, end in enumerate(free[: max(1, rows - 1)]) if col > end), None)
            if line is not None:
                self.plt.text(mark.label, mark.x, y1 - line * row, alignment="left", color=MARK, background="default")
                free[line] = col + len(mark.label)

    def _placeholder(self, note: str, ylim: tuple[float, float], rows: int, labels: Sequence[str]) -> None:
        """``note`` in the middle of an empty plot, wrapped on words to the canvas's width."""
        state = self._state
        if state is not None and state.state in ("failed", "interrupted", "finished"):
            note = "no data: the run failed" if state.state == "failed" else "no data: the run ended"
        width = (self.size.width or 40) - max((len(label) for label in labels), default=1) - 3  # the y labels, frame
        lines = textwrap.wrap(note, max(8, width), break_long_words=False) or [note]
        (x0, x1), (y0, y1) = self._xrange, ylim
        row = (y1 - y0) / max(1, rows - 1)
        mid = (y0 + y1) / 2 + row * (len(lines) - 1) / 2
        for i, line in enumerate(lines):
            self.plt.text(line, (x0 + x1) / 2, mid - i * row, alignment="center", color="gray", background="default")

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


SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)  # what the smoothing key cycles through (TensorBoard's slider)
SMOOTHING_DEFAULT = 0.6  # TensorBoard's default
RAW: Color = (60, 95, 140)  # the unsmoothed loss, faint under its smoothed curve


class LossPlot(_Plot):
    TITLE, SHORT_TITLE = "Loss", "Loss"
    SERIES = (("train", "train", TRAIN, "━"), ("train/epoch", "epoch", TRAIN_EPOCH, EPOCH_MARK),
              ("val", "val", VAL, VAL_MARK))
    LEGEND_WATCH = ("note", "smoothing")
    MARK_LABELS = True

    smoothing: var[float] = var(SMOOTHING_DEFAULT, init=False)
    """The weight of the moving average drawn over the per-step loss (0: the raw curve only)."""

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.log_scale = False

    def title(self, short: bool = False) -> str:
        if not self.smoothing:
            return self.TITLE
        return f"Loss · {'sm' if short else 'smoothing'} {self.smoothing:g}"

    def next_smoothing(self) -> float:
        """The next step of :data:`SMOOTHING_STEPS` (after the current one, wrapping round)."""
        later = [w for w in SMOOTHING_STEPS if w > self.smoothing + 1e-9]
        self.smoothing = later[0] if later else SMOOTHING_STEPS[0]
        return self.smoothing

    def data_key(self, state: RunState) -> tuple:
        return super().data_key(state) + (self.log_scale, self.smoothing)

    def draw(self, state: RunState) -> None:
        self._begin()
        smoothed = smooth(state.step_loss, self.smoothing)
        ex = [h.epoch for h in state.history]
        tl = [h.train_loss for h in state.history]
        vx = [h.epoch for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        vl = [h.val_loss for h in state.history if h.val_loss is not None and math.isfinite(h.val_loss)]
        y = (lambda vs: [math.log10(max(v, LOG_FLOOR)) for v in vs]) if self.log_scale else list
        if self.smoothing:  # the raw curve, faint, under the smoothed one
            rx, ry = downsample(state.step_x, state.step_loss, self._max_points)
            self._series("train (raw)", rx, y(ry), marker="braille", color=RAW)
        xs, ys = downsample(state.step_x, smoothed, self._max_points)
        self._series("train", xs, y(ys), marker="braille", color=TRAIN)
        self._points("train/epoch", ex, y(tl), EPOCH_MARK, TRAIN_EPOCH)
        self._points("val", vx, y(vl), VAL_MARK, VAL)
        values = finite(list(state.step_loss) + tl + vl)
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
    # with mixup the training accuracy is the accuracy on mixed images: the legend says so
    MIXED_SERIES = (("train (on mixed images)", "train (mixed)", TRAIN_EPOCH, EPOCH_MARK), ("val", "val", VAL, VAL_MARK))
    DEPENDS = "epochs"
    LEGEND_WATCH = ("note", "mixed")

    mixed: var[bool] = var(False, init=False)
    """Whether an epoch drawn trained with mixup (its training accuracy is on mixed images)."""

    def draw(self, state: RunState) -> None:
        self._begin()
        mixed = any(h.mixup for h in state.history)
        self.SERIES = self.MIXED_SERIES if mixed else AccuracyPlot.SERIES
        self.mixed = mixed
        ex = [h.epoch for h in state.history]
        ta = [100.0 * h.train_acc for h in state.history]
        vx = [h.epoch for h in state.history if h.val_acc is not None]
        va = [100.0 * h.val_acc for h in state.history if h.val_acc is not None]
        self._points("train", ex, ta, EPOCH_MARK, TRAIN_EPOCH)
        self._points("val", vx, va, VAL_MARK, VAL)
        values = finite(ta + va)
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
        return (column, len(state.history), state.epochs, self.size, bool(state.config), bool(state.step_x),
                len(state.marks))

    def draw(self, state: RunState) -> None:
        self._begin()
        xs, ys = downsample(state.step_x, state.step_lr, self._max_points)
        self._series("lr", xs, ys, marker="braille", color=LR)
        self._x_axis(state, whole_run=True)  # the whole schedule's span: where we are in it
        peak = state.config.get("lr") if state.config else None
        peak = float(peak) if isinstance(peak, (int, float)) and not isinstance(peak, bool) and peak > 0 else None
        values = finite(list(ys) + ([peak] if peak is not None else []))
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
        for attr in self.plot.LEGEND_WATCH:
            self.watch(self.plot, attr, self.refresh, init=False)

    def render(self) -> RenderResult:
        """The longest form that fits: names in full, then short names, then without the
        note, then without the series; never a word cut in two (the title at worst)."""
        width = self.size.width - 1
        plot = self.plot
        text = Text()
        for short, note, keys in ((False, True, True), (True, True, True), (True, False, True), (True, False, False)):
            sep = " " if short else "  "
            text = Text(plot.title(short), style="bold")
            for name, short_name, (r, g, b), glyph in plot.SERIES if keys and len(plot.SERIES) > 1 else ():
                text.append(sep)
                text.append(glyph, style=f"rgb({r},{g},{b})")
                text.append(" " + (short_name if short else name))
            if note and plot.note:
                text.append(sep + plot.note, style="dim")
            if text.cell_len <= width:
                return text
        text.truncate(max(width, 1), overflow="ellipsis")
        return text


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
    """(epochs done, the run's state, whether it has steps, the steering marks): a change draws at once."""

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
        self.phase = (len(st.history), st.state, bool(st.step_x), len(st.marks))
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

    def cycle_smoothing(self) -> float:
        """The loss plot's next smoothing weight (0, 0.6, 0.9, 0.99, 0...); returns it."""
        weight = self.query_one(LossPlot).next_smoothing()
        if self._state is not None:
            self.show(self._state)
        return weight

    def on_resize(self) -> None:
        # the number of points kept and the ticks depend on the size
        if self._state is not None:
            self.show(self._state)
