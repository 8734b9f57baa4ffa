"""The Textual app: screens, bindings, command palette, and the entry points.

Entry points (called by :mod:`tui_trainer.cli`), each returning an exit code:

* :func:`run_start_app` - ``cifar-tui``: the start screen (new run form, earlier runs);
* :func:`run_train_app` - ``cifar-tui train ...``: the dashboard, training at once;
* :func:`run_watch_app` - ``cifar-tui watch RUN_DIR``: the dashboard attached to a
  run that another process writes (commands go over the run's control channel;
  ``q`` detaches and the run goes on);
* :func:`run_sweep_app` - ``cifar-tui sweep SPEC.toml``: the Sweep screen, training
  the sweep's trials (also opened from the start screen's Sweep form).

Exit codes: 0 ok (finished, stopped, or just watching), 1 the training failed,
2 bad arguments, 130 quit without waiting for a running trainer to save, 129 / 143
the terminal closed (SIGHUP) / SIGTERM: the run was stopped with a checkpoint.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from engine import events as ev

from .bridge import AttachSource, LiveSource, StaticSource
from .cliargs import one_line
from .exitcodes import EXIT_ABANDONED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_for_signal
from .messages import OpenBrowser, StartRun, StartSweep, WatchRun
from .screens import BrowserScreen, DashboardScreen, StartScreen
from .screens.dashboard import PALETTE_EXTRAS
from .screens.sweep import SweepScreen
from .signals import APP_CLOSED_REASON, APP_SIGNALS, StopSignals, stop_command, stop_reason, to_dev_null

DETACH_WAIT_SECONDS = 300.0  # how long the start screen waits for a detached run to start
SWEEP_SAVE_SECONDS = 120.0  # how long a closing app waits for a sweep's trial to save


class CifarTuiApp(App):
    """One app for the ways in: ``start``, ``train``, ``watch``, ``sweep`` (and ``replay``, ``browse``)."""

    TITLE = "cifar-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="Quit (a running training is stopped and saved first)"),
        Binding("ctrl+c", "quit", "Quit", show=False),
        Binding("question_mark", "toggle_keys", "Keys", show=False, tooltip="Show or hide the keys panel"),
        # escape first closes the keys panel; a screen's greyed-out escape says why it does nothing
        Binding("escape", "hide_keys", show=False, priority=True),
        Binding("escape", "explain_escape", show=False),
    ]

    def __init__(
        self,
        mode: str = "start",
        *,
        runs_dir: str | Path | None = None,
        config: Any = None,
        resume: Optional[str] = None,
        resume_overrides: Optional[dict] = None,
        run_dir: str | Path | None = None,
        events: Optional[Iterable[ev.Event]] = None,
        clock: Optional[Callable[[], float]] = None,
        trainer_factory: Optional[Callable[..., Any]] = None,
        sampler_factory: Optional[Callable[[], Any]] = None,
        sweep: Optional[tuple[Any, int]] = None,
    ) -> None:
        super().__init__()
        if mode not in ("start", "train", "watch", "replay", "browse", "sweep"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self._runs_dir = runs_dir
        self.config = config
        self.resume = resume
        self.resume_overrides = resume_overrides
        self.run_dir = Path(run_dir) if run_dir else None
        self.events = list(events) if events is not None else None
        self.clock = clock
        self.trainer_factory = trainer_factory
        self.sampler_factory = sampler_factory  # the dashboards' system-panel sampler (tests: fake readings)
        self.session: Optional[LiveSource] = None  # the one training run this app drives
        self.quitting = False
        self._quit_presses = 0
        self._abandoned = False
        self._saved_theme: Optional[str] = None
        self.signalled: Optional[int] = None  # SIGHUP or SIGTERM ended the app (see _SignalStop)
        self.sweep = sweep  # mode "sweep": (engine.trials.Sweep, the study's trial count)
        self.sweeps: list[Any] = []  # the sweeps this app trains (engine.trials.Sweep), one at a time

    # --------------------------------------------------------------- startup
    @property
    def runs_dir(self) -> Optional[Path]:
        """The runs folder given on the command line (None: the engine's default)."""
        return Path(self._runs_dir).expanduser() if self._runs_dir else None

    def on_mount(self) -> None:
        self._restore_theme()
        if self.mode == "start":
            self.push_screen(StartScreen(self.runs_dir))
        elif self.mode == "train":
            self.start_training(self.config, resume=self.resume, resume_overrides=self.resume_overrides)
        elif self.mode == "browse":
            self.push_screen(BrowserScreen(self.runs_dir))
        elif self.mode == "watch":
            assert self.run_dir is not None
            self.open_watch(self.run_dir)
        elif self.mode == "sweep":
            assert self.sweep is not None
            self.on_start_sweep(StartSweep(*self.sweep, can_go_back=False))
        else:
            self.push_screen(self._dashboard(StaticSource(self.events or [], run_dir=self.run_dir)))

    def start_training(self, config: Any, *, resume: Optional[str] = None, resume_overrides: Optional[dict] = None,
                       can_go_back: bool = False) -> LiveSource:
        """Start a run in a thread worker and show its dashboard."""
        if self.session is not None and self.session.active:
            self.notify("A run is already training; stop it first.", severity="error")
            return self.session
        session = LiveSource(config, resume=resume, resume_overrides=resume_overrides,
                             trainer_factory=self.trainer_factory)
        self.session = session
        self.push_screen(self._dashboard(session, can_go_back=can_go_back))
        session.start(self)
        return session

    def open_watch(self, run_dir: Path, *, can_go_back: bool = False) -> None:
        """The dashboard on a run another process writes: attached (its keys steer the run
        while it trains), never taking its lock."""
        self.push_screen(self._dashboard(AttachSource(run_dir), can_go_back=can_go_back))

    def start_detached(self, config: Any) -> None:
        """Start a run in its own background process, then attach to it."""
        self.notify("Starting the run in the background...", title="Detached run", timeout=10)
        self.run_worker(partial(self._launch_detached, config), name="detach", thread=True, exit_on_error=False)

    def _launch_detached(self, config: Any) -> None:  # in a thread worker
        from .detach import DetachError, launch

        try:
            launched = launch(config=config, wait=DETACH_WAIT_SECONDS)
        except DetachError as e:
            self.call_from_thread(self.notify, str(e), title="Could not start the run", severity="error",
                                  timeout=20, markup=False)
            return
        if not launched.started:
            self.call_from_thread(self.notify, f"The run is still starting in {launched.run.path}; open it from "
                                  "the list when it shows running.", title="Detached run", markup=False)
            return
        self.call_from_thread(self.open_watch, launched.run.path, can_go_back=True)

    def _dashboard(self, source: Any, can_go_back: bool = False) -> DashboardScreen:
        sampler = self.sampler_factory() if self.sampler_factory is not None else None
        return DashboardScreen(source, clock=self.clock, can_go_back=can_go_back, sampler=sampler)

    # -------------------------------------------------------------- messages
    def on_start_run(self, message: StartRun) -> None:
        if message.detach and message.config is not None:
            self.start_detached(message.config)
            return
        self.start_training(message.config, resume=message.resume, resume_overrides=message.resume_overrides,
                            can_go_back=message.can_go_back)

    def on_watch_run(self, message: WatchRun) -> None:
        self.open_watch(message.run_dir, can_go_back=message.can_go_back)

    def on_open_browser(self, message: OpenBrowser) -> None:
        self.push_screen(BrowserScreen(message.runs_dir, select=message.select))

    def on_start_sweep(self, message: StartSweep) -> None:
        if any(r.running for r in self.sweeps) or (self.session is not None and self.session.active):
            self.notify("A run or a sweep is already training here; stop it first.", severity="error")
            return
        self.sweeps.append(message.runner)
        self.push_screen(SweepScreen(message.runner, message.trials, can_go_back=message.can_go_back))

    def stop_sweeps(self, wait: float = 0.0) -> None:
        """Stop the sweeps still training (their trial saves a checkpoint, queued to resume)
        and wait up to ``wait`` seconds for them (from any thread)."""
        import time

        deadline = time.monotonic() + wait
        for runner in self.sweeps:
            if runner.running:
                runner.interrupt()
        while any(r.running for r in self.sweeps) and time.monotonic() < deadline:
            time.sleep(0.1)

    # ------------------------------------------------------------------ theme
    def _restore_theme(self) -> None:
        """The theme chosen last time (platformdirs' config folder), then remember changes."""
        from .settings import load_settings

        theme = load_settings().get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        self._saved_theme = self.theme
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    def _remember_theme(self, theme) -> None:
        from .settings import save_setting

        if theme.name != self._saved_theme:
            self._saved_theme = theme.name
            save_setting("theme", theme.name)

    # ------------------------------------------------------------------- keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "hide_keys":
            return bool(self.screen.query("HelpPanel"))
        if action == "explain_escape":
            return self._escape_blocked() is not None
        return True

    def _escape_blocked(self) -> Optional[str]:
        reason = getattr(self.screen, "back_blocked_reason", None)
        return reason() if callable(reason) else None

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_show_help_panel(self) -> None:
        """The keys panel (``?`` and the palette's "Keys"): the screen's own keys first, over
        the screen (:class:`~tui_trainer.widgets.keyhelp.KeysHelp`)."""
        from .widgets.keyhelp import KeysHelp

        if not self.screen.query("HelpPanel"):
            host = next(iter(self.screen.query(".-keys-host")), self.screen)
            host.mount(KeysHelp())

    # ------------------------------------------------------------------ alerts
    def alert(self, title: str, detail: str = "", *, error: bool = False) -> None:
        """Call the user back (a run ended): the terminal's bell, a toast, and a desktop
        notification where the terminal is known to show one (never required)."""
        self.bell()
        self.notify(detail or title, title=title, severity="error" if error else "information", timeout=20,
                    markup=False)
        sequence = desktop_notification(title, detail)
        driver = getattr(self, "_driver", None)  # (Textual offers no public way to write an escape sequence)
        if sequence and driver is not None:
            driver.write(sequence)

    def action_hide_keys(self) -> None:
        self.action_hide_help_panel()

    def action_explain_escape(self) -> None:
        reason = self._escape_blocked()
        if reason:
            self.notify(reason, severity="warning", timeout=6, markup=False)

    # ---------------------------------------------------------- command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # every key in the footer (and the few hidden extras) that is usable now, with its keys
        keys: dict[str, list[str]] = {}
        chosen: dict[str, tuple[Any, Any]] = {}
        for key, active in screen.active_bindings.items():
            binding, node = active.binding, active.node
            keys.setdefault(binding.action, []).append(self.get_key_display(binding))
            if node not in (screen, self) or not active.enabled:
                continue
            if (binding.show or binding.action in PALETTE_EXTRAS) and binding.action not in chosen:
                chosen[binding.action] = (binding, node)
        titles = set()
        mine = []
        for action, (binding, node) in chosen.items():
            title = binding.description or action.replace("_", " ").capitalize()
            titles.add(title)
            help_text = f"{binding.tooltip or title} (key: {', '.join(dict.fromkeys(keys[action]))})"
            mine.append(SystemCommand(title, help_text, partial(self.run_action, action, node)))
        for command in super().get_system_commands(screen):
            if command.title not in titles:
                yield command
        yield from mine

    # ------------------------------------------------------------------ quit
    async def action_quit(self) -> None:
        """Quit; a running training is first stopped with a checkpoint, and waited for."""
        sweep = next((s for s in self.screen_stack if isinstance(s, SweepScreen) and not s.finished), None)
        if sweep is not None:  # (its own q: the trial saves, then the app exits)
            sweep.action_quit_sweep()
            return
        session = self.session
        if session is None or not session.active:
            self.exit(return_code=self.exit_code())
            return
        self._quit_presses += 1
        if self._quit_presses == 1:
            self.quitting = True
            session.send(ev.Stop(save=True))
            self.notify("Stopping: saving a checkpoint, then quitting...", title="Quit", timeout=30)
            self.set_interval(0.1, self._exit_when_stopped)
        elif self._quit_presses == 2:
            self.notify("Still saving. Press q once more to quit without waiting (the last completed "
                        "checkpoint stays intact).", severity="warning", timeout=10)
        else:
            self._abandoned = True
            session.abandon()
            self.exit(return_code=EXIT_ABANDONED)

    def _exit_when_stopped(self) -> None:
        if self.session is not None and not self.session.active:
            for screen in self.screen_stack:  # show the last events (the save) before leaving
                if isinstance(screen, DashboardScreen):
                    screen.tick()
            self.exit(return_code=self.exit_code())

    def exit_code(self) -> int:
        if self._abandoned:
            return EXIT_ABANDONED
        if self.signalled is not None and (self.session is None or self.session.outcome != "failed"):
            return exit_for_signal(self.signalled)
        if self.session is None:
            return EXIT_OK
        return EXIT_FAILED if self.session.outcome == "failed" else EXIT_OK


# --------------------------------------------------------------------- entry points


def desktop_notification(title: str, body: str, env: Optional[dict] = None) -> Optional[str]:
    """The escape sequence that asks this terminal for a desktop notification: OSC 9
    (iTerm2, WezTerm, ghostty, kitty) or OSC 777 (VTE terminals, foot); None where no
    support is known, or inside tmux (which would drop it). The text is stripped of
    control characters and separators (a run id read from a file is data, not a command
    to the terminal)."""
    import os

    env = os.environ if env is None else env

    def clean(text: str) -> str:
        return "".join(c for c in text if c.isprintable() and c not in ";\x1b\x07\x9c")[:200]

    if env.get("TMUX"):
        return None
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm", "ghostty") or env.get("TERM") == "xterm-kitty":
        return f"\x1b]9;{clean(title)}{': ' + clean(body) if body else ''}\x07"
    if env.get("VTE_VERSION") or env.get("TERM", "").startswith("foot"):
        return f"\x1b]777;notify;{clean(title)};{clean(body)}\x07"
    return None


class _SignalStop:
    """SIGHUP (the terminal closed) and SIGTERM while the app runs (:data:`signals.APP_SIGNALS`).

    Textual installs nothing for them: by default the process would die at once and a
    training in it would be lost since its last checkpoint. Here the handler (a plain
    signal handler: it runs even while the UI thread is blocked) points stdin/stdout/
    stderr at /dev/null on a hang-up (the terminal is gone: a write to it would fail or
    block), asks the trainer for a saved stop, and asks the app to exit. A helper thread
    waits for the trainer's final event, then ends the process if the UI has not closed
    by itself (it can wedge writing to a terminal that is gone); the run is saved by then.
    """

    GRACE_SECONDS = 5.0

    def __init__(self, app: CifarTuiApp) -> None:
        self.app = app

    def __call__(self, signum: int, frame: object) -> None:
        import asyncio
        import threading

        app = self.app
        if app.signalled is not None:
            return  # a repeated hang-up: the stop is under way
        app.signalled = signum
        if signum == signal.SIGHUP:
            to_dev_null()
        stop = stop_command(signum)
        if app.session is not None and app.session.active:
            app.session.send(stop)
        app.stop_sweeps()
        app.quitting = True
        try:
            asyncio.get_running_loop().call_soon_threadsafe(partial(app.exit, return_code=exit_for_signal(signum)))
        except RuntimeError:  # the UI is not running (starting, or closing already)
            pass
        threading.Thread(target=self._leave_after_save, args=(stop,), name="cifar-tui-hangup", daemon=True).start()

    def _leave_after_save(self, stop: ev.Stop) -> None:
        import os
        import time

        if self.app.session is not None:
            self.app.session.finish(stop, 120)
        self.app.stop_sweeps(SWEEP_SAVE_SECONDS)
        time.sleep(self.GRACE_SECONDS)  # normally the process has ended meanwhile (and this thread with it)
        os._exit(self.app.exit_code())


def _run(app: CifarTuiApp) -> int:
    with StopSignals(_SignalStop(app), APP_SIGNALS):  # (still caught while waiting for the save below)
        try:
            app.run()
        finally:
            session = app.session
            if session is not None and not app._abandoned:
                # the app closed another way (a signal, the terminal went away, an error): the
                # trainer's thread still runs; stop it with a checkpoint and wait for it
                reason = stop_reason(app.signalled, APP_CLOSED_REASON)
                session.finish(ev.Stop(save=True, reason=reason), 120)
            app.stop_sweeps(SWEEP_SAVE_SECONDS)  # (a sweep's trial likewise)
    if app.session is not None and not app._abandoned and app.signalled != signal.SIGHUP:
        _print_summary(app.session)
    code = app.return_code
    if code is None or app.signalled is not None:
        code = app.exit_code()
    return code


def _print_summary(session: LiveSource) -> None:
    """The run this app trained, once the app has closed: as headless says it (the run
    folder, the best checkpoint, how to resume a stopped run)."""
    from rich.console import Console

    from .summary import print_summary

    session.poll()  # what the dashboard had not drawn yet (the final save, RunFinished)
    finished = session.finished or getattr(session.trainer, "result", None)
    if isinstance(finished, ev.RunFinished):
        print_summary(Console(highlight=False, soft_wrap=True), finished, str(session.run_dir or "") or None,
                      session.best, resume="cifar-tui train --resume", params=session.params)


def run_start_app(runs_dir: str | None = None) -> int:
    """``cifar-tui``: the start screen."""
    return _run(CifarTuiApp("start", runs_dir=runs_dir))


def run_train_app(config=None, resume: str | None = None, resume_overrides: dict | None = None) -> int:
    """``cifar-tui train ...``: the dashboard, training at once. ``config`` is None when resuming."""
    if config is None and resume is None:
        print("error: nothing to train: give a configuration or a checkpoint to resume", file=sys.stderr)
        return EXIT_USAGE
    return _run(CifarTuiApp("train", config=config, resume=resume, resume_overrides=resume_overrides))


def run_sweep_app(runner: Any, trials: int) -> int:
    """``cifar-tui sweep SPEC.toml``: the Sweep screen on ``runner`` (an
    :class:`engine.trials.Sweep`) until the user quits; 0, or 1 if the sweep failed."""
    return _run(build_sweep_app(runner, trials))


def build_sweep_app(runner: Any, trials: int) -> CifarTuiApp:
    return CifarTuiApp("sweep", sweep=(runner, trials), runs_dir=runner.runs_dir)


def run_browse_app(runs_dir: str | None = None) -> int:
    """``cifar-tui browse [RUNS_DIR]``: the checkpoint browser."""
    if runs_dir is not None:
        path = Path(runs_dir).expanduser()
        if not path.is_dir():
            print(f"error: {one_line(path)} is not a folder of runs; give the runs folder (or nothing for the default)",
                  file=sys.stderr)
            return EXIT_USAGE
    return _run(CifarTuiApp("browse", runs_dir=runs_dir))


def run_watch_app(run_dir: str) -> int:
    """``cifar-tui watch RUN_DIR``: attach to a run that another process writes."""
    from engine.rundir import RunDir
    from engine.runs import run_status

    path = Path(run_dir).expanduser()
    if not RunDir(path).metrics_path.is_file():
        print(f"error: {one_line(path)} has no metrics.jsonl; give a run folder (runs/<run-id>)", file=sys.stderr)
        return EXIT_USAGE
    code = _run(CifarTuiApp("watch", run_dir=path))
    if code == EXIT_OK and run_status(RunDir(path))[0] == "running":
        print(f"detached from {path.name}: it keeps training. Attach again with: cifar-tui watch {path}")
    return code
