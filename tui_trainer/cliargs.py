"""What the ``cifar-tui`` commands share: the one-line error, the help texts, and the
RUN / CHECKPOINT arguments, resolved once by :mod:`engine.resolve` with the same
errors and exit codes for every command. No torch, no textual here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .exitcodes import EXIT_FAILED, EXIT_USAGE

DATA_HELP = ("cifar10 (downloaded once), synthetic, or a path: a cifar-10-batches-py folder, an image folder "
             "(train/<class>/*) or a zip of one.")
RUN_HELP = "A run folder, a run id under the runs folder (see cifar-tui runs), or a checkpoint of a run."
CHECKPOINT_HELP = "A checkpoint (.pt), a run folder or a run id (uses its best.pt)."
RUNS_DIR_HELP = "The runs folder where a run id is looked up (default: the user data folder)."


def one_line(text: object) -> str:
    """``text`` as one printable line: a newline, a carriage return, an escape sequence or
    any other control character (in a run id, a path, a file's message) is shown escaped
    (``\\n``), so no name can forge a second ``error:`` line or move the cursor. Every
    message that prints a user's path, a run id or a file's text goes through this."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fail(message: str, code: int = EXIT_FAILED) -> "typer.Exit":
    """Print a one-line error to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def runs_dir_of(ctx: typer.Context, given: Optional[str]) -> Optional[str]:
    """A command's --runs-dir, else the root command's (cifar-tui --runs-dir X COMMAND)."""
    return given if given is not None else (ctx.obj or {}).get("runs_dir")


def run_arg(run: str, runs_dir: Optional[str]) -> Path:
    """The run folder a RUN argument names (a run folder, a run id, a checkpoint of a run)."""
    from engine.resolve import NotFound, resolve_run

    try:
        return resolve_run(run, runs_dir).path
    except NotFound as e:
        fail(str(e), EXIT_USAGE)
        raise  # (fail raises)


def checkpoint_arg(checkpoint: str, purpose: str, runs_dir: Optional[str] = None) -> str:
    """The checkpoint file a CHECKPOINT argument names (a run: its best.pt for ``inference``,
    its last.pt to ``resume``)."""
    from engine.resolve import NotFound, ResolveError, resolve_checkpoint

    try:
        return str(resolve_checkpoint(checkpoint, purpose, runs_dir))  # type: ignore[arg-type]
    except ResolveError as e:
        fail(str(e), EXIT_USAGE if isinstance(e, NotFound) else EXIT_FAILED)
        raise  # (fail raises)


def device_arg(device: str) -> None:
    """Refuse a --device this machine cannot use (exit 2), before anything is read."""
    from engine.config import ConfigError
    from engine.device import resolve_device

    try:
        resolve_device(device)
    except ConfigError as e:
        fail(str(e), EXIT_USAGE)


def engine_errors():
    """The engine's one-line user errors (caught and printed with :func:`fail`)."""
    from engine.checkpoint import CheckpointError
    from engine.config import ConfigError
    from engine.data import DataError
    from engine.rundir import RunDirError

    return (CheckpointError, ConfigError, DataError, RunDirError)
