"""Where a command may write a file the user named: a file it writes is its own.

One rule for every output (``predict --output``, ``export --csv``, ``export
--tensorboard``, ...), checked by :func:`check_output` before anything is written (the
write itself is atomic, :mod:`engine.files`):

- never a folder, a device node, a FIFO, a socket or a symbolic link (not even with
  ``--force``: replacing a link would replace the link, writing through it would write
  somewhere else);
- never a checkpoint or other binary data (a zip, a pickle, ``.pt``), never a file the
  command reads, and never a file of a run folder (``config.json``, ``metrics.jsonl``,
  the lock, the logs, anything under ``checkpoints/``), whatever ``--force`` says;
- an existing regular file only when it is empty, is a file this kind of output wrote
  (``ours(head)``), or with ``force``.

Refusals are :class:`OutputRefused` with one line that says what to do. No torch here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterable, Optional

HEAD_BYTES = 256
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


class OutputRefused(ValueError):
    """An output path this command will not write. One line."""


def _run_file(path: Path) -> Optional[Path]:
    """The run folder whose own file ``path`` is (``config.json``, ``metrics.jsonl``, the lock,
    the logs, or anything under ``checkpoints/``), else None. A new file of another name in a
    run folder (``RUN/predictions.csv``) is not the run's."""
    from . import rundir as rd

    if path.parent.name == rd.CHECKPOINT_DIR and rd.RunDir.is_run_dir(path.parent.parent):
        return path.parent.parent
    own = {rd.CONFIG_FILE, rd.METRICS_FILE, rd.LOCK_FILE, rd.CONTROL_FILE, rd.LOG_FILE, rd.ERROR_LOG, rd.CHECKPOINT_DIR}
    if path.name in own and rd.RunDir.is_run_dir(path.parent):
        return path.parent
    return None


def _head(path: Path) -> Optional[bytes]:
    from .safeio import UnreadableFile, open_regular

    try:
        fd = open_regular(path)
    except (OSError, UnreadableFile):
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(HEAD_BYTES)


def is_binary_data(path: Path, head: bytes) -> bool:
    """A checkpoint (torch's zip format or a legacy pickle) or other binary data."""
    return (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80") or b"\0" in head
            or path.suffix in CHECKPOINT_SUFFIXES)


def check_output(output: str | Path, *, what: str, suggestion: str, reads: Iterable[str | Path] = (),
                 force: bool = False, ours: Callable[[bytes], bool] = lambda head: False,
                 ours_named: str = "a file this command wrote") -> Path:
    """The path to write for the user's ``output`` (``what``: how the option is named, e.g.
    ``--csv``; ``suggestion``: a file name to offer, e.g. ``history.csv``; ``ours_named``:
    what ``ours`` recognises, in words), or :class:`OutputRefused`."""
    out = Path(output).expanduser()
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:  # a name too long, a loop of links, no permission...
        raise OutputRefused(f"{what} {output}: cannot use this path ({e.strerror or e}); give another file name "
                            f"such as {suggestion}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"{what} {output} is a folder; give a file name such as {suggestion}")
    if not out.parent.is_dir():
        raise OutputRefused(f"{what} {output}: the folder {out.parent} does not exist")
    for other in reads if st is not None else ():  # (through a link too: say what it would have destroyed)
        try:
            if out.samefile(other):
                raise OutputRefused(f"{what} {output} is a file this command reads; give another file name "
                                    f"such as {suggestion}")
        except OSError:
            continue
    if (run := _run_file(out)) is not None:
        if out.suffix in CHECKPOINT_SUFFIXES:
            raise OutputRefused(f"{what} {output} is a checkpoint, a file of the run folder {run}; it is never replaced: "
                                f"give a file name such as {suggestion}")
        raise OutputRefused(f"{what} {output} is a file of the run folder {run}, which only training writes; "
                            f"give another file name such as {suggestion}")
    if st is None:
        return out
    if stat.S_ISLNK(st.st_mode):
        raise OutputRefused(f"{what} {output} is a symbolic link; give a new file name such as {suggestion}")
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"{what} {output} is not a regular file (a device, a pipe or a socket); "
                            f"give a new file name such as {suggestion}")
    head = _head(out)
    if head is None:
        raise OutputRefused(f"{what} {output} exists and cannot be read; give a new file name")
    if is_binary_data(out, head):
        raise OutputRefused(f"{what} {output} is a checkpoint or other binary data; it is never replaced: "
                            f"give a file name such as {suggestion}")
    if not head or ours(head) or force:
        return out
    raise OutputRefused(f"{what} {output} exists and is not {ours_named}; give a new file name, "
                        f"or add --force to replace it")


def check_output_dir(folder: str | Path, name: str, *, what: str) -> Path:
    """The folder ``folder/name`` an output of many files (``--tensorboard DIR``) goes to, or
    :class:`OutputRefused`: ``name`` is one plain component (never ``..``), ``folder`` is not
    a run folder nor a run's checkpoints folder, and ``folder/name``, when it exists, is a
    real folder (never a link that would lead the files somewhere else). Nothing is created."""
    base = Path(folder).expanduser()
    if not safe_name(name):
        raise OutputRefused(f"{what} {folder}: {name!r} cannot name a folder inside it")
    try:
        st = os.lstat(base / name)
        base_ok = base.is_dir() or not base.exists()
    except FileNotFoundError:
        st, base_ok = None, base.is_dir() or not base.exists()
    except OSError as e:
        raise OutputRefused(f"{what} {folder}: cannot use this path ({e.strerror or e}); give another folder") from None
    if not base_ok:
        raise OutputRefused(f"{what} {folder} is a file, not a folder; give a folder")
    from . import rundir as rd

    if rd.RunDir.is_run_dir(base) or (base.name == rd.CHECKPOINT_DIR and rd.RunDir.is_run_dir(base.parent)):
        raise OutputRefused(f"{what} {folder} is a run folder, which only training writes; give another folder")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise OutputRefused(f"{what} {folder}: {base / name} is {kind}; give another folder")
    return base / name


def safe_name(name: str) -> bool:
    """A single path component that stays inside the folder it is joined to."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name and \
        (os.sep == "/" or os.sep not in name)
