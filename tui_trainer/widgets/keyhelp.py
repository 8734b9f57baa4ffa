"""The keys panel (``?``): this screen's keys first, then the app's, then the focused
widget's (scrolling and the like), drawn over the screen instead of squeezing it.

Textual's own help panel lists the focused widget's generic bindings first and takes
its width from the screen (the plots shrank into unreadable labels); this one is the
same panel (:class:`textual.widgets.HelpPanel`, so ``escape`` and the palette's
"Keys" treat it as one). A screen that marks a container with the class
``-keys-host`` (the dashboard: the plots and the side panels, between the header and
the footer) gets it on a layer of its own there, over the plots; elsewhere it sits
beside the screen as Textual's does.
"""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import HelpPanel, KeyPanel, Markdown
from textual.widgets._key_panel import BindingsTable


def group_of(screen, active) -> int:
    """0: a key of this screen's own (its class's BINDINGS), 1: of this app's own, 2: the
    rest (Textual's generic ones: focus, copy, a focused widget's scrolling)."""
    for rank, node in enumerate((screen, screen.app)):
        if active.node is node and any(getattr(b, "action", None) == active.binding.action
                                       for b in type(node).__dict__.get("BINDINGS", ())):
            return rank
    return 2


def ordered_bindings(screen) -> list:
    """The screen's active bindings in :func:`group_of`'s order, each group in its own order."""
    return sorted(screen.active_bindings.values(), key=lambda active: group_of(screen, active))


class KeysTable(BindingsTable):
    """The rows of the keys panel, in :func:`ordered_bindings`' order."""

    def render_bindings_table(self) -> Table:
        key_style = self.get_component_rich_style("bindings-table--key")
        description_style = self.get_component_rich_style("bindings-table--description")
        table = Table(padding=(0, 0), show_header=False, box=box.SIMPLE, show_edge=False)
        table.add_column("", justify="right")
        table.add_column("")
        groups: dict[tuple[int, str], list] = {}
        for active in ordered_bindings(self.screen):
            if active.binding.system:
                continue
            group = group_of(self.screen, active)
            groups.setdefault((group, active.binding.action), []).append(active)
        previous = None
        for (group, _action), actives in groups.items():
            if previous is not None and group != previous:
                table.add_section()
            previous = group
            binding, enabled = actives[0].binding, actives[0].enabled
            keys = " ".join(dict.fromkeys(self.app.get_key_display(a.binding) for a in actives))
            # the sentence where there is one (it says more than the footer's word), else the word
            text = Text(binding.tooltip or binding.description or binding.action.replace("_", " "),
                        style=description_style, end="")
            if not enabled:
                text.stylize("dim")
            table.add_row(Text(keys + " ", style=key_style), text)
        return table


class _Keys(KeyPanel):
    def compose(self) -> ComposeResult:
        yield KeysTable(shrink=True, expand=False)


class KeysHelp(HelpPanel):
    """Textual's help panel with :class:`KeysTable`, over the screen (a layer of its own)."""

    SCOPED_CSS = False  # (its rule names the container it lies in)

    DEFAULT_CSS = """
    .-keys-host > KeysHelp {
        split: initial;
        dock: left;
        layer: keys;
        height: 100%;
        border-left: none;
        border-right: vkey $foreground 30%;
        background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        yield Markdown(id="widget-help")
        yield _Keys(id="keys-help")
