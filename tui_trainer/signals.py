"""Stop signals: which ones stop a run, what the run says about them, how they are caught.

Shared by the headless runner (:mod:`tui_trainer.headless`) and the app
(:mod:`tui_trainer.app`). A stop signal never kills a training at once: the
handler asks the trainer for a ``Stop(save=True)`` with the signal's reason,
and the process exits with ``128 + the signal`` once the checkpoint is written
(:func:`tui_trainer.exitcodes.exit_for_signal`).

* headless: Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed);
* the app: SIGTERM and SIGHUP (Ctrl+C is a key there: it quits the app).

After a hang-up the terminal is gone: a write to it fails or blocks, so the
standard streams are pointed at /dev/null (:func:`to_dev_null`).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Iterable, Optional

from engine import events as ev

STOP_REASONS = {
    signal.SIGINT: "stopped by Ctrl+C (SIGINT)",
    signal.SIGTERM: "stopped by SIGTERM",
    signal.SIGHUP: "stopped because the terminal closed (SIGHUP)",
}
HEADLESS_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
APP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)  # Ctrl+C is the app's quit key
APP_CLOSED_REASON = "stopped because the app closed"

Handler = Callable[[int, object], None]


def stop_reason(signum: Optional[int], default: str = "stopped by a signal") -> str:
    """What a run stopped by ``signum`` says (``default`` for no signal or another one)."""
    return STOP_REASONS.get(signum or 0, default)  # type: ignore[call-overload]


def stop_command(signum: int) -> ev.Stop:
    """The command a stop signal sends: stop with a checkpoint, saying why."""
    return ev.Stop(save=True, reason=stop_reason(signum))


class StopSignals:
    """Install ``handler`` for ``signals`` while inside the ``with`` block, then put the old
    handlers back. Only the main thread can install handlers: elsewhere (or when not
    ``enabled``) nothing is installed."""

    def __init__(self, handler: Handler, signals: Iterable[int], *, enabled: bool = True) -> None:
        self.handler = handler
        self.signals = tuple(signals)
        self.enabled = enabled
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old.clear()


def to_dev_null(fds: Iterable[int] = (0, 1, 2)) -> None:
    """Point these file descriptors at /dev/null (the terminal went away)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in fds:
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
