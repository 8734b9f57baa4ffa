"""The status panel: run, device, progress, speed, ETA, learning rate, mixup, best, state."""

from __future__ import annotations

from typing import Optional

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ..formatting import fmt_pct
from ..runstate import RunState, fmt_duration, fmt_lr

REASON_CHARS = 42  # two lines of the narrow panel; the event log has the full text

STATE_STYLE = {
    "starting": ("◌ starting", "dim"),
    "running": ("● running", "bold green"),
    "paused": ("‖ paused", "bold yellow"),
    "stopping": ("■ stopping...", "bold yellow"),
    "finished": ("✔ finished", "bold cyan"),
    "failed": ("✖ failed", "bold red"),
    "interrupted": ("✖ interrupted", "bold red"),
}
OUTCOME_STYLE = {  # a finished run, by RunFinished's outcome
    "completed": ("✔ completed", "bold cyan"),
    "stopped": ("■ stopped", "bold yellow"),
}


def state_text(state: RunState, source_kind: str = "live") -> Text:
    label, style = STATE_STYLE.get(state.state, (state.state, ""))
    if state.state == "finished" and state.outcome in OUTCOME_STYLE:
        label, style = OUTCOME_STYLE[state.outcome]
    if state.state == "starting":
        label = "◌ loading data..." if source_kind == "live" else "◌ no events yet"
    return Text(label, style=style)


def short_reason(reason: str, limit: int = REASON_CHARS) -> str:
    """The gist of a reason, for the panel (the event log has it in full): the first
    clause, and if that is still long, its start and its end (where a path's file
    name and the cause are)."""
    gist = reason.strip()
    for sep in ("; ", " ("):
        if len(gist) > limit and sep in gist and gist.index(sep) > 8:
            gist = gist.split(sep)[0].strip()
    if len(gist) > limit:
        head = limit // 3
        gist = gist[:head].rstrip() + "…" + gist[-(limit - head - 1):].lstrip()
    return gist


class StatusPanel(Static):
    """A two-column table, rebuilt from the :class:`RunState` on every tick."""

    DEFAULT_CSS = """
    StatusPanel {
        height: auto;
        border: round $primary-darken-1;
        border-title-color: $text;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.border_title = "Status"
        self.plain = ""
        self._key: object = None

    def show(self, state: RunState, *, source_kind: str = "live", quiet_for: Optional[float] = None,
             quitting: bool = False) -> None:
        rows = self.rows(state, source_kind=source_kind, quiet_for=quiet_for, quitting=quitting)
        key = tuple((a, b.plain if isinstance(b, Text) else b) for a, b in rows)
        if key == self._key:
            return  # nothing changed: no refresh, no layout
        self._key = key
        self.plain = "\n".join(f"{a} {b.plain if isinstance(b, Text) else b}" for a, b in rows)
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="dim", no_wrap=True, width=8)
        grid.add_column(ratio=1, overflow="fold")
        for label, value in rows:  # strings come from events (a device, a reason): text, never markup
            grid.add_row(label, Text(value) if isinstance(value, str) else value)
        self.update(grid)

    @staticmethod
    def rows(state: RunState, *, source_kind: str = "live", quiet_for: Optional[float] = None,
             quitting: bool = False) -> list[tuple[str, Text | str]]:
        rows: list[tuple[str, Text | str]] = []
        run = Text(state.run_id or "-", overflow="ellipsis", no_wrap=True)
        rows.append(("Run", run))
        st = state_text(state, source_kind)
        if quitting and state.active:
            st.append("\n(quits after the save)", style="dim")
        if source_kind == "watch" and state.state == "running" and quiet_for is not None and quiet_for > 60:
            st.append(f"  (quiet {fmt_duration(quiet_for)})", style="dim yellow")
        rows.append(("State", st))
        if state.state in ("failed", "finished", "stopping", "interrupted") and (state.failure or state.reason):
            style = "red" if state.state == "failed" else "dim"
            reason = state.failure if state.state == "failed" and state.failure else state.reason
            rows.append(("", Text(short_reason(reason), style=style)))
        dev = state.device or "-"
        rows.append(("Device", dev))
        rows.append(("Params", f"{state.params:,}" if state.params is not None else "-"))
        epochs = state.epochs or "?"
        rows.append(("Epoch", f"{state.epoch} / {epochs}" if state.epoch else f"- / {epochs}" if state.epochs else "-"))
        total = state.total_steps
        rows.append(("Step", f"{state.global_step:,} / {total:,}" if total else (f"{state.global_step:,}" if state.global_step else "-")))
        ips = state.images_per_s
        rows.append(("Speed", f"{ips:,.0f} img/s" if ips else "-"))
        if state.state == "paused":
            eta = "paused"
        elif state.state in ("finished", "failed", "interrupted"):
            eta = "-"
        else:
            eta = fmt_duration(state.eta())
        rows.append(("ETA", eta))
        rows.append(("Elapsed", fmt_duration(state.elapsed())))
        rows.append(("LR", fmt_lr(state.lr)))
        if state.mixup is None:
            mix = Text("-")
        else:
            mix = Text("on" if state.mixup else "off", style="bold" if state.mixup else "")
            mix.append(" (your override)" if state.mixup_source == "user" else " (schedule)", style="dim")
        rows.append(("Mixup", mix))
        if state.best_val_acc is not None:
            best = Text(fmt_pct(state.best_val_acc), style="bold")
            if state.best_epoch is not None:
                best.append(f" (epoch {state.best_epoch})", style="dim")
        else:
            best = Text("-")
        rows.append(("Best val", best))
        return rows
