"""The training dashboard: plots, status panel and event log for one run.

The screen reads events from a *source* (see :mod:`tui_trainer.bridge`) on a
timer, folds them into a :class:`~tui_trainer.runstate.RunState` and redraws
what changed. Keys send commands to a live run (this app's, or one attached over
its control channel); what the status shows changes only when the engine's
events confirm it. ``q`` on an attached run detaches: the run goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, Header

from engine import commands
from engine import events as ev

from ..bridge import CommandRefused, EventSource
from ..messages import OpenBrowser
from ..runstate import RunState
from ..widgets import EventLog, StatusPanel, TrainingPlots
from ..widgets.system import SystemPanel
from ..widgets.view import RunView

TICK_SECONDS = 0.3  # how often events are drained and widgets updated


class Key(NamedTuple):
    """A key of the screen itself (the commands' keys are the table's, engine.commands.Key):
    the footer, the keys panel and the palette read it."""

    key: str
    action: str
    label: str
    description: str
    show: bool = True  # in the footer (hidden ones are still in the command palette)


# Commands to the run (its own or an attached one), usable while it trains: the command
# table's keys (p is pause or resume, as the run's state says; m and M mixup; [ and ] the lr).
COMMAND_KEYS = commands.KEYS
# q first, so that a narrow footer never hides it: quit, or leave a run attached over its channel
QUIT_KEYS = (
    Key("q", "quit", "Quit", "Quit (a running training is stopped and saved first)"),
    Key("q", "detach", "Detach", "Leave the dashboard; the run keeps training (attach again with "
        "cifar-tui watch RUN)"),
)
# Keys of the screen itself.
VIEW_KEYS = (
    Key("c", "checkpoints", "Checkpoints", "List this run's checkpoints"),
    Key("l", "log_scale", "Log loss", "Loss plot: switch between a linear and a log scale"),
    Key("a", "smoothing", "Smoothing", "Loss plot: the next smoothing of the per-step loss (0, 0.6, 0.9, 0.99), "
        "a moving average over the raw curve, as TensorBoard's slider", show=False),
    Key("escape", "back", "Back", "Back to the start screen"),
)
DASHBOARD_KEYS = QUIT_KEYS + COMMAND_KEYS + VIEW_KEYS  # in the footer's order
COMMAND_ACTIONS = tuple(k.action for k in COMMAND_KEYS)
PALETTE_EXTRAS = frozenset(k.action for k in DASHBOARD_KEYS if not k.show)
ENDED = ("finished", "failed", "interrupted")


class DashboardScreen(Screen):
    BINDINGS = [Binding(k.key, k.action, k.label, show=k.show, tooltip=k.description) for k in DASHBOARD_KEYS]

    narrow: var[bool] = var(False, toggle_class="-narrow")
    short: var[bool] = var(False, toggle_class="-short")
    run_phase: var[tuple] = var((), init=False)
    """The run's state and mixup as its events show them: a change confirms (or not) what
    the keys asked for (:meth:`watch_run_phase`)."""
    commands: var[tuple] = var((), init=False, bindings=True)
    """What the footer's keys depend on: the state, a pending pause, whether the trainer
    lives and (attached to another process's run) whether it takes commands now."""

    def __init__(self, source: EventSource, *, clock: Optional[Callable[[], float]] = None, can_go_back: bool = False,
                 tick_seconds: float = TICK_SECONDS, sampler: Any = None) -> None:
        super().__init__()
        self.source = source
        self.clock = clock or time.time
        self.can_go_back = can_go_back
        self.tick_seconds = tick_seconds
        self.run_state = RunState(clock=self.clock)
        self.ticks = 0
        self._want_pause: Optional[bool] = None
        self._want_mixup: Optional[bool] = None
        # the widgets fed from the run on each tick (update_from), made here so that they are
        # attributes from the start
        self.plots = TrainingPlots(id="plots")
        self.status = StatusPanel(id="status")
        self.system = SystemPanel(sampler or _sampler_for(source), id="system")  # tests: fake readings
        self.event_log = EventLog(id="log")
        self.fed = (self.plots, self.status, self.system, self.event_log)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body", classes="-keys-host"):  # the keys panel (?) lies over the plots
            yield self.plots
            with Vertical(id="side"):
                yield self.status
                yield self.system.data_bind(compact=DashboardScreen.short)
                yield self.event_log
        yield Footer().data_bind(compact=DashboardScreen.narrow)

    def on_mount(self) -> None:
        kind = self.source.kind
        where = self.source.run_dir
        self.sub_title = {"live": "training", "watch": f"watching {where}", "replay": "replay"}.get(kind, kind)
        self.tick()
        self.set_interval(self.tick_seconds, self.tick)

    def on_resize(self, event) -> None:
        self.narrow = self.size.width < 90
        self.short = self.size.height < 28

    # -------------------------------------------------------------------- tick
    def tick(self) -> None:
        """Drain new events, fold them in, and hand the run to every widget."""
        self.ticks += 1
        st = self.run_state
        for e in self.source.poll():
            if isinstance(e, ev.RunStarted) and e.resumed_from and not st.history and not st.step_x:
                self._load_history(e)
            elif isinstance(e, ev.CommandRefused):  # what was asked will not happen: p and m mean the usual
                if e.command in ("pause", "resume"):
                    self._want_pause = None
                elif e.command == "mixup":
                    self._want_mixup = None
            st.apply(e)
        kind = self.source.kind
        if kind == "watch" and st.active and self.source.liveness() == "interrupted":
            st.mark_interrupted()
        quiet = None
        if kind == "watch" and st.last_event_at is not None:
            quiet = self.clock() - st.last_event_at
        view = RunView(st, source_kind=kind, quiet_for=quiet, quitting=self.app_quitting)
        for widget in self.fed:
            widget.update_from(view)
        self.run_phase = (st.state, st.mixup)
        if st.run_id and kind == "live":
            self.sub_title = f"training {st.run_id}"
        self.commands = (st.state, self._want_pause, self.source.active, self.source.can_command)

    def watch_commands(self) -> None:
        if self.source.kind == "watch":
            self.sub_title = f"{'attached to' if self.source.can_command else 'watching'} {self.source.run_dir}"

    def watch_run_phase(self, before: tuple, now: tuple) -> None:
        """A pause or mixup asked for is no longer pending once the run's events show it;
        a run seen to end here rings the bell."""
        st = self.run_state
        if before and before[0] not in ENDED and now[0] in ENDED and self.source.kind != "replay":
            self._ring(now[0])
        if st.state in ("paused", "running", "finished", "failed"):
            if self._want_pause is not None and (st.state == "paused") == self._want_pause:
                self._want_pause = None
            if st.state in ("finished", "failed"):
                self._want_pause = self._want_mixup = None
        if self._want_mixup is not None and st.mixup == self._want_mixup:
            self._want_mixup = None

    def _ring(self, state: str) -> None:
        """The run ended while this dashboard showed it: the terminal's bell, a toast, and a
        desktop notification where the terminal takes one (see the app's ``alert``)."""
        if self.app_quitting:
            return  # the user asked for the end: no need to call them back
        st = self.run_state
        what = {"failed": "failed", "interrupted": "was interrupted"}.get(state, st.outcome or "finished")
        title = f"Run {st.run_id or ''} {what}".replace("  ", " ")
        detail = st.failure or st.reason or ""
        alert = getattr(self.app, "alert", None)
        if callable(alert):
            alert(title, detail, error=state != "finished")

    def _load_history(self, started: ev.RunStarted) -> None:
        """A resumed run: show what its metrics.jsonl already holds (the epochs before this start)."""
        from engine.rundir import MetricsFollower, RunDir

        follower = MetricsFollower(RunDir(started.run_dir).metrics_path)
        earlier: list[ev.Event] = []
        while True:
            batch = follower.poll()
            if not batch:
                break
            for e in batch:
                if isinstance(e, ev.RunStarted) and e.time == started.time:
                    break  # this start is where the live stream takes over
                earlier.append(e)
            else:
                continue
            break
        if not earlier:
            return
        st = self.run_state
        st.apply_all(earlier)
        st.take_log()  # their lines are old news; the plots and best value are what matter
        st.note(f"loaded the run's history: {len(earlier)} earlier events from metrics.jsonl", at=started.time)

    @property
    def app_quitting(self) -> bool:
        return bool(getattr(self.app, "quitting", False))

    # ----------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in COMMAND_ACTIONS:
            if not self.source.can_command:
                return False  # watching or replaying: there is nothing to command
            if action in ("pause", "resume") and (action == "pause") == self._pause_wanted():
                return False  # p shows the other meaning
            if self.source.kind == "live" and not self.source.active:
                return False  # the run has ended: only the keys that act are shown
            if self.run_state.state in ENDED:
                return False
            return True
        if action in ("detach", "quit"):  # q: detach from a run attached over its control channel, else quit
            return (action == "detach") == (self.source.kind == "watch" and self.source.can_command)
        if action == "back":
            if not self.can_go_back:
                return False
            return None if self.source.active else True  # greyed while training (the app says why)
        return True

    def back_blocked_reason(self) -> Optional[str]:
        """Why escape (Back) does nothing now, for the app to say; None when it works."""
        if self.can_go_back and self.source.active:
            return "Training is running: stop it first (x, it saves a checkpoint), then esc goes back."
        return None

    def _send(self, command: ev.Command, note: str) -> bool:
        try:
            self.source.send(command)
        except CommandRefused as e:
            self._want_pause = self._want_mixup = None
            self.run_state.note(f"» not sent: {e}", style="red")
            self.event_log.add(self.run_state.take_log())
            self.notify(str(e), title="Command not sent", severity="error", markup=False)
            self.refresh_bindings()
            return False
        self.run_state.note(note)
        self.event_log.add(self.run_state.take_log())
        return True

    def action_toggle_mixup(self) -> None:
        current = self._want_mixup if self._want_mixup is not None else bool(self.run_state.mixup)
        self._want_mixup = not current
        self._send(ev.SetMixup(on=self._want_mixup), f"» mixup {'on' if self._want_mixup else 'off'} requested")

    def action_mixup_schedule(self) -> None:
        self._want_mixup = None
        self._send(ev.SetMixup(on=None), "» mixup back to the schedule requested")

    def _pause_wanted(self) -> bool:
        """Paused, or asked to pause and not yet confirmed (what p toggles from)."""
        return self._want_pause if self._want_pause is not None else self.run_state.state == "paused"

    def action_pause(self) -> None:
        self._want_pause = True
        self._send(ev.Pause(), "» pause requested")
        self.refresh_bindings()

    def action_resume(self) -> None:
        self._want_pause = False
        self._send(ev.Resume(), "» resume requested")
        self.refresh_bindings()

    def action_save(self) -> None:
        self._send(ev.SaveCheckpoint(), "» checkpoint requested")

    def action_lr_halve(self) -> None:
        self._send_key("lr_halve")

    def action_lr_double(self) -> None:
        self._send_key("lr_double")

    def _send_key(self, action: str) -> None:
        """Send the command the table's key for ``action`` names; the status changes when
        the run confirms it (an LrChanged), or the log says why not (a CommandRefused)."""
        key = next(k for k in COMMAND_KEYS if k.action == action)
        assert key.command is not None
        self._send(key.command, f"» {key.description.split(' (')[0].lower()} requested")

    def action_stop(self) -> None:
        self._send(ev.Stop(save=True), "» stop requested (a checkpoint will be saved)")

    def action_checkpoints(self) -> None:
        run_dir = self.run_state.run_dir or self.source.run_dir
        if not run_dir:
            self.notify("No run folder yet: the run has not started.", severity="warning")
            return
        self.post_message(OpenBrowser(Path(run_dir).parent, select=str(run_dir)))

    def action_log_scale(self) -> None:
        log = self.plots.toggle_log_scale()
        self.notify(f"Loss plot: {'log' if log else 'linear'} scale", timeout=2)

    def action_smoothing(self) -> None:
        weight = self.plots.cycle_smoothing()
        self.notify(f"Loss plot: smoothing {weight:g}" + (" (raw curve)" if not weight else ""), timeout=2)

    async def action_quit(self) -> None:
        await self.app.action_quit()

    def action_detach(self) -> None:
        """Leave an attached run: the app exits, the run goes on in its own process."""
        self.app.exit(return_code=0)

    def action_back(self) -> None:
        if self.can_go_back and not self.source.active:
            self.dismiss(self.run_state.state)


def _sampler_for(source: EventSource):
    """The system panel's sampler: this process for a live run (the trainer is a thread
    here); for a watched run, its writer's process when it runs on this machine."""
    from ..sysstats import SystemSampler

    pid = None
    if source.kind == "watch" and source.run_dir is not None:
        from engine.rundir import RunDir

        owner = RunDir(source.run_dir).lock_owner()
        if owner is not None and owner.alive and owner.pid:
            pid = owner.pid
    return SystemSampler(pid)
