"""The control channel: commands to a running trainer from other processes of its owner.

A trainer (headless, in the dashboard, detached, or rank 0 under torchrun) opens
``<run>/.control`` (:attr:`engine.rundir.RunDir.control_path`) when its run
starts and removes it when the run ends. Other processes of the same user on the
same machine (``cifar-tui ctl``, an attached dashboard, a script) append commands
to it; the trainer hands each one to :meth:`engine.trainer.Trainer.send`, so a
command from another terminal is applied between two steps exactly like a key
pressed in the dashboard, and its effect appears as the usual events in
``metrics.jsonl``. Why a file and not a socket or a FIFO: docs/control.md.

The file, one JSON object per line::

    {"channel": "cifar-tui-control", "version": 1, "pid": 4242, "host": "gpu1"}   <- written by the trainer
    {"command": "pause"}
    {"command": "mixup", "on": true}          (true, false, or null: back to the schedule)
    {"command": "resume"}  {"command": "save"}  {"command": "stop"}
    {"command": "lr", "peak": 0.05}  {"command": "lr", "factor": 0.5}

A message is data from a closed set, at most :data:`MAX_MESSAGE_BYTES` bytes: a
command word of the command table (:mod:`engine.commands`, which also parses and
encodes the messages) and its fields (a boolean or null, a finite number). Nothing
in it is a path, a file name or code; an unknown or malformed message is skipped
and reported as a ``Warning`` event, and training goes on. A command that cannot
take effect is refused by the trainer with a ``CommandRefused`` event.

Safety: the file is created by the trainer with mode 0600 in a run folder that
only its owner may write (the trainer removes group and other write bits), and
the trainer reads from its own open descriptor, so another user can neither
write to it nor swap it for a file of theirs. A sender checks that the file is a
private regular file of its own user whose header names the live process
holding the run's lock (a file left by a killed trainer is recognised as stale).

Cost to training: none per step. A daemon thread looks at the file's size a few
times a second (one ``fstat``) and reads only when it grew; the training loop
sees the commands in the queue it already checks between steps.

No torch here: the CLI and the dashboards send commands without importing it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import commands
from . import events as ev
from .commands import REMOTE_STOP_REASON, ChannelNotice, encode  # noqa: F401  (the wire is the table's)
from .rundir import RunDir

CHANNEL_NAME = "cifar-tui-control"
VERSION = 1
MAX_MESSAGE_BYTES = 256
POLL_SECONDS = 0.25  # how often the trainer's thread looks for new commands
READ_CHUNK = 64 * 1024  # at most this much is read per look (a flood is read over several looks)
REMOTE_STOP_REASON = "stopped from another terminal"


class ControlError(Exception):
    """A command that cannot be delivered, or a channel that cannot be opened. One line."""


class _NotOpenYet(ControlError):
    """The run holds its lock but its channel is not (yet) open: worth retrying briefly."""


def decode(raw: bytes) -> ev.Command:
    """The command a line carries (at most :data:`MAX_MESSAGE_BYTES`; the words and fields
    are the command table's). Raises ``ValueError`` saying what is wrong with it."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {len(raw)} bytes (the limit is {MAX_MESSAGE_BYTES})")
    return commands.decode(raw)


# --------------------------------------------------------------- engine side


class ControlChannel:
    """The trainer's end: creates the channel file and hands what arrives to ``deliver``
    (``Trainer.send``) from a daemon thread. Never raises once open; never blocks the
    trainer (``deliver`` only puts into a queue)."""

    def __init__(self, run: RunDir, deliver: Callable[[ev.Command], None], *,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.run = run
        self.deliver = deliver
        self.poll_seconds = poll_seconds
        self.received = 0  # valid commands handed over
        self.rejected = 0  # messages skipped
        self._fd: Optional[int] = None
        self._ino = 0
        self._offset = 0
        self._buf = b""
        self._skipping = False  # inside an over-long message: drop up to its newline
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def open(cls, run: RunDir, deliver: Callable[[ev.Command], None], *,
             poll_seconds: float = POLL_SECONDS) -> "ControlChannel":
        """Create ``run``'s channel and start listening. Raises :class:`ControlError`."""
        channel = cls(run, deliver, poll_seconds=poll_seconds)
        try:
            channel._create()
        except OSError as e:
            raise ControlError(f"cannot create {run.control_path} ({e.strerror or e})") from None
        channel._thread = threading.Thread(target=channel._loop, name="cifar-tui-control", daemon=True)
        channel._thread.start()
        return channel

    def _create(self) -> None:
        folder = self.run.path
        st = os.stat(folder)
        if st.st_uid != os.geteuid():
            raise ControlError(f"the run folder {folder} belongs to another user")
        if st.st_mode & 0o022:  # only the owner may create or replace files in it
            os.chmod(folder, stat.S_IMODE(st.st_mode) & ~0o022)
        path = self.run.control_path
        try:
            os.unlink(path)  # left by a killed trainer
        except FileNotFoundError:
            pass
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # exactly, whatever the umask
            header = json.dumps({"channel": CHANNEL_NAME, "version": VERSION, "pid": os.getpid(),
                                 "host": socket.gethostname()}) + "\n"
            os.write(fd, header.encode())
            self._ino = os.fstat(fd).st_ino
        except OSError:
            os.close(fd)
            raise
        self._fd, self._offset = fd, len(header.encode())

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception as e:  # the channel must never take training down
                self._notice(f"control channel: could not read a command ({type(e).__name__}: {e})"[:300])

    def poll(self) -> int:
        """Read what was appended since the last look; hand the commands over. Returns
        how many messages were read (valid or not)."""
        fd = self._fd
        if fd is None:
            return 0
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:  # ctl refuses such a channel; so does the trainer
            self._fd = None
            os.close(fd)
            self._notice(f"control channel: {self.run.control_path.name} was made writable by others or given to "
                         f"another user (mode {stat.S_IMODE(st.st_mode):o}); commands are no longer taken from it "
                         "(the next start makes a private one)")
            return 0
        size = st.st_size
        if size < self._offset:  # truncated by its owner: go on from its new end
            self._offset, self._buf, self._skipping = size, b"", False
        if size == self._offset:
            return 0
        data = os.pread(fd, min(size - self._offset, READ_CHUNK), self._offset)
        self._offset += len(data)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()  # a message still being written (or an unterminated one)
        problems: list[str] = []
        count = 0
        for raw in lines:
            if self._skipping:
                self._skipping = False  # the end of an over-long message
                continue
            raw = raw.strip()
            if not raw:
                continue
            count += 1
            try:
                self._hand_over(decode(raw))
            except ValueError as e:
                problems.append(str(e))
        if len(self._buf) > MAX_MESSAGE_BYTES:
            if not self._skipping:
                count += 1
                problems.append(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
            self._buf, self._skipping = b"", True
        if problems:
            self.rejected += len(problems)
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            self._notice(f"control channel: ignored {problems[0]}{more}; it takes {commands.USAGE} "
                         f"(see docs/control.md)")
        return count

    def _hand_over(self, command: ev.Command) -> None:
        self.received += 1
        self.deliver(command)

    def _notice(self, message: str) -> None:
        try:
            self.deliver(ChannelNotice(message))
        except Exception:
            pass

    def close(self) -> None:
        """Stop listening and remove the file (if it is still this channel's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.run.control_path).st_ino == self._ino:
                os.unlink(self.run.control_path)
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass


def open_for_trainer(run: RunDir, deliver: Callable[[ev.Command], None],
                     warn: Callable[[str], None]) -> Optional[ControlChannel]:
    """The trainer's call: the channel, or None after a warning (training never depends on it)."""
    try:
        return ControlChannel.open(run, deliver)
    except (ControlError, OSError) as e:
        reason = str(e) if isinstance(e, ControlError) else (e.strerror or str(e))
        warn(f"commands from other terminals are off for this run ({reason}); the run trains on")
        return None


# --------------------------------------------------------------- client side


def send_command(run_dir: str | Path, command: ev.Command, *, timeout: float = 0.0) -> None:
    """Send ``command`` to the trainer writing ``run_dir``. Raises :class:`ControlError`
    with a one-line reason when it cannot be delivered. While the run is starting (its
    lock taken, its channel not open yet) it retries for up to ``timeout`` seconds.

    Delivered is not applied: the run's events say when it takes effect."""
    message = encode(command)
    run = RunDir(Path(run_dir).expanduser())
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = _open_channel(run)
            break
        except _NotOpenYet:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    try:
        written = os.write(fd, message)
    except OSError as e:
        raise ControlError(f"cannot write to {run.control_path} ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if written != len(message):  # pragma: no cover - a regular file takes a short write whole
        raise ControlError(f"could not write the whole command to {run.control_path}")


def channel_problem(run_dir: str | Path) -> Optional[str]:
    """None when commands can be sent to ``run_dir`` now; otherwise why not (one line)."""
    try:
        os.close(_open_channel(RunDir(Path(run_dir).expanduser())))
    except ControlError as e:
        return str(e)
    return None


def _open_channel(run: RunDir) -> int:
    """An open descriptor on the live trainer's channel, checked. Raises ControlError."""
    owner = run.lock_owner()
    if owner is None:
        raise ControlError(f"no process is training {run.path}")
    if owner.pid is None:
        raise _NotOpenYet("the run is starting; its control channel is not open yet")
    if owner.host != socket.gethostname():
        raise ControlError(f"the run is training on {owner.host}; send commands from that machine")
    if owner.alive is False:
        raise ControlError(f"the process that was training {run.path} ({owner.pid}) is gone: the run was interrupted")
    path = run.control_path
    flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _NotOpenYet("the run is starting; its control channel is not open yet") from None
    except PermissionError:
        raise ControlError(f"{path} belongs to another user: only the run's owner may control it") from None
    except OSError as e:
        raise ControlError(f"cannot open {path} ({e.strerror or e}); it is not a control channel") from None
    try:
        _check_channel(fd, path, owner.pid)
    except ControlError:
        os.close(fd)
        raise
    return fd


def _check_channel(fd: int, path: Path, pid: int) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ControlError(f"{path} is not a private control channel of yours (mode {stat.S_IMODE(st.st_mode):o}); "
                           "refusing to use it")
    head = os.pread(fd, 512, 0).split(b"\n", 1)[0]
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("channel") != CHANNEL_NAME:
        raise ControlError(f"{path} is not a cifar-tui control channel")
    if header.get("pid") != pid:
        raise _NotOpenYet("the run is starting; its control channel is not open yet (the one there is left "
                          "over from an earlier process)")
