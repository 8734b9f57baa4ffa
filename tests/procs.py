"""Helpers for tests that run cifar-tui: its command line in this process (``invoke``,
``error_line``), and in real processes: a small training command, waiting on a run
folder's events, and a pseudo-terminal that can go away."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine import control
from engine.rundir import RunDir, read_metrics

ROOT = Path(__file__).resolve().parents[1]
# a run small enough for a 2-core machine; add "--epochs N" (500: it trains until stopped)
TRAIN = ["train", "--data", "synthetic", "--preset", "tiny", "--width", "0.125", "--subset", "256",
         "--val-size", "64", "--batch-size", "64"]


def invoke(*args, **kw):
    """``cifar-tui ARGS...`` in this process (typer's runner); an argument may be a path or a number."""
    from typer.testing import CliRunner

    from tui_trainer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], **kw)


def error_line(result, code: int = 1) -> str:
    """The refusal of a command: exit ``code``, no traceback, exactly one ``error:`` line (returned)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def env_for(tmp_path) -> dict:
    return dict(os.environ, CIFAR_TUI_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def events_of(run: Path) -> list[dict]:
    return read_metrics(RunDir(run).metrics_path)[0]


def assert_stopped_from_another_terminal(run: Path) -> dict:
    """The run's last line is a RunFinished "stopped" by a control command, with last.pt saved
    and the lock and control file gone. Returns that final event."""
    final = events_of(run)[-1]
    assert final["event"] == "RunFinished" and final["outcome"] == "stopped", final
    assert final["reason"].startswith(control.REMOTE_STOP_REASON), final["reason"]
    rd = RunDir(run)
    assert rd.last_checkpoint.is_file() and final["last_checkpoint"] == str(rd.last_checkpoint)
    assert not rd.control_path.exists() and not rd.lock_path.exists()
    return final


def start_trainer(tmp_path, *before: str, epochs: int = 500, **popen) -> tuple[subprocess.Popen, Path]:
    """``cifar-tui [before...] train ... --epochs N`` in its own process (``before``: e.g.
    ``--no-ui``); returns it and its run folder once it has taken its first steps."""
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-m", "tui_trainer", *before, *TRAIN, "--epochs", str(epochs),
                          "--runs-dir", str(runs)], cwd=ROOT, env=env_for(tmp_path), **popen)
    wait_for(lambda: runs.exists() and any(runs.iterdir()) or p.poll() is not None, "the run folder")
    assert p.poll() is None, "the trainer exited"
    (run,) = list(runs.iterdir())
    wait_for(lambda: any(d["event"] == "StepDone" for d in events_of(run)), "the first steps")
    return p, run


class Terminal:
    """A pseudo-terminal for a process, read like a terminal reads it; :meth:`close` is the
    terminal going away (nothing holds its master side any more)."""

    def __init__(self, rows: int = 30, cols: int = 100) -> None:
        import fcntl
        import pty
        import struct
        import termios
        import threading

        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import select

        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    if not os.read(self.master, 65536):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)


def hang_up_in_a_closed_terminal(tmp_path, *before: str) -> tuple[Path, list[dict]]:
    """A trainer (``before``: e.g. ``--no-ui``) in a pseudo-terminal that goes away, then
    SIGHUP, as when an SSH session or a tmux window closes. Asserts the exit code 129
    and returns the run folder and its events."""
    import signal

    term = Terminal()
    try:
        p, run = start_trainer(tmp_path, *before, stdin=term.slave, stdout=term.slave, stderr=term.slave,
                               start_new_session=True)
    finally:
        os.close(term.slave)
    try:
        term.close()  # the terminal goes away, then the hang-up
        p.send_signal(signal.SIGHUP)
        assert p.wait(60) == 129
    finally:
        if p.poll() is None:
            p.kill()
    return run, events_of(run)


TINY_SPEC = """
[sweep]
name = "{name}"
preset = "tiny"
pruner = "none"
sampler = "random"
[fixed]
data = "synthetic"
width = 0.0625
subset = {subset}
val_size = {val_size}
epochs = {epochs}
batch_size = {batch}
{more}
[search]
{search}
"""


def tiny_spec(name: str, *, epochs: int = 2, subset: int = 200, val_size: int = 64, batch: int = 32, more: str = "",
              search: str = "lr = { low = 0.01, high = 0.2, log = true }") -> str:
    """A tiny sweep's spec text (synthetic data, width 0.0625, random sampler, no pruner):
    ``more`` extra [fixed] lines, ``search`` its [search] lines."""
    import textwrap

    return textwrap.dedent(TINY_SPEC).format(name=name, subset=subset, val_size=val_size, epochs=epochs, batch=batch,
                                             more=textwrap.dedent(more).strip(),
                                             search=textwrap.dedent(search).strip())
