"""Between the engine and the dashboard.

The engine calls its listeners from the training thread and must never wait for
the UI, so the listener here only appends to a thread-safe deque. The dashboard
drains that deque from a Textual timer a few times a second, applies all the
events at once and redraws what changed: however fast the steps come, the UI
does a bounded amount of work.

Three event sources share one small interface, :class:`EventSource`:

* :class:`LiveSource`: a :class:`engine.trainer.Trainer` started from a Textual
  thread worker; it also carries the commands the UI sends.
* :class:`WatchSource`: a :class:`MetricsFollower` tailing another process's
  ``metrics.jsonl``; :class:`AttachSource` also sends the dashboard's commands
  to that process over the run's control channel (:mod:`engine.control`).
* :class:`StaticSource`: a fixed list of events (replays, snapshot tests).

Nothing here imports torch or textual at import time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

from engine import events as ev
from engine.rundir import MetricsFollower  # noqa: F401  (the dashboard's tail of metrics.jsonl)


class CommandRefused(Exception):
    """A command could not be delivered (e.g. the attached run ended meanwhile). One line."""


class EventSource(Protocol):
    """What the dashboard reads events from and sends commands to."""

    kind: str  # live | watch | replay
    can_command: bool  # keys send commands now (a live run; an attached run that is training)
    run_dir: Optional[Path]

    @property
    def active(self) -> bool:
        """A run this app drives is still in its thread (quitting must wait for it)."""
        ...

    def poll(self) -> list[ev.Event]: ...

    def send(self, command: ev.Command) -> None:
        """Deliver a command (its effect shows up later as events); raises
        :class:`CommandRefused` when it cannot be delivered."""
        ...

    def liveness(self) -> Optional[str]:
        """For a run written by another process: its catalogue status (running,
        interrupted, ...); None when the source cannot tell or need not."""
        ...


class EventQueue:
    """A thread-safe, never-blocking mailbox from the training thread to the UI."""

    def __init__(self) -> None:
        self._q: deque[ev.Event] = deque()

    def put(self, event: ev.Event) -> None:  # called from the training thread
        self._q.append(event)

    __call__ = put

    def drain(self, limit: Optional[int] = None) -> list[ev.Event]:
        out: list[ev.Event] = []
        q = self._q
        while q and (limit is None or len(out) < limit):
            try:
                out.append(q.popleft())
            except IndexError:  # pragma: no cover - raced with another drainer
                break
        return out

    def __len__(self) -> int:
        return len(self._q)


# --------------------------------------------------------------------------- live


class LiveSource:
    """One training run in a background thread, and the commands sent to it.

    :meth:`start` runs :meth:`_work` in a Textual thread worker; the worker builds
    the :class:`~engine.trainer.Trainer` (importing torch there, off the UI thread),
    starts the trainer's own daemon thread and waits for it. Commands sent before
    the trainer exists are held and delivered as soon as it does.
    """

    kind = "live"
    can_command = True

    def __init__(
        self,
        config: Any = None,
        *,
        resume: Optional[str] = None,
        resume_overrides: Optional[dict] = None,
        trainer_factory: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.resume_overrides = resume_overrides
        self.trainer_factory = trainer_factory
        self.queue = EventQueue()
        self.trainer: Any = None
        self.sent: list[ev.Command] = []  # every command the UI sent, in order
        self.outcome: Optional[str] = None  # RunFinished's outcome, or "abandoned"
        self.run_dir: Optional[Path] = None
        self.best: Optional[ev.CheckpointSaved] = None  # the last best.pt written (for the summary on leaving)
        self.params: Optional[int] = None  # the trainable parameter count (for the summary on leaving)
        self.finished: Optional[ev.RunFinished] = None
        self.worker: Any = None
        self._pending: list[ev.Command] = []
        self._lock = threading.Lock()
        self._started = False
        self._done = threading.Event()
        self._abandon = threading.Event()

    # ------------------------------------------------------------- lifecycle
    def start(self, host: Any) -> None:
        """Start training in a thread worker of ``host`` (a Textual app or widget)."""
        if self._started:
            return
        self._started = True
        self.worker = host.run_worker(self._work, name="trainer", group="trainer", thread=True, exit_on_error=False)

    @property
    def active(self) -> bool:
        """True from :meth:`start` until the training thread has ended."""
        return self._started and not self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    def abandon(self) -> None:
        """Stop waiting for the trainer (its daemon thread dies with the process)."""
        self._abandon.set()

    def finish(self, stop: ev.Stop, timeout: float) -> bool:
        """The app is gone: stop the trainer (saving) and wait for its final event. Waits
        for the trainer's own thread, which outlives a cancelled worker. True if it ended."""
        with self._lock:
            trainer = self.trainer
        if trainer is None:
            return self.wait(timeout)
        trainer.send(stop)
        trainer.join(timeout)
        return not trainer.alive

    def _work(self) -> Optional[str]:
        try:
            try:
                factory = self.trainer_factory
                if factory is None:
                    from engine.trainer import Trainer as factory  # torch is imported here, off the UI thread
                trainer = factory(
                    self.config, listeners=[self.queue.put], resume=self.resume, resume_overrides=self.resume_overrides
                )
            except Exception as e:  # e.g. torch missing or a bad argument: show it, don't crash the UI
                msg = f"{type(e).__name__}: {e}".strip()
                self._synthesise_failure(f"could not start training ({msg})")
                return self.outcome
            with self._lock:
                self.trainer = trainer
                pending, self._pending = self._pending, []
            for cmd in pending:
                trainer.send(cmd)
            thread = trainer.start()
            worker = _current_worker()
            while thread.is_alive():
                if worker is not None and worker.is_cancelled and not self._abandon.is_set():
                    # the app is closing without the graceful path: ask for a saved stop, don't wait
                    trainer.send(ev.Stop(save=True))
                    self._abandon.set()
                if self._abandon.is_set():
                    self.outcome = "abandoned"
                    return self.outcome
                thread.join(0.1)
            result = getattr(trainer, "result", None)
            if isinstance(result, ev.RunFinished):
                self.outcome = result.outcome
            else:  # the thread died without its final event (should not happen)
                self._synthesise_failure("the training thread ended unexpectedly")
            return self.outcome
        finally:
            self._done.set()

    def _synthesise_failure(self, message: str) -> None:
        self.queue.put(ev.Failed(message=message))
        self.queue.put(ev.StateChanged(state="failed", reason=message))
        self.queue.put(ev.RunFinished(outcome="failed", reason=message))
        self.outcome = "failed"

    # -------------------------------------------------------------- protocol
    def send(self, command: ev.Command) -> None:
        """Send a command to the engine (held until the trainer exists)."""
        self.sent.append(command)
        with self._lock:
            trainer = self.trainer
            if trainer is None:
                self._pending.append(command)
                return
        trainer.send(command)

    def poll(self) -> list[ev.Event]:
        events = self.queue.drain()
        for e in events:
            if isinstance(e, ev.RunStarted) and e.run_dir:
                self.run_dir = Path(e.run_dir)
                self.params = e.params
            elif isinstance(e, ev.CheckpointSaved) and e.kind == "best":
                self.best = e
            elif isinstance(e, ev.RunFinished):
                self.finished = e
        return events

    def liveness(self) -> Optional[str]:
        return None  # this process is the writer


