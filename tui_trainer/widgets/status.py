"""The status panel: run, device, progress, speed, ETA, learning rate, mixup, best, state."""

from __future__ import annotations

from typing import Optional, Union

from rich.text import Text
from textual.reactive import reactive, var
from textual.widgets import Static

from ..formatting import fmt_pct
from ..runstate import RunState, fmt_duration, fmt_lr
from .view import Pace, RunView

REASON_CHARS = 42  # two lines of the narrow panel; the event log has the full text
Value = Union[Text, str, tuple]  # a row's value; a tuple: alternatives, the first that fits the line is shown
STATUS_SECONDS = 0.9  # the numbers (step, speed, ETA...) are updated about once a second

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
    "pruned": ("■ pruned by the sweep", "yellow"),
}


def state_text(state: RunState, source_kind: str = "live") -> Text:
    label, style = STATE_STYLE.get(state.state, (state.state, ""))
    if state.state == "finished" and state.outcome in OUTCOME_STYLE:
        label, style = OUTCOME_STYLE[state.outcome]
    if state.state == "starting":
        label = "◌ loading data..." if source_kind == "live" else "◌ no events yet"
        if state.loading is not None and state.loading.total:
            label = f"◌ decoding {100 * state.loading.done / state.loading.total:.0f}%"
    return Text(label, style=style)


def fmt_params(n: Optional[int], short: bool = False) -> str:
    """79,339 params; 4.99M params (the exact count is in the event log); short: 79k, 4.99M."""
    if n is None:
        return ""
    if short:
        return f"{n / 1e3:.0f}k" if n < 1_000_000 else f"{n / 1e6:.2f}M"
    return f"{n:,} params" if n < 1_000_000 else f"{n / 1e6:.2f}M params"


def short_word(word: str, room: int) -> str:
    """A word longer than ``room`` (a path): its last parts after an ellipsis, "…/nowhere:"."""
    if len(word) <= room:
        return word
    parts = word.split("/")
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(tail) + 3 > room:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}" if len(parts) > 1 and len(tail) + 2 <= room else "…" + word[-(room - 1):]


