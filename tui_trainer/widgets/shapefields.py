"""The run form's network section: the shape fields in a collapsible (its title says the
shape, so it reads even when closed) and, always shown, the live figures of the network
the form describes: trainable parameters against the budget (green within it, red over
it, by the classes ``-within`` / ``-over``; ``-invalid`` with a wrong field's message),
forward FLOPs and activation memory per 32x32 image.

A view only: :class:`~tui_trainer.widgets.runform.RunForm` reads the fields, computes
the figures with :mod:`engine.shape` (arithmetic, no torch: instant) and shows them here.
"""

from __future__ import annotations

from typing import Any, Optional

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static

from engine.shape import DEFAULT_MAX_PARAMS, SE_MODES

from ..formatting import fmt_flops, fmt_mib

# the form's names of the shape's fields (error messages use them) -> the Input's id
SHAPE_FIELD_IDS = {"Blocks": "f-blocks", "Channels": "f-channels", "Strides": "f-strides",
                   "Stem channels": "f-stem", "SE reduction": "f-se-red", "Max params": "f-max-params"}


def _ints(v: Any) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else ("" if v is None else str(v))


def shape_figures_text(summary: dict[str, Any]) -> str:
    """FLOPs and activation memory of a :meth:`engine.shape.NetShape.summary`, after its budget line."""
    return f" · {fmt_flops(summary['flops'])}, {fmt_mib(summary['activation_bytes'])} per image"


class ShapeFields(Widget):
    """The shape fields, prefilled from ``settings`` (a config's values: blocks, channels,
    strides, stem_channels, se, se_reduction, max_params), and the figures line."""

    DEFAULT_CSS = """
    ShapeFields { height: auto; }
    ShapeFields Collapsible { background: transparent; border-top: none; padding: 0; }
    ShapeFields Collapsible CollapsibleTitle { padding: 0; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    ShapeFields Collapsible Contents { padding: 0; height: auto; }
    ShapeFields #shape-grid { height: auto; grid-size: 6; grid-columns: 8 1fr 8 1fr 8 1fr; grid-rows: 1;
                              grid-gutter: 0 1; }
    ShapeFields #shape-row { height: 1; }
    ShapeFields Label { height: 1; padding: 0 1 0 0; }
    ShapeFields #shape-grid Label { width: 100%; padding: 0; }
    ShapeFields #shape-row Label { width: auto; }
    ShapeFields #f-stem { width: 5; }
    ShapeFields #f-se { width: 10; }
    ShapeFields #f-se-red { width: 4; }
    ShapeFields #f-max-params { width: 1fr; }
    ShapeFields Input { margin: 0 1 0 0; }
    ShapeFields #shape-grid Input { margin: 0; }
    ShapeFields #f-figures-row { height: 1; }
    ShapeFields #f-params-label { width: auto; color: $text-muted; }
    ShapeFields #f-budget { width: auto; text-wrap: nowrap; text-style: bold; }
    ShapeFields #f-budget.-within { color: $success; }
    ShapeFields #f-budget.-over { color: $error; }
    ShapeFields #f-budget.-invalid { color: $error; text-style: none; }
    ShapeFields #f-figures { width: 1fr; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, settings: dict[str, Any], *, expanded: bool = False, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.settings = settings
        self.expanded = expanded

    def compose(self) -> ComposeResult:
        s = self.settings
        with Collapsible(title="Network", collapsed=not self.expanded, id="f-shape"):
            with Grid(id="shape-grid"):
                for label, wid, key in (("Blocks", "f-blocks", "blocks"), ("Channels", "f-channels", "channels"),
                                        ("Strides", "f-strides", "strides")):
                    yield Label(label)
                    yield Input(value=_ints(s.get(key)), placeholder="one per stage", id=wid, compact=True)
            with Horizontal(id="shape-row"):
                yield Label("Stem channels")
                yield Input(value=_ints(s.get("stem_channels")), id="f-stem", compact=True)
                yield Label("SE")
                se = s.get("se") if s.get("se") in SE_MODES else SE_MODES[0]
                yield Select([(m, m) for m in SE_MODES], value=se, allow_blank=False, id="f-se", compact=True)
                yield Label("SE reduction")
                yield Input(value=_ints(s.get("se_reduction")), id="f-se-red", compact=True)
                yield Label("Max params")
                mp = s.get("max_params")
                yield Input(value="" if mp is None else f"{mp:,}", placeholder="none", id="f-max-params",
                            compact=True, tooltip="The trainable-parameter budget: a network over it does not "
                            f"start. Blank: no limit (the line below compares with {DEFAULT_MAX_PARAMS:,}).")
        with Horizontal(id="f-figures-row"):
            yield Label("Params", id="f-params-label")
            yield Static("", id="f-budget")
            yield Static("", id="f-figures")

    def values(self) -> dict[str, Any]:
        q = self.query_one
        return {"blocks": q("#f-blocks", Input).value, "channels": q("#f-channels", Input).value,
                "strides": q("#f-strides", Input).value, "stem": q("#f-stem", Input).value,
                "se": q("#f-se", Select).value, "se_reduction": q("#f-se-red", Input).value,
                "max_params": q("#f-max-params", Input).value}

    def show(self, summary: Optional[dict[str, Any]], describe: str = "", problem: str = "") -> None:
        """The figures of a valid shape (``summary``; ``describe``: the shape in one line, for
        the title), or ``problem``: why the fields give no network."""
        budget = self.query_one("#f-budget", Static)
        within = summary is not None and summary["within_budget"]
        budget.set_class(within, "-within")
        budget.set_class(summary is not None and not within, "-over")
        budget.set_class(summary is None, "-invalid")
        self.query_one("#f-params-label").display = summary is not None
        if summary is None:
            budget.update(problem)
            self.query_one("#f-figures", Static).update("")
            return
        budget.update(summary["budget"])
        self.query_one("#f-figures", Static).update(shape_figures_text(summary))
        self.query_one("#f-shape", Collapsible).title = f"Network {describe}"

    def reveal(self) -> None:
        """Open the collapsible (a field in it is to be focused)."""
        self.query_one("#f-shape", Collapsible).collapsed = False

    @property
    def budget_text(self) -> str:
        return str(self.query_one("#f-budget", Static).render())