def _current_worker() -> Any:
    try:
        from textual.worker import get_current_worker

        return get_current_worker()
    except Exception:  # not inside a Textual worker (e.g. a plain thread in a test)
        return None


# -------------------------------------------------------------------------- watch


class WatchSource:
    """Events of a run written by another process, read from its ``metrics.jsonl``."""

    kind = "watch"
    can_command = False
    active = False  # nothing here to stop or wait for
    LIVENESS_SECONDS = 1.0  # how often the writer's lock is looked at

    def __init__(self, run_dir: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        from engine.rundir import RunDir

        self.run_dir = Path(run_dir)
        self.follower = MetricsFollower(RunDir(self.run_dir).metrics_path)
        self._clock = clock
        self._checked_at: Optional[float] = None
        self._status: Optional[str] = None

    def poll(self) -> list[ev.Event]:
        return self.follower.poll()

    def liveness(self) -> Optional[str]:
        """The run's catalogue status, looked up at most once a second (a stat and a
        small read: the lock and the tail of the metrics file)."""
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self.LIVENESS_SECONDS:
            from engine.rundir import RunDir
            from engine.runs import run_status

            self._checked_at = now
            self._status = run_status(RunDir(self.run_dir))[0]
        return self._status

    def send(self, command: ev.Command) -> None:  # pragma: no cover - the UI hides commands when watching
        raise CommandRefused("a watched run belongs to another process; it takes no commands")


class AttachSource(WatchSource):
    """A run written by another process, attached: its events as :class:`WatchSource`
    reads them, and the dashboard's commands sent to it over the run's control channel.
    Commands are offered while the run is training and its channel answers (looked at
    with the liveness, at most once a second). Never takes the run's lock; quitting
    leaves the run training."""

    def __init__(self, run_dir: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(run_dir, clock)
        self._channel_checked: Optional[float] = None
        self._channel_ok = False

    @property
    def can_command(self) -> bool:  # type: ignore[override]
        status = self.liveness()
        if status != "running":
            return False
        if self._channel_checked != self._checked_at:  # a fresh liveness: look at the channel too
            from engine.control import channel_problem

            self._channel_checked = self._checked_at
            self._channel_ok = channel_problem(self.run_dir) is None
        return self._channel_ok

    def send(self, command: ev.Command) -> None:
        from engine.control import ControlError, send_command

        try:
            send_command(self.run_dir, command)
        except ControlError as e:
            self._checked_at = None  # look again at the next tick
            raise CommandRefused(str(e)) from None


class StaticSource:
    """A fixed list of events, delivered on the first poll (replays and snapshot tests)."""

    kind = "replay"
    can_command = False
    active = False

    def __init__(self, events: Iterable[ev.Event], run_dir: str | Path | None = None) -> None:
        self._events = list(events)
        self.run_dir = Path(run_dir) if run_dir else None

    def poll(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    def send(self, command: ev.Command) -> None:  # pragma: no cover
        raise RuntimeError("a replay takes no commands")

    def liveness(self) -> Optional[str]:
        return None
