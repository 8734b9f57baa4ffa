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
    split: str = typer.Option("test", "--split", help="test: the data's test split; val: the run's held-out validation images (the seeded split it trained with), for data without a test split."),
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
    if split not in ("test", "val"):
        fail(f"--split {split!r}: choose test or val", EXIT_USAGE)
    device_arg(device)
    path = checkpoint_arg(checkpoint, "inference", runs_dir_of(ctx, runs_dir))
    err = Console(stderr=True)
    from .console import progress_callback

    try:
        with progress_callback(err, "evaluating", enabled=not as_json) as cb:
            from engine.evaluate import evaluate_checkpoint

            result = evaluate_checkpoint(path, data, device=device, batch_size=batch_size, progress=cb,
                                         split=split).to_dict()
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
    inputs: list[str] = typer.Argument(..., help="Image files, folders, zips, or CIFAR-style pickles of unlabelled images ({'data': N x 3072 uint8}, optionally 'ids': one ID per image)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write a CSV with header ID,Labels (ID = the pickle's own 'ids' when it has them, else the image's position in input order; Labels = class index); an image that cannot be decoded is skipped, its ID left out and named on stderr."),
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

    from engine.data.predict import BadIds

    try:
        from engine.checkpoint import load_checkpoint
        from engine.data import read_predict_inputs
        from engine.evaluate import predict_checkpoint

        load_checkpoint(path, purpose="inference")  # refuse a bad checkpoint before decoding any input
        got = read_predict_inputs(inputs)
        with progress_callback(err, "predicting", enabled=output is not None) as cb:
            probs, classes = predict_checkpoint(path, got.x, device=device, batch_size=batch_size, progress=cb)
    except BadIds as e:
        fail(str(e), EXIT_USAGE)
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
        if got.own_ids:
            _offer_check(err, output, inputs, got.ids, cols)
        return
    from .console import render_predictions

    render_predictions(Console(), got.names, probs, classes, top_k, ids=got.ids)


def _offer_check(err, output: str, inputs: list[str], ids: list[int], cols: list[str]) -> None:
    """After ``predict --output`` on a pickle with IDs: the submission check's result when
    the CSV is a submission (ID,Labels), else the command that checks one."""
    import shlex

    if cols != ["ID", "Labels"] or len(inputs) != 1:
        command = f"cifar-tui check-submission SUBMISSION.csv --against {shlex.quote(inputs[0])}"
        err.print(f"note: a submission has exactly the columns ID,Labels; check one with: {command}",
                  markup=False, highlight=False)
        return
    from engine.submission import check_submission

    problems = check_submission(output, ids)
    for p in problems:
        err.print(f"check-submission: {one_line(p)}", markup=False, highlight=False)
    if not problems:
        err.print(_ok_line(len(ids), inputs[0]), markup=False, highlight=False)


def _ok_line(n: int, pickle: str) -> str:
    return f"ok: {n:,} rows match the IDs of {pickle}"


def check_submission_cmd(
    csv_path: str = typer.Argument(..., metavar="CSV", help="The submission: header ID,Labels, one row per image."),
    against: str = typer.Option(..., "--against", help="The competition's pickle of unlabelled images ('data' and 'ids')."),
) -> None:
    """Check a submission CSV against the IDs of the competition's pickle before uploading it.

    Prints one line per problem and exits 1, or prints "ok: ..." and exits 0. A pickle
    without 'ids' is checked against the positions 0..N-1 (what predict writes for it)."""
    from engine.data.bundle import DataError
    from engine.data.cifar_pickle import read_pickle_ids
    from engine.submission import check_submission, ids_problem

    try:
        n, ids = read_pickle_ids(against)
    except DataError as e:
        fail(str(e), EXIT_USAGE)
        raise
    if ids is None:
        ids = list(range(n))
    problem = ids_problem(ids, n)
    if problem is not None:
        fail(f"{against}: {problem}", EXIT_USAGE)
    problems = check_submission(csv_path, ids)
    for p in problems:
        typer.echo(one_line(p))
    if problems:
        raise typer.Exit(EXIT_FAILED)
    typer.echo(_ok_line(n, against))


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
