"""The ``cifar-tui`` command line (typer).

Importing this module must stay cheap: no torch, no textual at import time, so
that ``cifar-tui --help`` answers at once. Heavy modules load inside commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(
    add_completion=False,
    help="Train a small SE-ResNet on CIFAR-10 from a dashboard in the terminal.\n\n"
    "Run with no command to open the app; `cifar-tui --no-ui train` trains headless.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print a one-line error to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    no_ui: bool = typer.Option(False, "--no-ui", help="Run the command headless (rich progress) instead of the dashboard."),
) -> None:
    ctx.obj = {"no_ui": no_ui}
    if ctx.invoked_subcommand is None:
        if no_ui:
            fail("--no-ui needs a command, for example: cifar-tui --no-ui train --preset tiny", 2)
        from .app import run_start_app

        raise typer.Exit(run_start_app())


# ------------------------------------------------------------------------------ train

DATA_HELP = "cifar10 (downloaded once), synthetic, or a path: a cifar-10-batches-py folder, an image folder (train/<class>/*) or a zip of one."


@app.command()
def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, "--data", "-d", help=DATA_HELP + "  [default: cifar10]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="Recipe: paper (the report's) or tiny (CPU demo).  [default: paper]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Epochs in total (with --resume: extend the run to this many)."),
    width: Optional[float] = typer.Option(None, "--width", "-w", help="Channel width multiplier; 1.0 is the report's 4,993,166-parameter network."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    mixup: Optional[bool] = typer.Option(None, "--mixup/--no-mixup", help="Use mixup on the schedule's epochs, or never."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on only N images (for quick runs)."),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="Validation images held out of the training set (default 5,000, or 10% of a small set)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (split, initialisation, augmentation).  [default: 0]"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.  [default: auto]"),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where run folders go (default: the user data folder)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Also keep checkpoints/epoch-NNN.pt every N epochs."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue from a checkpoint (.pt) or a run folder, with its stored settings."),
    no_ui_here: bool = typer.Option(False, "--no-ui", hidden=True),
) -> None:
    """Train the network (dashboard by default; headless with --no-ui)."""
    from engine.config import ConfigError, make_config

    no_ui = bool((ctx.obj or {}).get("no_ui")) or no_ui_here
    overrides: dict[str, Any] = dict(
        data=data, epochs=epochs, width=width, batch_size=batch_size, lr=lr, mixup=mixup, subset=subset,
        val_size=val_size, seed=seed, device=device, runs_dir=runs_dir, save_every=save_every,
    )
    config = None
    if resume is not None:
        if preset is not None:
            overrides["preset"] = preset
        if not Path(resume).expanduser().exists():
            fail(f"--resume {resume}: no such checkpoint or run folder", 2)
        # Validate the overrides on their own (an impossible value is refused before loading).
        try:
            make_config("tiny", **{k: v for k, v in overrides.items() if k != "preset"})
        except ConfigError as e:
            fail(str(e), 2)
    else:
        try:
            config = make_config(preset or "paper", **overrides)
        except ConfigError as e:
            fail(str(e), 2)
    resume_overrides = {k: v for k, v in overrides.items() if v is not None} if resume else None

    if not no_ui:
        from .app import run_train_app

        raise typer.Exit(run_train_app(config=config, resume=resume, resume_overrides=resume_overrides))
    from .headless import run_headless

    raise typer.Exit(run_headless(config=config, resume=resume, resume_overrides=resume_overrides))


@app.command()
def watch(run_dir: str = typer.Argument(..., help="A run folder (holding metrics.jsonl) that another process is writing, or a finished one.")) -> None:
    """Open the dashboard on a run written by another process (or a finished run)."""
    from .app import run_watch_app

    raise typer.Exit(run_watch_app(run_dir))


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="cifar-tui")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
