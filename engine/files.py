"""Writing files so that a crash never leaves a half-written file under a real name.

Every write of the engine goes through :func:`atomic_write_bytes`: the content
goes to a temporary file beside the target (``.NAME.tmp-PID``), is fsynced, and
is renamed into place; the folder is fsynced too. A process killed at any
moment leaves either the old file or the new one, plus at worst a temporary
file, which the next write of the same file removes (and
:class:`engine.rundir.RunLock` when it next takes the run).

No torch here: the CLI and the run catalogue use it without paying torch's
import time.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
from collections import deque
from pathlib import Path
from contextlib import contextmanager
from typing import Any, BinaryIO, Callable, Iterator, Optional

TEMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The temporary name a write of ``path`` by this process uses."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


PID_MAX = 1 << 22  # Linux's largest pid (/proc/sys/kernel/pid_max cannot exceed it)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running on this machine (not a zombie)? A pid that names no
    single process (0, negative: a process group or every process; beyond any pid) is not."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    """A killed child that its parent has not reaped yet still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    try:
        return stat[stat.rindex(b")") + 2:][:1] != b"Z"
    except ValueError:
        return True


def remove_stale_temp_files(path: Path) -> int:
    """Remove the temporary files of ``path`` (``.NAME.tmp-PID``) whose writer is gone (a
    process killed mid-write on this machine). Returns how many were removed."""
    removed = 0
    try:
        found = list(path.parent.glob(f".{glob.escape(path.name)}{TEMP_MARK}*"))
    except OSError:
        return 0
    for tmp in found:
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield the temporary path to fill; on success rename it to ``path`` (and fsync the
    folder), on any failure remove it and re-raise. Temporary files of ``path`` left by a
    writer killed earlier are removed first (they may be as large as a checkpoint)."""
    remove_stale_temp_files(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename."""
    with _replacing(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_json(path: str | Path, data: Any) -> None:
    text = json.dumps(data, indent=2, default=str, allow_nan=True) + "\n"
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def atomic_link(src: Path, dst: Path) -> None:
    """Put the content of ``src`` at ``dst`` atomically (a hard link where the file system
    allows it, else a copy), replacing what ``dst`` held."""
    with _replacing(Path(dst)) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def is_regular_file(path: Path) -> bool:
    """A regular file (not a FIFO, socket or device, which would block or never end)."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class BackgroundWriter:
    """Runs write jobs one at a time, in the order given, in a thread of its own, so that the
    caller goes on while files are written and fsynced.

    At most ``depth`` jobs are unfinished at once: :meth:`submit` waits beyond that, so a
    disk slower than the checkpoints holds the caller back instead of copies piling up in
    memory. What a job returned (or raised) comes back to the caller's thread, in order, as
    ``(tag, value, error)``: :meth:`finished` (what is done now, without waiting) and
    :meth:`wait` (everything submitted so far). A job should catch its own expected errors;
    ``error`` is for the unexpected.
    """

    def __init__(self, depth: int = 2, name: str = "cifar-tui-writer"):
        self._cond = threading.Condition()
        self._jobs: deque = deque()
        self._done: deque = deque()
        self._unfinished = 0
        self._depth = max(1, depth)
        self._name = name
        self._thread: Optional[threading.Thread] = None
        self._closing = False

    @property
    def ready(self) -> bool:
        """Results are waiting (a cheap check, made between training steps)."""
        return bool(self._done)

    @property
    def busy(self) -> bool:
        return self._unfinished > 0

    def submit(self, job: Callable[[], Any], tag: Any = None) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the writer is closed")
            while self._unfinished >= self._depth:
                self._cond.wait()
            self._jobs.append((job, tag))
            self._unfinished += 1
            if self._thread is None:
                # a daemon: a process that must exit at once (a second Ctrl+C) is not held
                # up by a write; the atomic write leaves the old file or the new one
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    return
                job, tag = self._jobs.popleft()
            value, error = None, None
            try:
                value = job()
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                error = e
            with self._cond:
                self._done.append((tag, value, error))
                self._unfinished -= 1
                self._cond.notify_all()

    def finished(self) -> list[tuple[Any, Any, Optional[BaseException]]]:
        with self._cond:
            out = list(self._done)
            self._done.clear()
        return out

    def wait(self) -> list[tuple[Any, Any, Optional[BaseException]]]:
        """Block until every submitted job has finished; their results."""
        with self._cond:
            while self._unfinished:
                self._cond.wait()
        return self.finished()

    def close(self) -> list[tuple[Any, Any, Optional[BaseException]]]:
        """Finish what was submitted, stop the thread; the results not collected yet."""
        out = self.wait()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        return out
