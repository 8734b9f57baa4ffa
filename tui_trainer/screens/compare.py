"""Compare runs: their validation accuracy and loss per epoch overlaid (one colour and
one marker per run, a legend with the run ids), their parameter counts, and the network
shapes and settings that differ.

The curves come from each run's ``metrics.jsonl`` (:func:`engine.export.read_history`,
no torch), read in a thread worker so that long histories do not block the screen.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from engine.runs import RunSummary

from ..formatting import fmt_pct
from ..widgets.plots import epoch_ticks, nice_range, nice_ticks, split_outliers

RUN_COLOURS = [(80, 160, 255), (255, 170, 60), (90, 210, 120), (220, 120, 230), (240, 90, 90), (90, 220, 220),
               (230, 220, 90), (170, 170, 170)]
RUN_MARKERS = ["•", "x", "+", "o", "*", "#", "=", "~"]
HIDDEN_SETTINGS = {"runs_dir"}


def differing_settings(runs: Sequence[RunSummary]) -> list[tuple[str, list[Any]]]:
    """(setting, value per run) for each setting whose value is not the same in every run."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.config if k not in keys and k not in HIDDEN_SETTINGS]
    out = []
    for k in keys:
        values = [r.config.get(k) for r in runs]
        if any(v != values[0] for v in values[1:]):
            out.append((k, values))
    return out


SHAPE_KEYS = ("blocks", "channels", "strides", "stem_channels", "se", "se_reduction", "width")


def _shape_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def shape_rows(runs: Sequence[RunSummary]) -> list[tuple[str, list[str]]]:
    """The trainable parameters of each run (always), then each setting of the network's
    shape whose value is not the same in every run (a run written before shapes were
    settings has the report's network at its width)."""
    rows = [("params", [f"{r.params:,}" if r.params is not None else "?" for r in runs])]
    shapes = [r.shape or {} for r in runs]
    for key in SHAPE_KEYS:
        values = [s.get(key) for s in shapes]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, [_shape_value(v) for v in values]))
    return rows


