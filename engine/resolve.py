"""One resolver for what a command's RUN or CHECKPOINT argument names.

Every command that takes a run or a checkpoint (``train --resume``, ``eval``,
``predict``, ``export``, ``watch``, ``ctl``, the app's resume) accepts the same
forms, with the same errors:

* a run folder (or its checkpoints folder);
* a run id: the name of a folder in the runs folder (``--runs-dir``, else the default);
* a checkpoint file; a command on a run takes the run folder it sits in.

A path that exists wins over a run id of the same name. :class:`NotFound` (the
argument names nothing: a usage error) and :class:`ResolveError` (it names something
that cannot serve: a run without a checkpoint, a pipe) carry one line for the user.
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .files import is_regular_file
from .rundir import Purpose, RunDir, runs_root

LIST_HINT = "list runs with: cifar-tui runs"


class ResolveError(Exception):
    """An argument that names a run or a file which cannot serve the command. One line."""


class NotFound(ResolveError):
    """An argument that names no run folder, run id or checkpoint. One line."""


@dataclass(frozen=True)
class Target:
    """What an argument names: a run (None for a checkpoint outside any run folder) and,
    when a file was named, that checkpoint file."""

    run: Optional[RunDir]
    checkpoint: Optional[Path] = None


def is_run_id(arg: str) -> bool:
    """Whether ``arg`` can be a run id (a bare folder name, not a path)."""
    return bool(arg) and arg == Path(arg).name and arg not in (".", "..") and "\\" not in arg


def resolve(arg: str | Path, runs_dir: Optional[str | Path] = None) -> Target:
    """What ``arg`` names. Raises :class:`NotFound`."""
    text = str(arg)
    p = Path(text).expanduser()
    try:
        if p.is_dir():
            if p.name in ("", ".", "..") or ".." in p.parts:  # RUN/checkpoints/..: the run's real name
                p = p.resolve()
            return Target(RunDir.of_folder(p))
        if p.exists():
            return Target(RunDir.of_checkpoint(p), p)
    except OSError as e:  # a name too long, a loop of links, no permission
        raise NotFound(f"{text[:200]}{'...' if len(text) > 200 else ''}: cannot use this path "
                       f"({e.strerror or e})") from None
    if is_run_id(text):
        root = runs_root(runs_dir)
        if (root / text).is_dir():
            return Target(RunDir(root / text))
        raise NotFound(f"{text}: no such run folder or checkpoint, and no run with that id in {root}; {LIST_HINT}")
    raise NotFound(f"{text}: no such run folder or checkpoint")


def resolve_run(arg: str | Path, runs_dir: Optional[str | Path] = None) -> RunDir:
    """The run folder ``arg`` names (a checkpoint: the run it belongs to)."""
    target = resolve(arg, runs_dir)
    if target.run is None:
        raise NotFound(f"{arg}: a file outside any run folder; give a run folder, a run id, "
                       f"or a checkpoint inside a run folder")
    return target.run


def resolve_checkpoint(arg: str | Path, purpose: Purpose = "resume",
                       runs_dir: Optional[str | Path] = None) -> Path:
    """The checkpoint file ``arg`` names: the file itself, or a run's own checkpoint for
    ``purpose`` (to resume: last.pt; for inference: best.pt; each falls back to the other)."""
    target = resolve(arg, runs_dir)
    if target.checkpoint is None:
        assert target.run is not None
        found = target.run.checkpoint_for(purpose)
        if found is None:
            raise ResolveError(f"{target.run.path}: a folder without a checkpoint "
                               f"({target.run.checkpoint_names(purpose)}); give a .pt file or a run folder")
        return found
    if not is_regular_file(target.checkpoint):
        raise ResolveError(f"{target.checkpoint} is not a regular file (a pipe or a device?); give a .pt file")
    return target.checkpoint
