"""A run's event history, ``metrics.jsonl``: one event a line, written by one process and
read (or followed while it grows) by any other.

:class:`MetricsWriter` appends (a listener of the trainer's events); :func:`read_metrics`
reads a whole file and :func:`tail_events` its last bytes; :class:`MetricsFollower` tails
a file another process appends to. The file's place in a run folder is
:attr:`engine.rundir.RunDir.metrics_path`. No torch here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional

from . import events as ev
from . import safeio


def _parse_json_line(raw: bytes) -> Optional[dict]:
    """One line as an event dict (not yet checked against the events' schema), else None."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        d = safeio.loads(raw)
    except ValueError:
        return None
    return d if isinstance(d, dict) and isinstance(d.get("event"), str) else None


def read_metrics(path: str | Path) -> tuple[list[dict], int]:
    """Read a ``metrics.jsonl``: (events as dicts, number of unreadable lines skipped), in
    bounded memory (lines over :data:`engine.safeio.LINE_LIMIT` and NUL runs are skipped and
    counted). Raises :class:`engine.safeio.UnreadableFile` for a FIFO, a device or a link."""
    events, stats = [], {"skipped": 0}
    bad = 0
    try:
        for raw in safeio.iter_lines(path, stats=stats):
            if not raw.strip():
                continue
            d = _parse_json_line(raw)
            if d is None:
                bad += 1
            else:
                events.append(d)
    except FileNotFoundError:
        pass
    return events, bad + stats["skipped"]


def tail_events(path: str | Path, max_bytes: int = 65536) -> list[dict]:
    """The events of the last lines of a ``metrics.jsonl`` (about ``max_bytes`` of them, and
    always the last one however long the lines before it), oldest first: a cheap tail.
    Raises :class:`engine.safeio.UnreadableFile` for a FIFO, a device or a link."""
    out, taken = [], 0
    try:
        for raw in safeio.lines_from_end(path):
            d = _parse_json_line(raw)
            if d is not None:
                out.append(d)
            taken += len(raw) + 1
            if taken >= max_bytes:
                break
    except FileNotFoundError:
        return []
    return out[::-1]


class MetricsFollower:
    """Tail a ``metrics.jsonl`` that another process appends to.

    Each :meth:`poll` reads what was added since the last one and returns the
    complete lines as events. A line without its newline yet (the writer is
    mid-write, or died mid-write) is kept back until it is complete; lines that
    do not parse are counted in :attr:`bad_lines` and skipped. If the file is
    replaced or truncated, following starts again from its beginning and
    :attr:`restarted` is set.
    """

    def __init__(self, path: str | Path, *, chunk: int = 8 << 20) -> None:
        self.path = Path(path)
        self.chunk = chunk
        self.offset = 0
        self.bad_lines = 0
        self.restarted = False
        self._buf = b""
        self._dropping = False  # inside a line longer than any event (a NUL-filled tail...)
        self._ident: Optional[tuple[int, int]] = None

    def poll(self) -> list[ev.Event]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
            self.offset, self._buf, self._dropping, self.restarted = 0, b"", False, True
        self._ident = ident
        if st.st_size == self.offset:
            return []
        try:
            fd = safeio.open_regular(self.path)  # never a FIFO, a device or a link
        except (OSError, ValueError):
            return []
        with os.fdopen(fd, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(self.chunk)
        self.offset += len(data)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()  # b"" after a final newline, else a torn last line
        if self._dropping and lines:  # the end of an over-long line, already counted
            lines, self._dropping = lines[1:], False
        if len(self._buf) > safeio.LINE_LIMIT:  # no line is this long: skip to its end
            self.bad_lines += 0 if self._dropping else 1
            self._buf, self._dropping = b"", True
        out: list[ev.Event] = []
        for raw in lines:
            event = self._parse(raw)
            if event is not None:
                out.append(event)
        return out

    def skip_to_end(self) -> "MetricsFollower":
        """Follow only what is appended from now on."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self
        self.offset, self._ident, self._buf, self._dropping = st.st_size, (st.st_dev, st.st_ino), b"", False
        return self

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished last line held back."""
        return len(self._buf)

    def _parse(self, raw: bytes) -> Optional[ev.Event]:
        raw = raw.strip()
        if not raw:
            return None
        if len(raw) > safeio.LINE_LIMIT:
            self.bad_lines += 1
            return None
        event = _parse_event_line(raw)
        if event is None:
            # A writer that died mid-line and was restarted leaves "<torn>{...}": keep the tail.
            cut = raw.rfind(b'{"event"')
            if cut > 0:
                event = _parse_event_line(raw[cut:])
        if event is None:
            self.bad_lines += 1
        return event


def _parse_event_line(raw: bytes) -> Optional[ev.Event]:
    data = _parse_json_line(raw)
    try:
        return None if data is None else ev.event_from_dict(data)
    except (ValueError, TypeError):
        return None


class MetricsWriter:
    """An event listener that appends each event to ``metrics.jsonl`` as one JSON line.

    A torn last line (a writer killed mid-line) is closed off before appending (an
    OSError if the file cannot be opened). A write error later (a full disk) is
    counted, never raised: training must go on.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.errors = 0
        fd = _open_own(self.path)
        try:
            _close_torn_line(fd)
        except OSError:
            os.close(fd)
            raise
        self._fh = open(fd, "a", encoding="utf-8")

    def __call__(self, event: ev.Event) -> None:
        fh = self._fh
        if fh is None:
            return
        try:
            fh.write(ev.event_to_json(event) + "\n")
            fh.flush()
        except (OSError, ValueError):
            self.errors += 1

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None


def _open_own(path: Path) -> int:
    """A descriptor to append to the run's own metrics file: created if missing, never
    through a link (into another run), never a FIFO or a device (OSError otherwise)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise OSError(e.errno, "a symbolic link; remove it (a run writes only its own files)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file; remove it")
    return fd


def _close_torn_line(fd: int) -> None:
    """End a torn last line (raises OSError when the file cannot be written)."""
    if os.lseek(fd, 0, os.SEEK_END) > 0:
        os.lseek(fd, -1, os.SEEK_END)
        if os.read(fd, 1) != b"\n":
            os.write(fd, b"\n")  # (O_APPEND: at the end)
