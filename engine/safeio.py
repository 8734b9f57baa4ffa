"""Reading files that another process, or another person, may have written.

A run folder's files (``config.json``, ``metrics.jsonl``, ``.lock``, checkpoint sidecars,
stored evaluations) and the user's settings may be damaged or hostile: a FIFO that blocks
for ever, ``/dev/zero`` linked in, a link into another run, a line of 5 KB of ``[[[[``, a
zero-filled tail of gigabytes. Every reader of such a file goes through this module:

- :func:`open_regular` opens regular files only, without blocking and without following a
  final symbolic link; anything else is an :class:`UnreadableFile` with a one-line reason;
- :func:`read_bytes` / :func:`read_json` read a whole file up to a size limit;
- :func:`loads` parses JSON of at most :data:`MAX_DEPTH` levels of nesting (a deeper
  document is refused, never a ``RecursionError``);
- :func:`iter_lines` walks a JSON-lines file in bounded memory, skipping (and counting)
  lines longer than a cap; :func:`last_line` finds the last complete line from the end,
  however long the lines before it (:func:`lines_from_end`: the lines before it, last first).

No torch here: the run catalogue and the CLI use it without paying torch's import time.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator, Optional

MAX_DEPTH = 64  # nesting levels of a JSON document (ours use 4 at most)
JSON_LIMIT = 4 << 20  # bytes of one JSON file (config.json with a long resume history is ~10 KB)
LINE_LIMIT = 64 << 10  # bytes of one JSON line (an event is a few hundred bytes; RunStarted ~4 KB)
_CHUNK = 64 << 10


class UnreadableFile(ValueError):
    """A file that is not read: not a regular file, a link, too large, or malformed. One line."""


def open_regular(path: str | Path, *, follow_links: bool = False) -> int:
    """An open descriptor of the regular file ``path`` (read-only, close-on-exec).

    Never blocks on a FIFO or a device (``O_NONBLOCK``, then ``fstat``: anything but a
    regular file is refused) and, unless ``follow_links``, never follows a final symbolic
    link. Raises :class:`UnreadableFile` (or ``FileNotFoundError`` when nothing is there).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if os.path.islink(path):
            raise UnreadableFile(f"{path} is a symbolic link; it is not followed") from None
        raise UnreadableFile(f"{path} cannot be opened ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"{path} is not a regular file ({_kind(mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path: str | Path, limit: int = JSON_LIMIT, *, follow_links: bool = False) -> bytes:
    """The whole content of the regular file ``path``, at most ``limit`` bytes (a larger
    file is an :class:`UnreadableFile`)."""
    fd = open_regular(path, follow_links=follow_links)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"{path} is larger than {limit:,} bytes")
    return data


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion whatever the input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v if isinstance(x, (list, dict)))
    return deepest


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses a document nested deeper than ``max_depth`` with a
    ``ValueError`` (never a ``RecursionError``, here or in whoever walks the result)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if isinstance(value, (list, dict)) and depth(value) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def read_json(path: str | Path, limit: int = JSON_LIMIT, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document from a regular file. Raises ``FileNotFoundError`` or
    :class:`UnreadableFile` (with the reason: special file, link, size, depth, syntax)."""
    data = read_bytes(path, limit)
    try:
        return loads(data, max_depth)
    except ValueError as e:
        raise UnreadableFile(f"{path} is not valid JSON ({e})") from None


def read_json_dict(path: str | Path, limit: int = JSON_LIMIT) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when it is missing, unreadable, hostile or not an object."""
    try:
        data = read_json(path, limit)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def iter_lines(path: str | Path, max_line: int = LINE_LIMIT, *, start: int = 0,
               stats: Optional[dict] = None) -> Iterator[bytes]:
    """The complete lines of a regular file from byte ``start`` (without their newline), in
    bounded memory: a line longer than ``max_line`` is skipped whole, and so is a run of
    NUL bytes (what a crash leaves on some file systems); ``stats['skipped']`` counts them.
    An unfinished last line (no newline yet) is not yielded."""
    fd = open_regular(path)
    skipped = 0
    with os.fdopen(fd, "rb") as fh:
        fh.seek(start)
        buf, dropping = b"", False
        while chunk := fh.read(_CHUNK):
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                if dropping:  # the end of a line already skipped
                    dropping = False
                elif len(line) > max_line or (line and not line.strip(b"\0 \t\r")):
                    skipped += 1
                else:
                    yield line
            if len(buf) > max_line:  # an over-long line: drop what is held, skip to its end
                if not dropping:
                    skipped += 1
                buf, dropping = b"", True
    if stats is not None:
        stats["skipped"] = stats.get("skipped", 0) + skipped


def last_line(path: str | Path, max_line: int = LINE_LIMIT) -> Optional[bytes]:
    """The last complete, non-blank line of a file that is not over ``max_line`` bytes,
    found by reading backwards from the end (however long the lines before it, and past a
    NUL-filled tail); None when there is none."""
    return next(lines_from_end(path, max_line), None)


def lines_from_end(path: str | Path, max_line: int = LINE_LIMIT) -> Iterator[bytes]:
    """The non-blank lines of a file that are not over ``max_line`` bytes, last first, read
    backwards from the end in bounded memory (longer lines and NUL runs are passed over).
    The file is opened (and refused, :class:`UnreadableFile`) before the first line."""
    fd = open_regular(path)
    return _from_end(os.fdopen(fd, "rb"), max_line)


def _from_end(fh: Any, max_line: int) -> Iterator[bytes]:
    with fh:
        pos = fh.seek(0, os.SEEK_END)
        carry, dropping = b"", False  # dropping: inside a line too long to keep, until its start
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            first, *whole = (fh.read(step) + carry).split(b"\n")
            if dropping:
                if not whole:  # still inside the dropped line
                    continue
                whole, dropping = whole[:-1], False  # the text after the last newline began it
            for line in reversed([first, *whole] if pos == 0 else whole):
                if line.strip(b"\0 \t\r") and len(line) <= max_line:
                    yield line
            carry = first
            if len(first) > max_line:
                carry, dropping = b"", True