class CompareRunsPlot(PlotextPlot):
    """One metric per epoch of several runs."""

    DEFAULT_CSS = "CompareRunsPlot { height: 1fr; width: 1fr; min-height: 6; }"

    def __init__(self, title: str, key: str, percent: bool, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.title, self.key, self.percent = title, key, percent
        self.series: list[tuple[str, list[int], list[float]]] = []  # (run id, epochs, values)
        self.note = ""

    def set_series(self, series: list[tuple[str, list[int], list[float]]]) -> None:
        self.series = series
        self.draw()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.xlabel("epoch")
        values = [v for _, _, ys in self.series for v in ys if math.isfinite(v)]
        for i, (name, xs, ys) in enumerate(self.series):
            if xs:
                colour, marker = self.style_of(i, name)
                plt.plot(xs, ys, marker="braille", color=colour)
                plt.scatter(xs, ys, marker=marker, color=colour)
        last = max((max(xs) for _, xs, _ in self.series if xs), default=1)
        plt.xlim(0, max(1, last))
        xt = epoch_ticks(0, max(1, last), self.size.width or 40)
        plt.xticks(xt, [str(t) for t in xt])
        self.note = ""
        if not values:
            lo, hi = (0.0, 100.0) if self.percent else (0.0, 1.0)
            plt.text("no finished epoch with validation", max(1, last) / 2, (lo + hi) / 2, alignment="center")
        elif self.percent:
            lo, hi = nice_range(values, floor=0.0, ceil=100.0, min_rel_span=0.1)
        else:
            kept, above = split_outliers(values)
            if above:
                self.note = f"{above} point(s) off the top"
            lo, hi = nice_range(kept, floor=0.0)
        plt.ylim(lo, hi)
        rows = max(2, (self.size.height or 10) - 3)
        ticks, labels = nice_ticks(lo, hi, max(2, min(6, rows // 2)))
        plt.yticks(ticks, labels)
        self.refresh()

    def style_of(self, i: int, name: str) -> tuple[tuple[int, int, int], str]:
        """The colour and marker of the ``i``-th series (named ``name``)."""
        return RUN_COLOURS[i % len(RUN_COLOURS)], RUN_MARKERS[i % len(RUN_MARKERS)]

    def on_resize(self) -> None:
        if self.series:
            self.draw()


class CompareScreen(Screen):
    """Validation accuracy and loss of several runs, and their differing settings."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, runs: Sequence[RunSummary]) -> None:
        super().__init__()
        self.runs = list(runs)
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-legend")
        with Horizontal(id="compare-plots"):
            with Vertical():
                yield Static(Text("Validation accuracy %", style="bold"), classes="compare-title")
                yield CompareRunsPlot("val acc", "val_acc", True, id="compare-acc")
            with Vertical():
                yield Static(Text("Validation loss", style="bold"), id="compare-loss-title",
                             classes="compare-title")
                yield CompareRunsPlot("val loss", "val_loss", False, id="compare-loss")
        yield DataTable(id="compare-settings", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"comparing {len(self.runs)} runs"
        self.query_one("#compare-legend", Static).update(self.legend())
        self._fill_settings()
        self._load()

    def legend(self) -> Text:
        text = Text()
        for i, r in enumerate(self.runs):
            (cr, cg, cb), marker = RUN_COLOURS[i % len(RUN_COLOURS)], RUN_MARKERS[i % len(RUN_MARKERS)]
            if i:
                text.append("   ")
            text.append(f"{marker} ", style=f"bold rgb({cr},{cg},{cb})")
            text.append(r.run_id, style=f"rgb({cr},{cg},{cb})")
            text.append(f" {fmt_pct(r.best_val_acc)}", style="dim")
        return text

    def _fill_settings(self) -> None:
        table = self.query_one("#compare-settings", DataTable)
        table.add_column("setting", key="setting")
        for i, r in enumerate(self.runs):
            cr, cg, cb = RUN_COLOURS[i % len(RUN_COLOURS)]
            table.add_column(Text(f"{RUN_MARKERS[i % len(RUN_MARKERS)]} {r.run_id}", style=f"rgb({cr},{cg},{cb})"))
        table.add_row(Text("status"), *[Text(r.status) for r in self.runs])
        table.add_row(Text("epochs done"), *[Text(f"{r.epochs_done}/{r.epochs or '?'}") for r in self.runs])
        table.add_row(Text("best val"), *[Text(f"{fmt_pct(r.best_val_acc)} (epoch {r.best_epoch})"
                                               if r.best_val_acc is not None else "-") for r in self.runs])
        for key, cells in shape_rows(self.runs):
            table.add_row(Text(key, style="bold" if key == "params" else ""), *[Text(c) for c in cells])
        diffs = [(k, v) for k, v in differing_settings(self.runs) if k not in SHAPE_KEYS]
        for key, values in diffs:
            table.add_row(Text(key), *[Text(str(v)) for v in values])
        if not diffs:
            table.add_row(Text("(settings)"), *[Text("the same") for _ in self.runs])

    @work(thread=True, exclusive=True, group="compare")
    def _load(self) -> None:
        from engine.export import ExportError, read_history

        acc, loss = [], []
        for r in self.runs:
            try:
                h = read_history(r.path)
                rows = h.epochs
            except (ExportError, OSError):
                rows = []
            vx = [e.epoch for e in rows if e.val_acc is not None]
            acc.append((r.run_id, vx, [100.0 * e.val_acc for e in rows if e.val_acc is not None]))
            lx = [e.epoch for e in rows if e.val_loss is not None and math.isfinite(e.val_loss)]
            loss.append((r.run_id, lx, [e.val_loss for e in rows if e.val_loss is not None and math.isfinite(e.val_loss)]))
        self.app.call_from_thread(self._show, acc, loss)

    def _show(self, acc, loss) -> None:
        self.query_one("#compare-acc", CompareRunsPlot).set_series(acc)
        plot = self.query_one("#compare-loss", CompareRunsPlot)
        plot.set_series(loss)
        title = Text("Validation loss", style="bold")
        if plot.note:
            title.append(f"  {plot.note}", style="dim")
        self.query_one("#compare-loss-title", Static).update(title)
        self.loaded = True

    def action_back(self) -> None:
        self.app.pop_screen()
