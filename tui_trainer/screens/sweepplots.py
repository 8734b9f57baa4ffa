"""The Sweep screen's plots: each trial's validation accuracy per epoch (pruned trials
dimmed), and the trials' best accuracy against one searched setting.

A trial keeps one colour and marker (by its number) in the curves and in the table's
``#`` column, which is the curves' legend. The setting plot puts a range on a numeric
axis (a log range on a log axis) and a list of choices on categories, in the spec's order.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from rich.text import Text
from textual_plotext import PlotextPlot

from ..formatting import fmt_setting
from .compare import RUN_COLOURS, RUN_MARKERS, CompareRunsPlot
from ..widgets.axes import log_ticks, nice_range, nice_ticks

Color = tuple[int, int, int]
DIMMED: Color = (105, 105, 105)  # a pruned (or failed) trial: grey
BEST: Color = (90, 210, 120)  # the best trial's point: green
DONE: Color = (80, 160, 255)  # the other finished trials' points: blue
NOT_DONE = ("pruned", "failed", "infeasible", "interrupted")
CATEGORY_CHARS = 9  # a choice's label under the setting plot


def trial_style(number: int, state: str) -> tuple[Color, str]:
    """A trial's colour and marker in the curves (and its legend, the table's ``#`` cell)."""
    if state in NOT_DONE:
        return DIMMED, "·"
    return RUN_COLOURS[number % len(RUN_COLOURS)], RUN_MARKERS[number % len(RUN_MARKERS)]


def trial_mark(number: int, state: str) -> Text:
    """The table's ``#`` cell: the trial's number and its curve's marker, in its colour."""
    (r, g, b), marker = trial_style(number, state)
    return Text.assemble(f"{number} ", (marker, f"bold rgb({r},{g},{b})"))


class TrialCurves(CompareRunsPlot):
    """Validation accuracy per epoch, one curve per trial; pruned and failed ones grey."""

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__("val acc", "val_acc", True, id=id)
        self.states: dict[str, tuple[int, str]] = {}  # series name -> (trial number, state)

    def set_trials(self, rows: Sequence[dict]) -> None:
        with_curve = [r for r in rows if r.get("curve")]
        self.states = {f"#{r['number']}": (r["number"], r["state"]) for r in with_curve}
        # the dimmed ones first, so that the live and finished curves are drawn over them
        with_curve.sort(key=lambda r: (r["state"] not in NOT_DONE, r["number"]))
        self.set_series([(f"#{r['number']}", list(range(1, len(r["curve"]) + 1)), [100 * v for v in r["curve"]])
                         for r in with_curve])

    def style_of(self, i: int, name: str) -> tuple[Color, str]:
        number, state = self.states.get(name, (i, "running"))
        return trial_style(number, state)


def setting_axis(param, values: Sequence[Any], width: int) -> tuple[list[Optional[float]], tuple[float, float],
                                                                    list[float], list[str]]:
    """Where each value of the setting ``param`` (an :class:`engine.sweep.Param`) goes on
    the x axis (None: not on it), the axis' limits, its ticks and their labels: choices
    as categories 1..n, a range on a numeric axis (log10 units for a log range)."""
    if param.choices is not None:
        choices = list(param.choices)
        xs = [float(choices.index(v) + 1) if v in choices else None for v in values]
        ticks = [float(i + 1) for i in range(len(choices))]
        labels = [_cut(fmt_setting(c)) for c in choices]
        room = max(1, width // (CATEGORY_CHARS + 1))
        if len(choices) > room:  # every k-th label, so that they do not run into each other
            step = math.ceil(len(choices) / room)
            ticks, labels = ticks[::step], labels[::step]
        return xs, (0.5, len(choices) + 0.5), ticks, labels
    max_ticks = max(2, min(5, width // 10))
    if param.log:
        lo, hi = math.log10(param.low), math.log10(param.high)
        xs = [math.log10(v) if _number(v) and v > 0 else None for v in values]
        ticks, labels = log_ticks(lo, hi, max_ticks, min_ticks=2)
    else:
        lo, hi = float(param.low), float(param.high)
        xs = [float(v) if _number(v) else None for v in values]
        ticks, labels = nice_ticks(lo, hi, max_ticks)
    return xs, (lo, hi), ticks, labels


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _cut(label: str) -> str:
    return label if len(label) <= CATEGORY_CHARS else label[: CATEGORY_CHARS - 1] + "…"


class SettingPlot(PlotextPlot):
    """The trials' best validation accuracy against one searched setting: the best trial
    green, the other finished ones blue, pruned ones grey crosses (their best before
    they stopped)."""

    DEFAULT_CSS = "SettingPlot { height: 1fr; width: 1fr; min-height: 6; }"

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.param = None  # the setting on the x axis (engine.sweep.Param)
        self.rows: list[dict] = []
        self.shown: list[tuple[float, float, str]] = []  # the points drawn: (x, accuracy %, state)

    def set_trials(self, param, rows: Sequence[dict]) -> None:
        self.param, self.rows = param, list(rows)
        self.draw()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        self.shown = []
        if self.param is None:
            self.refresh()
            return
        plt.xlabel(self.param.name + (" (log)" if self.param.log else ""))
        rows = [r for r in self.rows if r.get("value") is not None and r["state"] in ("complete", "pruned")]
        xs, (lo, hi), ticks, labels = setting_axis(self.param, [r["params"].get(self.param.name) for r in rows],
                                                   self.size.width or 40)
        best = max((r["value"] for r in rows if r["state"] == "complete"), default=None)
        for x, r in zip(xs, rows):
            if x is not None and _number(r["value"]):
                kind = "best" if r["state"] == "complete" and r["value"] == best else r["state"]
                self.shown.append((x, 100 * r["value"], kind))
        for kind, colour, marker in (("pruned", DIMMED, "x"), ("complete", DONE, "•"), ("best", BEST, "•")):
            pts = [(x, y) for x, y, k in self.shown if k == kind]
            if pts:
                plt.scatter([x for x, _ in pts], [y for _, y in pts], marker=marker, color=colour)
        plt.xlim(lo, hi)
        plt.xticks(ticks, labels)
        ys = [y for _, y, _ in self.shown]
        ylo, yhi = nice_range(ys, floor=0.0, ceil=100.0, min_rel_span=0.1) if ys else (0.0, 100.0)
        if not ys:
            plt.text("no finished trial yet", (lo + hi) / 2, 50.0, alignment="center")
        plt.ylim(ylo, yhi)
        rows_room = max(2, (self.size.height or 10) - 3)
        yt, yl = nice_ticks(ylo, yhi, max(2, min(6, rows_room // 2)))
        plt.yticks(yt, yl)
        self.refresh()

    def on_resize(self) -> None:
        if self.param is not None:
            self.draw()