def short_reason(reason: str, limit: int = REASON_CHARS) -> str:
    """The gist of a reason, for the panel (the event log has it in full): the first
    clause, a path in it shortened to its last parts, and if that is still long, the
    words that fit and an ellipsis (never a word cut in two; the panel wraps the rest
    on words)."""
    gist = reason.strip()
    for sep in ("; ", " ("):
        if len(gist) > limit and sep in gist and gist.index(sep) > 8:
            gist = gist.split(sep)[0].strip()
    if len(gist) > limit:
        gist = " ".join(short_word(word, limit // 2) for word in gist.split())
    if len(gist) > limit:
        cut = gist.rfind(" ", 0, limit)  # after the last whole word that fits
        gist = (gist[:cut] if cut > 0 else gist[: limit - 1]).rstrip(" ,;:") + "…"
    return gist


class Panel(Static):
    """A bordered side panel of ``label value`` rows (the status and system panels)."""

    DEFAULT_CSS = """
    Panel {
        height: auto;
        border: round $primary-darken-1;
        border-title-color: $text;
        padding: 0 1;
    }
    """

    plain: var[str] = var("", init=False)
    """What is shown, as plain text (tests read it); a change draws the rows."""
    drawn_shape: reactive[tuple[int, int]] = reactive((0, 0), layout=True, repaint=False, init=False)
    """(rows, width) drawn: a layout only when the panel's height changes."""

    def __init__(self, title: str, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.border_title = title
        self.redraws = 0
        self._rows: list[tuple[str, Value]] = []

    def set_rows(self, rows: list[tuple[str, Value]]) -> None:
        """Show these rows; nothing is redrawn or laid out when they read as before."""
        self._rows = rows
        self.plain = "\n".join(f"{a} {plain(b)}" for a, b in rows)

    def watch_plain(self) -> None:
        self._draw()

    def _draw(self, relayout: bool = False) -> None:
        width = self.content_size.width
        text = label_rows(self._rows, width)
        self.redraws += 1
        self.update(text, layout=relayout)
        self.drawn_shape = (text.plain.count("\n") + 1, width)

    def on_resize(self) -> None:
        if self._rows:  # (after this resize is laid out, so that the new height is measured)
            self.call_after_refresh(self._draw, True)


class StatusPanel(Panel):
    """A two-column table of the run: drawn at once when its state, outcome, mixup or
    phase changes (:attr:`phase`), else its numbers about once a second."""

    phase: var[tuple] = var((), init=False)

    def __init__(self, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__("Status", id=id)
        self._view: Optional[RunView] = None
        self._pace = Pace(STATUS_SECONDS)

    def update_from(self, view: RunView) -> None:
        st = view.state
        self._view = view
        self.phase = (st.state, st.outcome, st.mixup, st.mixup_source, st.loading is None, view.quitting,
                      st.global_step > 0, st.lr_scale)
        if self._pace.due():
            self._show()

    def watch_phase(self) -> None:
        self._show()

    def _show(self) -> None:
        view = self._view
        if view is None:
            return
        self._pace.drawn()
        self.set_rows(self.rows(view.state, source_kind=view.source_kind, quiet_for=view.quiet_for,
                                quitting=view.quitting))

    @staticmethod
    def rows(state: RunState, *, source_kind: str = "live", quiet_for: Optional[float] = None,
             quitting: bool = False) -> list[tuple[str, Value]]:
        rows: list[tuple[str, Value]] = []
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
        if state.state == "starting" and state.loading is not None and state.loading.total:
            rows.append(("", Text(f"{state.loading.done:,} / {state.loading.total:,} images", style="dim")))
        dev = state.device or "-"
        if state.params is not None:  # in full where it fits on the line, else shorter: never wrapped
            rows.append(("Device", (f"{dev} · {fmt_params(state.params)}", f"{dev} · {fmt_params(state.params, True)}",
                                    Text(dev, no_wrap=True, overflow="ellipsis"))))
        else:
            rows.append(("Device", Text(dev, no_wrap=True, overflow="ellipsis")))
        epochs = state.epochs or "?"
        rows.append(("Epoch", f"{state.epoch} / {epochs}" if state.epoch else f"- / {epochs}" if state.epochs else "-"))
        rows.append(("  step", _step_in_epoch(state)))
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
        lr = fmt_lr(state.lr)
        if state.lr_scale != 1.0:  # steered ([ and ], ctl lr): the schedule times this
            lr += f" (x{state.lr_scale:.3g})"
        rows.append(("LR", lr))
        if state.mixup is None:
            mix = Text("-")
        else:
            mix = Text("on" if state.mixup else "off", style="bold" if state.mixup else "")
            mix.append(" (your override)" if state.mixup_source == "user" else " (schedule)", style="dim")
            if state.mixup:
                mix.append(" · train acc on mixed images", style="dim")
        rows.append(("Mixup", mix))
        if state.best_val_acc is not None:
            best = Text(fmt_pct(state.best_val_acc), style="bold")
            if state.best_epoch is not None:
                best.append(f" (epoch {state.best_epoch})", style="dim")
        else:
            best = Text("-")
        rows.append(("Best val", best))
        return rows


LABEL_WIDTH = 8


def plain(value: Value) -> str:
    """A row's value as plain text (of alternatives, the first)."""
    if isinstance(value, tuple):
        value = value[0]
    return value.plain if isinstance(value, Text) else value


def label_rows(rows: list[tuple[str, Value]], width: int) -> Text:
    """Rows of ``label value`` as one Text: labels dim in a column of LABEL_WIDTH, a value
    too long for the rest of the line folded under itself (on words), or of a tuple of
    alternatives the first that fits. (One Text renders far faster than a rich Table, and
    these panels are drawn every second.)"""
    room = max(4, (width or 32) - LABEL_WIDTH - 1)
    out = Text()
    indent = " " * (LABEL_WIDTH + 1)
    for i, (label, value) in enumerate(rows):
        if i:
            out.append("\n")
        out.append(label.ljust(LABEL_WIDTH)[:LABEL_WIDTH] + " ", style="dim")
        if isinstance(value, tuple):
            value = next((v for v in value if Text(plain(v)).cell_len <= room), value[-1])
        value = value if isinstance(value, Text) else Text(value)
        for j, part in enumerate(value.split("\n", allow_blank=True)):
            if j:
                out.append("\n" + indent)
            if part.no_wrap or part.overflow == "ellipsis":
                part = part.copy()
                part.truncate(room, overflow="ellipsis")
                out.append_text(part)
                continue
            if part.cell_len <= room:
                out.append_text(part)
                continue
            for k, piece in enumerate(part.wrap(_wrap_console(), room)):  # at spaces where it can
                if k:
                    out.append("\n" + indent)
                out.append_text(piece)
    return out


_console = None


def _wrap_console():
    global _console
    if _console is None:
        import io

        from rich.console import Console

        _console = Console(file=io.StringIO(), width=200)
    return _console


def _step_in_epoch(state: RunState) -> str:
    """The step within the epoch shown above it: "120 / 704"."""
    spe = state.steps_per_epoch
    if not state.epoch or not spe:
        return "-"
    done_before = (state.epoch - 1) * spe
    in_epoch = min(spe, max(0, state.global_step - done_before))
    return f"{in_epoch:,} / {spe:,}"
