"""``cifar-tui eval`` and ``cifar-tui predict``: a checkpoint on labelled or new images.

Registered on the typer app by :mod:`tui_trainer.cli`. No torch at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cliargs import (CHECKPOINT_HELP, DATA_HELP, RUNS_DIR_HELP, checkpoint_arg, device_arg, engine_errors, fail,
                      one_line, runs_dir_of)
from .exitcodes import EXIT_FAILED, EXIT_USAGE


def eval_cmd(
    ctx: typer.Context,
    checkpoint: str = typer.Argument(..., help=CHECKPOINT_HELP),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Labelled images to evaluate on (default: the test split of the checkpoint's own data). " + DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(500, "--batch-size", "-b", help="Images per forward pass."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Evaluate a checkpoint: accuracy, loss, per-class accuracy, confusion matrix."""
    import json

    from rich.console import Console

    if batch_size < 1:
        fail(f"--batch-size must be at least 1 (got {batch_size})", EXIT_USAGE)
    device_arg(device)
    path = checkpoint_arg(checkpoint, "inference", runs_dir_of(ctx, runs_dir))
    err = Console(stderr=True)
    from .console import progress_callback

    try:
        with progress_callback(err, "evaluating", enabled=not as_json) as cb:
            from engine.evaluate import evaluate_checkpoint

            result = evaluate_checkpoint(path, data, device=device, batch_size=batch_size, progress=cb).to_dict()
    except engine_errors() as e:
        fail(str(e), EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from .console import render_eval

    render_eval(Console(), result)


PREDICT_COLUMNS = ("ID", "Labels", "File", "Class", "Confidence")


def predict(
    ctx: typer.Context,
    checkpoint: str = typer.Argument(..., help=CHECKPOINT_HELP),
    inputs: list[str] = typer.Argument(..., help="Image files, folders, zips, or CIFAR-style pickles of unlabelled images ({'data': N x 3072 uint8})."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write a CSV with header ID,Labels (ID = the image's position in input order, Labels = class index); an image that cannot be decoded is skipped, its ID left out and named on stderr."),
    columns: Optional[str] = typer.Option(None, "--columns", help="The CSV's columns, comma-separated, from: " + ",".join(PREDICT_COLUMNS) + "  [default: ID,Labels]"),
    full: bool = typer.Option(False, "--full", help="All CSV columns: " + ",".join(PREDICT_COLUMNS) + "."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Classes to show per image in the table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(500, "--batch-size", "-b", help="Images per forward pass."),
    force: bool = typer.Option(False, "--force", help="Let --output replace an existing file that is not a CSV of cifar-tui predict (never a checkpoint or an input)."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Predict classes of images with a checkpoint (table, or CSV with --output)."""
    from rich.console import Console

    if top_k < 1:
        fail(f"--top-k must be at least 1 (got {top_k})", EXIT_USAGE)
    if batch_size < 1:
        fail(f"--batch-size must be at least 1 (got {batch_size})", EXIT_USAGE)
    device_arg(device)
    cols = _predict_columns(columns, full)
    path = checkpoint_arg(checkpoint, "inference", runs_dir_of(ctx, runs_dir))
    if output is not None:
        _check_output_path(output, [path, *inputs], force)
    err = Console(stderr=True, soft_wrap=True)  # notes stay whole lines (paths are long)
    from .console import progress_callback

    try:
        from engine.checkpoint import load_checkpoint
        from engine.data import read_predict_inputs
        from engine.evaluate import predict_checkpoint

        load_checkpoint(path, purpose="inference")  # refuse a bad checkpoint before decoding any input
        got = read_predict_inputs(inputs)
        with progress_callback(err, "predicting", enabled=output is not None) as cb:
            probs, classes = predict_checkpoint(path, got.x, device=device, batch_size=batch_size, progress=cb)
    except engine_errors() as e:
        fail(str(e), EXIT_FAILED)
    for note in got.notes:
        err.print(f"note: {one_line(note)}", markup=False, highlight=False)
    if got.skipped:
        ids = ", ".join(str(i) for i, _, _ in got.skipped[:10]) + (", ..." if len(got.skipped) > 10 else "")
        err.print(f"note: {len(got.skipped)} of {got.total} image(s) skipped; IDs without a prediction: {ids}",
                  markup=False, highlight=False)
    if output is not None:
        conf, pred = probs.max(1)
        rows = [{"ID": i, "Labels": int(c), "File": name, "Class": classes[int(c)], "Confidence": f"{float(p):.4f}"}
                for i, name, c, p in zip(got.ids, got.names, pred.tolist(), conf.tolist())]
        _write_predictions_csv(Path(output).expanduser(), rows, cols)
        skipped = f" ({len(got.skipped)} skipped)" if got.skipped else ""
        err.print(f"wrote {len(rows)} predictions to {output}{skipped}", markup=False, highlight=False)
        return
    from .console import render_predictions

    render_predictions(Console(), got.names, probs, classes, top_k, ids=got.ids)


def _predict_columns(columns: Optional[str], full: bool) -> list[str]:
    if full:
        return list(PREDICT_COLUMNS)
    if columns is None:
        return ["ID", "Labels"]
    by_name = {c.lower(): c for c in PREDICT_COLUMNS}
    chosen = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in chosen if c.lower() not in by_name]
    if unknown or not chosen:
        fail(f"--columns {columns!r}: choose from {','.join(PREDICT_COLUMNS)} (comma-separated)", EXIT_USAGE)
    return list(dict.fromkeys(by_name[c.lower()] for c in chosen))


def _check_output_path(output: str, reads: list[str], force: bool) -> Path:
    """The file ``predict --output`` may write, or a one-line refusal (exit 2): the rule of
    every output (:func:`engine.outputs.check_output`: never a checkpoint, an input, a run
    folder's file, a device, a FIFO or a link); an existing file only when it is a CSV this
    command wrote (its header starts ``ID,Labels``, or holds only ``--columns`` names), is
    empty, or with ``--force``. The write itself is atomic."""
    from engine.outputs import OutputRefused, check_output

    try:
        return check_output(output, what="--output", suggestion="predictions.csv", reads=reads, force=force,
                            ours=_is_predictions_csv, ours_named="a predictions CSV written by cifar-tui")
    except OutputRefused as e:
        fail(str(e), EXIT_USAGE)
        raise


def _is_predictions_csv(head: bytes) -> bool:
    """Whether a file starts with a header `predict --output` writes: ``ID,Labels`` first, or
    only columns of PREDICT_COLUMNS (``--columns``)."""
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    names = first.split(",")
    if names[:2] == ["ID", "Labels"]:  # the default columns, and every older version's
        return True
    return bool(first) and all(n in PREDICT_COLUMNS for n in names) and len(set(names)) == len(names)


def _write_predictions_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    import csv
    import io

    from engine.files import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([row[c] for c in columns])
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as e:
        fail(f"cannot write {path} ({e.strerror or e})", EXIT_FAILED)
