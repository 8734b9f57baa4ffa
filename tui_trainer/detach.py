"""Detached runs: training in a background process of its own that outlives the terminal.

The launcher. ``cifar-tui train --detach ...`` (:func:`tui_trainer.console.start_from_cli`)
and the start screen's Detach switch call :func:`launch`: it chooses the run folder,
starts ``python -m tui_trainer.detached_run SPEC_FILE`` in a new session (``setsid``: no
controlling terminal, so closing the terminal or the SSH connection sends it no
SIGHUP), with stdin from /dev/null and stdout/stderr appended to the run folder's log
(:attr:`RunDir.log_path`), and waits until the run has started (its ``RunStarted``
event) or the child has failed, whose one-line error it reports. The child
(:mod:`tui_trainer.detached_run`) trains headless in that folder; other terminals
steer it over its control channel (``cifar-tui ctl``, ``cifar-tui watch``).

SPEC_FILE is the run folder's :attr:`RunDir.spec_path`, owner-only JSON:
``{"config": TrainConfig as a dict | null, "resume": path | null, "resume_overrides":
dict | null, "run_dir": path}``, written by :func:`launch` and read back (then removed)
by :func:`read_spec`. The settings travel in a file, not on the command line, which
every user of the machine can read in ``ps``.

No torch here (the child imports it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from engine.resolve import ResolveError, resolve_checkpoint
from engine.rundir import RunDir, RunDirError, resume_target

STARTUP_WAIT_SECONDS = 600.0  # loading the data the first time may mean a download
CHILD_MODULE = "tui_trainer.detached_run"  # python -m CHILD_MODULE SPEC_FILE: the run's own process


class DetachError(Exception):
    """The background run could not be started. One line, for the user."""


@dataclass(frozen=True)
class Launched:
    run: RunDir
    pid: int
    started: bool  # its RunStarted was seen (False: still loading when the wait ran out)
    note: Optional[str] = None  # e.g. why a resumed run continues in a new folder


def launch(config: Any = None, *, resume: Optional[str] = None, resume_overrides: Optional[dict] = None,
           wait: float = STARTUP_WAIT_SECONDS, tick: Optional[Callable[[], None]] = None) -> Launched:
    """Start a detached run and wait until it trains (or fails: :class:`DetachError`)."""
    try:
        run, note, created = _target(config, resume, resume_overrides)
    except RunDirError as e:
        raise DetachError(str(e)) from None
    start = _size(run.metrics_path)
    spec = {"config": config.to_dict() if config is not None else None,
            "resume": str(Path(resume).expanduser().resolve()) if resume else None,
            "resume_overrides": resume_overrides, "run_dir": str(run.path.resolve())}
    try:
        write_spec(run.spec_path, spec)
        log = open(run.log_path, "ab")
    except OSError as e:
        raise DetachError(f"cannot write in {run.path} ({e.strerror or e})") from None
    with log:
        log.write(f"--- cifar-tui detached run, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(run.spec_path.resolve())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    started = _wait_started(child, run, start, wait, tick)
    if child.poll() is not None and not started:
        run.spec_path.unlink(missing_ok=True)  # (a child that died before reading it)
        message = _error_line(run.log_path, child.returncode)
        if created:
            _remove_unstarted(run)
        raise DetachError(message)
    return Launched(run=RunDir(run.path.resolve()), pid=child.pid, started=started, note=note)


def _target(config: Any, resume: Optional[str], overrides: Optional[dict]) -> tuple[RunDir, Optional[str], bool]:
    """(the run folder, a note, whether it was made here). A new run gets a new folder; a
    resumed one the folder the trainer would choose (:func:`engine.rundir.resume_target`)."""
    if resume is None:
        return RunDir.create(config.runs_dir, config.preset), None, True
    try:
        ckpt = resolve_checkpoint(resume, "resume", (overrides or {}).get("runs_dir"))
    except ResolveError as e:
        raise DetachError(f"--resume {e}") from None
    summary = RunDir.read_summary(ckpt)
    step = summary.get("global_step") if isinstance(summary.get("global_step"), int) else 0
    preset = summary.get("preset") if isinstance(summary.get("preset"), str) else "run"
    runs_dir = (overrides or {}).get("runs_dir")
    own = RunDir.of_checkpoint(ckpt)
    target = resume_target(ckpt, step, runs_dir, preset)
    return target.run, target.note, own is None or target.run != own


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _wait_started(child: subprocess.Popen, run: RunDir, offset: int, wait: float,
                  tick: Optional[Callable[[], None]]) -> bool:
    """Until the run's metrics show a RunStarted written after ``offset``, the child exits,
    or ``wait`` seconds pass. True once started."""
    deadline = time.monotonic() + wait
    seen = offset
    while time.monotonic() < deadline:
        size = _size(run.metrics_path)
        if size > seen:
            with open(run.metrics_path, "rb") as fh:
                fh.seek(offset)
                if b'"event":"RunStarted"' in fh.read():
                    return True
            seen = size
        if child.poll() is not None:
            return False
        if tick is not None:
            tick()
        time.sleep(0.1)
    return False


def _error_line(log: Path, code: Optional[int]) -> str:
    """What the failed child said last: its ``error:`` line, else its last line."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, _size(log) - 16384))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    last = lines[-1] if lines and not lines[-1].startswith("---") else ""
    return f"the background run exited at once (code {code})" + (f": {last}" if last else "")


def _remove_unstarted(run: RunDir) -> None:
    """Remove a folder made for a run that never started (its log, an empty checkpoints/)."""
    try:
        run.log_path.unlink(missing_ok=True)
        run.spec_path.unlink(missing_ok=True)
        run.checkpoints_dir.rmdir()
        run.path.rmdir()
    except OSError:
        pass  # something else is in it: keep it


SPEC_LIMIT = 1 << 20  # bytes: a spec is a config and two paths, a few KiB


def write_spec(path: Path, spec: dict) -> None:
    """The spec, readable by its owner only; never through a link left at ``path``."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)


def _read_spec_file(path: str) -> str:
    """The text of a spec file (a small regular file, not through a link); removed once
    read (config.json keeps the settings)."""
    from engine.safeio import read_bytes

    raw = read_bytes(path, SPEC_LIMIT)
    Path(path).unlink(missing_ok=True)
    return raw.decode("utf-8")


def read_spec(argv: list[str]) -> dict:
    """The child's side of SPEC_FILE (its first argument): ``config`` as a validated
    :class:`~engine.config.TrainConfig` or None, and the rest as written. Raises
    :class:`DetachError` when it is not a spec of :func:`launch`."""
    from engine.config import ConfigError, TrainConfig

    try:
        spec = json.loads(_read_spec_file(argv[0]))
        config = TrainConfig.from_dict(spec["config"]).validate() if spec.get("config") else None
    except OSError as e:
        raise DetachError(f"a detached run needs its settings from cifar-tui train --detach "
                          f"({argv[0]}: {e.strerror or e})") from None
    except (IndexError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as e:
        raise DetachError(f"a detached run needs its settings from cifar-tui train --detach ({e})") from None
    return {"config": config, "resume": spec.get("resume"), "resume_overrides": spec.get("resume_overrides"),
            "run_dir": spec.get("run_dir")}
