"""``cifar-tui export``: a run's history as a CSV of its epochs, or TensorBoard scalars.

Registered on the typer app by :mod:`tui_trainer.cli`. No torch at import time.
"""

from __future__ import annotations

from typing import Optional

import typer

from .cliargs import RUN_HELP, RUNS_DIR_HELP, fail, run_arg, runs_dir_of
from .exitcodes import EXIT_FAILED, EXIT_USAGE


def export(
    ctx: typer.Context,
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    csv_file: Optional[str] = typer.Option(None, "--csv", help="Write one row per epoch (epoch, train/val loss and accuracy, lr, mixup, seconds) to this CSV file; - for stdout."),
    tensorboard: Optional[str] = typer.Option(None, "--tensorboard", help="Write TensorBoard scalars under DIR/<run id> (needs: pip install 'cifar-tui[tensorboard]')."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    force: bool = typer.Option(False, "--force", help="Let --csv replace an existing file that is not a CSV of cifar-tui export (never a checkpoint, a link, a device or a file of a run folder)."),
) -> None:
    """Export a run's history: a CSV of its epochs, or TensorBoard scalars."""
    from engine.export import ExportError, epochs_csv, is_history_csv, read_history, write_csv, write_tensorboard
    from engine.outputs import OutputRefused, check_output, check_output_dir
    from engine.rundir import RunDir

    if csv_file is None and tensorboard is None:
        fail("nothing to export: add --csv FILE and/or --tensorboard DIR", EXIT_USAGE)
    run_dir = run_arg(run, runs_dir_of(ctx, runs_dir))
    try:  # every output checked before anything is read or written
        if csv_file not in (None, "-"):
            rd = RunDir(run_dir)
            csv_path = check_output(csv_file, what="--csv", suggestion="history.csv", force=force,
                                    reads=(rd.metrics_path, rd.config_path), ours=is_history_csv,
                                    ours_named="a history CSV written by cifar-tui export")
        if tensorboard is not None:
            check_output_dir(tensorboard, run_dir.name, what="--tensorboard")
    except OutputRefused as e:
        fail(str(e), EXIT_USAGE)
    try:
        history = read_history(run_dir)
        if not history.epochs and not history.steps:
            fail(f"{run_dir}: no finished epoch or logged step to export yet", EXIT_FAILED)
        if csv_file == "-":
            typer.echo(epochs_csv(history), nl=False)
        elif csv_file is not None:
            n = write_csv(history, csv_path)
            typer.echo(f"wrote {n} epoch(s) of {history.run_id} to {csv_file}", err=True)
        if tensorboard is not None:
            where = write_tensorboard(history, tensorboard)
            typer.echo(f"wrote TensorBoard scalars of {history.run_id} to {where} "
                       f"(view them with: tensorboard --logdir {tensorboard})", err=True)
    except (ExportError, OutputRefused) as e:
        fail(str(e), EXIT_FAILED)
