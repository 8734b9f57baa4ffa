"""``cifar-tui ctl RUN COMMAND``: steer a running training from any terminal, for scripts.

Sends one command over the run's control channel (:mod:`engine.control`), then
follows the run's ``metrics.jsonl`` until the event that confirms it (as the
command table says, :mod:`engine.commands`: a ``StateChanged``, a manual
``CheckpointSaved``, a ``MixupChanged``, an ``LrChanged``, the final ``RunFinished``)
or refuses it (``CommandRefused``) and prints one line. The commands, their words and
their usage are the table's.

Exit codes: 0 confirmed (or nothing to do: already paused...), 1 the run is not
training, refused the command or ended first, 2 bad arguments, 124 no
confirmation in time. No torch here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from engine import commands
from engine import events as ev
from engine.control import ControlError, send_command
from engine.rundir import RunDir
from engine.runs import run_status

from .cliargs import one_line
from .exitcodes import EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_USAGE  # noqa: F401

USAGE = commands.USAGE


def parse_command(words: list[str]) -> ev.Command:
    """The command ``words`` name. Raises ValueError with a one-line message."""
    return commands.parse_words(words)


def _say(line: str) -> None:
    print(line, flush=True)


def _error(line: str, code: int) -> int:
    print(f"error: {one_line(line)}", file=sys.stderr, flush=True)
    return code


def run_ctl(run_path: Path, command: ev.Command, timeout: float = 30.0) -> int:
    """Send ``command`` to the run in ``run_path`` and wait for its confirmation."""
    run = RunDir(run_path)
    name = run.run_id
    status, reason = run_status(run)
    if status != "running":
        hint = f"; continue it with: cifar-tui train --resume {run.path}" if status in ("interrupted", "stopped", "pruned") else ""
        return _error(f"{name} is not training: it is {status} ({reason}){hint}", EXIT_REFUSED)
    early = _nothing_to_do(run, command)
    if early is not None:
        return early
    from .bridge import MetricsFollower

    follower = MetricsFollower(run.metrics_path).skip_to_end()
    deadline = time.monotonic() + timeout
    try:
        send_command(run.path, command, timeout=max(0.0, min(timeout, 30.0)))
    except ControlError as e:
        return _error(f"{name}: {e}", EXIT_REFUSED)
    return _confirm(run, command, follower, deadline, timeout)


def _nothing_to_do(run: RunDir, command: ev.Command) -> Optional[int]:
    """Answer at once when the run's state already says so (a pause of a paused run would
    have no event to wait for) or the command cannot work on this run."""
    state = _current_state(run)
    world = run.read_config().get("world_size")
    spec = commands.spec_for(command)
    if not spec.torchrun and isinstance(world, int) and world > 1:
        return _error(commands.torchrun_refusal(spec, world), EXIT_REFUSED)
    if state == "stopping":
        return _error(f"{run.run_id} is already stopping", EXIT_REFUSED)
    if isinstance(command, ev.Pause) and state == "paused":
        _say(f"{run.run_id} is already paused")
        return EXIT_OK
    if isinstance(command, ev.Resume) and state == "running":
        _say(f"{run.run_id} is not paused: it is training")
        return EXIT_OK
    return None


def _current_state(run: RunDir) -> Optional[str]:
    for d in reversed(run.last_events()):
        if d.get("event") == "StateChanged" and isinstance(d.get("state"), str):
            return d["state"]
        if d.get("event") == "RunStarted":
            return "starting"
    return None


def _confirm(run: RunDir, command: ev.Command, follower, deadline: float, timeout: float) -> int:
    name = run.run_id
    next_look = time.monotonic() + 1.0
    gone = False  # the run was seen not training: one more read (its last events precede the lock's release)
    while True:
        for e in follower.poll():
            if isinstance(e, ev.Warning) and not isinstance(e, ev.CommandRefused):
                print(f"warning: {one_line(e.message)}", file=sys.stderr, flush=True)
            verdict = commands.confirms(command, e)
            if verdict is True:
                _say(commands.describe(name, command, e))
                return EXIT_OK
            if verdict is False:
                return _error(_refused(name, e), EXIT_REFUSED)
        now = time.monotonic()
        if now >= next_look:
            next_look = now + 1.0
            status, reason = run_status(run)
            if status != "running" and gone:
                return _error(f"{name} ended without confirming: it is {status} ({reason})", EXIT_REFUSED)
            gone = status != "running"
        if now >= deadline:
            return _error(f"no confirmation from {name} within {timeout:g}s; the command was delivered and "
                          "takes effect between two steps (is a validation running?): look with cifar-tui watch",
                          EXIT_TIMEOUT)
        time.sleep(0.1)


def _refused(name: str, e: ev.Event) -> str:
    if isinstance(e, ev.RunFinished):
        if e.outcome == "failed":
            return f"{name} failed: {e.reason}"
        return f"{name} finished ({e.outcome}: {e.reason}) before the command took effect"
    if isinstance(e, ev.CommandRefused):
        return f"{name}: {e.message}"
    return f"{name} refused the command"
