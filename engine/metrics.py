"""A run's event history, ``metrics.jsonl``: one event a line, written by one process and
read (or followed while it grows) by any other.

:class:`MetricsWriter` appends (a listener of the trainer's events); :func:`read_metrics`
reads a whole file and :func:`tail_events` its last bytes; :class:`MetricsFollower` tails
a file another process appends to. The file's place in a run folder is
:attr:`engine.rundir.RunDir.metrics_path`. No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from . import events as ev


def _parse_json_line(raw: bytes) -> Optional[dict]:
    raw = raw.strip()
    if not raw:
        return None
    try:
        d = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return d if isinstance(d, dict) and isinstance(d.get("event"), str) else None


def read_metrics(path: str | Path) -> tuple[list[dict], int]:
    """Read a ``metrics.jsonl``: (events as dicts, number of unreadable lines skipped)."""
    events, bad = [], 0
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                d = _parse_json_line(raw)
                if d is None:
                    bad += 1
                else:
                    events.append(d)
    except FileNotFoundError:
        pass
    return events, bad


def tail_events(path: str | Path, max_bytes: int = 65536) -> list[dict]:
    """The events in the last ``max_bytes`` of a ``metrics.jsonl``, oldest first (a cheap tail)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            tail = fh.read()
    except OSError:
        return []
    lines = tail.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first one is probably cut
    return [d for d in (_parse_json_line(raw) for raw in lines) if d is not None]


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
        self._ident: Optional[tuple[int, int]] = None

    def poll(self) -> list[ev.Event]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
            self.offset, self._buf, self.restarted = 0, b"", True
        self._ident = ident
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.chunk)
        except OSError:
            return []
        self.offset += len(data)
        buf = self._buf + data
        lines = buf.split(b"\n")
        self._buf = lines.pop()  # b"" after a final newline, else a torn last line
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
        self.offset, self._ident, self._buf = st.st_size, (st.st_dev, st.st_ino), b""
        return self

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished last line held back."""
        return len(self._buf)

    def _parse(self, raw: bytes) -> Optional[ev.Event]:
        raw = raw.strip()
        if not raw:
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
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
        if not isinstance(data, dict):
            return None
        return ev.event_from_dict(data)
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
        _close_torn_line(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

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


def _close_torn_line(path: Path) -> None:
    """End a torn last line (raises OSError when the file cannot be written)."""
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
