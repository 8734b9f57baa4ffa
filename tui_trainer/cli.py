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


RUNS_DIR_HELP = "The runs folder (default: $CIFAR_TUI_RUNS_DIR, else the user data folder)."


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    no_ui: bool = typer.Option(False, "--no-ui", help="Run the command headless (rich progress) instead of the dashboard."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP + " Also the default of the commands' own --runs-dir."),
) -> None:
    if runs_dir is not None:
        where = Path(runs_dir).expanduser()
        if where.exists() and not where.is_dir():
            fail(f"--runs-dir {runs_dir} is a file; give a folder for the run folders", 2)
    ctx.obj = {"no_ui": no_ui, "runs_dir": runs_dir}
    if ctx.invoked_subcommand is None:
        if no_ui:
            fail("--no-ui needs a command, for example: cifar-tui --no-ui train --preset tiny", 2)
        from .app import run_start_app

        raise typer.Exit(run_start_app(runs_dir))


def _runs_dir(ctx: typer.Context, given: Optional[str]) -> Optional[str]:
    """A command's --runs-dir, else the root command's (cifar-tui --runs-dir X COMMAND)."""
    return given if given is not None else (ctx.obj or {}).get("runs_dir")


# ------------------------------------------------------------------------------ train

DATA_HELP = "cifar10 (downloaded once), synthetic, or a path: a cifar-10-batches-py folder, an image folder (train/<class>/*) or a zip of one."


@app.command()
def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, "--data", "-d", help=DATA_HELP + "  [default: cifar10]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="Recipe: paper (the report's), speedrun (time-to-accuracy on a GPU, same network), fast (an earlier GPU recipe) or tiny (CPU demo).  [default: paper]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Epochs in total (with --resume: extend the run to this many)."),
    width: Optional[float] = typer.Option(None, "--width", "-w", help="Channel width multiplier; 1.0 is the report's 4,993,166-parameter network."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    mixup: Optional[bool] = typer.Option(None, "--mixup/--no-mixup", help="Use mixup on the schedule's epochs, or never."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on only N images (for quick runs)."),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="Validation images held out of the training set; 0: train on all (default: 5,000, or 10% of a small set; speedrun: 0)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (split, initialisation, augmentation).  [default: 0]"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.  [default: auto]"),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where run folders go (default: the user data folder)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Also keep a copy of the checkpoint as checkpoints/epoch-NNN.pt every N epochs (last.pt is written on those epochs too)."),
    save_every_epochs: Optional[int] = typer.Option(None, "--save-every-epochs", help="Write checkpoints/last.pt every N epochs; 0: at the end of the first epoch a minute or more after the last write. Always at the run's end and at a stop; a new best.pt is written with it.  [default: 0]"),
    compile_model: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the training step on CUDA (compile time is reported apart; the last, smaller batch of each epoch is then skipped).  [default: the preset's]"),
    compile_mode: Optional[str] = typer.Option(None, "--compile-mode", help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune or max-autotune-no-cudagraphs."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue from a checkpoint (.pt) or a run folder, with its stored settings."),
    detach: bool = typer.Option(False, "--detach", help="Train in a background process of its own that survives closing the terminal or the SSH session (output in the run folder's train.log); then attach the dashboard to it, or with --no-ui print how to attach (cifar-tui watch RUN) and steer it (cifar-tui ctl RUN ...)."),
    no_ui_here: bool = typer.Option(False, "--no-ui", hidden=True),
) -> None:
    """Train the network (dashboard by default; headless with --no-ui)."""
    from engine.config import ConfigError, make_config

    no_ui = bool((ctx.obj or {}).get("no_ui")) or no_ui_here
    runs_dir = _runs_dir(ctx, runs_dir)
    if compile_mode is not None and compile_model is None:
        compile_model = True  # a mode says to compile
    overrides: dict[str, Any] = dict(
        data=data, epochs=epochs, width=width, batch_size=batch_size, lr=lr, mixup=mixup, subset=subset,
        val_size=val_size, seed=seed, device=device, runs_dir=runs_dir, save_every=save_every,
        save_every_epochs=save_every_epochs, compile=compile_model, compile_mode=compile_mode,
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

    if detach:
        from engine.distributed import torchrun_env

        if torchrun_env() is not None:
            fail("--detach cannot be used under torchrun; detach the torchrun command itself "
                 "(e.g. setsid nohup torchrun ... &) and steer rank 0 with cifar-tui ctl RUN", 2)
        from .detach import start_from_cli

        raise typer.Exit(start_from_cli(config, resume=resume, resume_overrides=resume_overrides, ui=not no_ui))
    if not no_ui:
        from engine.distributed import torchrun_env

        if torchrun_env() is not None:
            fail("the dashboard cannot run under torchrun; add --no-ui (cifar-tui --no-ui train ...) "
                 "and watch the job with: cifar-tui watch RUN_FOLDER", 2)
        from .app import run_train_app

        raise typer.Exit(run_train_app(config=config, resume=resume, resume_overrides=resume_overrides))
    from .headless import run_headless

    raise typer.Exit(run_headless(config=config, resume=resume, resume_overrides=resume_overrides))


RUN_HELP = "A run folder, or a run id under the runs folder (see cifar-tui runs)."
RUNS_DIR_HELP = "The runs folder where a run id is looked up (default: the user data folder)."


def _run_folder(run: str, runs_dir: Optional[str]) -> str:
    from .ctl import RunArgError, resolve_run

    try:
        return str(resolve_run(run, runs_dir))
    except RunArgError as e:
        fail(str(e), 2)
        raise  # (fail raises)


@app.command()
def watch(
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Attach the dashboard to a run another process is training (or open a finished one).

    While the run trains, m, M, p, s and x steer it as in your own dashboard (over the
    run's control channel); q detaches and leaves it training."""
    from .app import run_watch_app

    raise typer.Exit(run_watch_app(_run_folder(run, runs_dir)))


@app.command()
def ctl(
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    command: list[str] = typer.Argument(..., metavar="COMMAND", help="pause, resume, stop, save, or mixup on|off|auto."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the run to confirm the command."),
) -> None:
    """Steer a running training from any terminal: pause, resume, stop, save, mixup on|off|auto.

    Waits until the run's events confirm the command and prints one line. Exit codes: 0 done,
    1 the run is not training or refused, 2 bad arguments, 124 no confirmation in time."""
    from .ctl import parse_command, run_ctl

    try:
        cmd = parse_command(command)
    except ValueError as e:
        fail(str(e), 2)
    if not timeout > 0:
        fail(f"--timeout must be a positive number of seconds (got {timeout:g})", 2)
    raise typer.Exit(run_ctl(Path(_run_folder(run, runs_dir)), cmd, timeout))


# --------------------------------------------------------------- evaluate / predict


def _engine_errors():
    from engine.checkpoint import CheckpointError
    from engine.config import ConfigError
    from engine.data import DataError
    from engine.rundir import RunDirError

    return (CheckpointError, ConfigError, DataError, RunDirError)


@app.command("eval")
def eval_cmd(
    checkpoint: str = typer.Argument(..., help="A checkpoint (.pt) or a run folder (uses its best.pt)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Labelled images to evaluate on (default: the test split of the checkpoint's own data). " + DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(500, "--batch-size", "-b", help="Images per forward pass."),
) -> None:
    """Evaluate a checkpoint: accuracy, loss, per-class accuracy, confusion matrix."""
    import json

    from rich.console import Console

    if batch_size < 1:
        fail(f"--batch-size must be at least 1 (got {batch_size})", 2)
    _device_arg(device)
    path = _checkpoint_arg(checkpoint)
    err = Console(stderr=True)
    from .headless import progress_callback

    try:
        with progress_callback(err, "evaluating", enabled=not as_json) as cb:
            from engine.evaluate import evaluate_checkpoint

            result = evaluate_checkpoint(path, data, device=device, batch_size=batch_size, progress=cb).to_dict()
    except _engine_errors() as e:
        fail(str(e), 1)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from .headless import render_eval

    render_eval(Console(), result)


def _device_arg(device: str) -> None:
    """Refuse a --device this machine cannot use (exit 2), before anything is read."""
    from engine.config import ConfigError
    from engine.device import resolve_device

    try:
        resolve_device(device)
    except ConfigError as e:
        fail(str(e), 2)


def _checkpoint_arg(checkpoint: str) -> str:
    """The checkpoint file an eval/predict argument names (a run folder: its best.pt)."""
    from engine.rundir import RunDir

    p = Path(checkpoint).expanduser()
    if p.is_dir():
        found = RunDir(p.parent if p.name == "checkpoints" else p).checkpoint_for("inference")
        if found is None:
            fail(f"{checkpoint}: a folder without checkpoints/best.pt or last.pt; give a .pt file", 1)
        return str(found)
    if not p.exists():
        fail(f"{checkpoint}: no such checkpoint", 1)
    return str(p)


PREDICT_COLUMNS = ("ID", "Labels", "File", "Class", "Confidence")


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="A checkpoint (.pt) or a run folder (uses its best.pt)."),
    inputs: list[str] = typer.Argument(..., help="Image files, folders, zips, or CIFAR-style pickles of unlabelled images ({'data': N x 3072 uint8})."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write a CSV with header ID,Labels (ID = the image's position in input order, Labels = class index); an image that cannot be decoded is skipped, its ID left out and named on stderr."),
    columns: Optional[str] = typer.Option(None, "--columns", help="The CSV's columns, comma-separated, from: " + ",".join(PREDICT_COLUMNS) + "  [default: ID,Labels]"),
    full: bool = typer.Option(False, "--full", help="All CSV columns: " + ",".join(PREDICT_COLUMNS) + "."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Classes to show per image in the table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(500, "--batch-size", "-b", help="Images per forward pass."),
    force: bool = typer.Option(False, "--force", help="Let --output replace an existing file that is not a CSV of cifar-tui predict (never a checkpoint or an input)."),
) -> None:
    """Predict classes of images with a checkpoint (table, or CSV with --output)."""
    from rich.console import Console

    if top_k < 1:
        fail(f"--top-k must be at least 1 (got {top_k})", 2)
    if batch_size < 1:
        fail(f"--batch-size must be at least 1 (got {batch_size})", 2)
    _device_arg(device)
    cols = _predict_columns(columns, full)
    path = _checkpoint_arg(checkpoint)
    if output is not None:
        _check_output_path(output, [path, *inputs], force)
    err = Console(stderr=True, soft_wrap=True)  # notes stay whole lines (paths are long)
    from .headless import progress_callback

    try:
        from engine.checkpoint import load_checkpoint
        from engine.data import read_predict_inputs
        from engine.evaluate import predict_checkpoint

        load_checkpoint(path, purpose="inference")  # refuse a bad checkpoint before decoding any input
        got = read_predict_inputs(inputs)
        with progress_callback(err, "predicting", enabled=output is not None) as cb:
            probs, classes = predict_checkpoint(path, got.x, device=device, batch_size=batch_size, progress=cb)
    except _engine_errors() as e:
        fail(str(e), 1)
    for note in got.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
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
    from .headless import render_predictions

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
        fail(f"--columns {columns!r}: choose from {','.join(PREDICT_COLUMNS)} (comma-separated)", 2)
    return list(dict.fromkeys(by_name[c.lower()] for c in chosen))


def _check_output_path(output: str, reads: list[str], force: bool) -> Path:
    """The file ``predict --output`` may write, or a one-line refusal (exit 2).

    A command must not destroy what it reads: the output is never one of ``reads``
    (the checkpoint, the inputs) nor any checkpoint, whatever ``--force`` says. An
    existing file is replaced only if it is a CSV this command wrote (its header starts
    ``ID,Labels``, or holds only ``--columns`` names), is empty, or ``force`` is given. The
    write itself is atomic (a temporary file renamed into place), so a kill never leaves a
    partial CSV.
    """
    out = Path(output).expanduser()
    if out.is_dir():
        fail(f"--output {output} is a folder; give a file name such as predictions.csv", 2)
    if not out.parent.is_dir():
        fail(f"--output {output}: the folder {out.parent} does not exist", 2)
    if not out.exists() and not out.is_symlink():
        return out
    from engine.files import is_regular_file

    if not is_regular_file(out):
        fail(f"--output {output} is not a regular file (a pipe, a device or a dangling link?); give a new file name", 2)
    for other in reads:
        try:
            same = out.samefile(other)
        except OSError:
            same = False
        if same:
            fail(f"--output {output} is a file this command reads; give another file name such as predictions.csv", 2)
    head = _file_head(out)
    if head is None:
        fail(f"--output {output} exists and cannot be read; give a new file name", 2)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80") or out.suffix in (".pt", ".pth"):
        fail(f"--output {output} is a checkpoint or other binary data (a zip, a pickle); predictions never "
             "replace one: give a file name such as predictions.csv", 2)
    if not head or _is_predictions_csv(head) or force:
        return out
    fail(f"--output {output} exists and is not a predictions CSV written by cifar-tui; "
         "give a new file name, or add --force to replace it", 2)
    return out


def _file_head(path: Path, n: int = 256) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return None


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
        fail(f"cannot write {path} ({e.strerror or e})", 1)


@app.command()
def runs(
    ctx: typer.Context,
    runs_dir: Optional[str] = typer.Argument(None, help="The runs folder (default: the user data folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as one JSON document (a list)."),
    runs_dir_opt: Optional[str] = typer.Option(None, "--runs-dir", help="The runs folder, as an option (as train's)."),
) -> None:
    """List runs with their status and checkpoints (epoch, validation and test accuracy, size)."""
    import json

    from rich.console import Console

    from engine.runs import default_runs_dir, list_runs

    runs_dir = _runs_dir(ctx, _one_folder(runs_dir, runs_dir_opt))
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    if runs_dir and not root.exists():
        fail(f"{runs_dir}: no such folder", 1)
    if root.exists() and not root.is_dir():
        fail(f"{runs_dir}: a file, not a runs folder", 1)
    found = list_runs(root)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    from .headless import render_runs

    console = Console(highlight=False)
    if not console.is_terminal:  # piped: whole run ids and paths, whatever the width
        console = Console(highlight=False, width=1000)
    render_runs(console, found, root)


@app.command()
def browse(ctx: typer.Context,
           runs_dir: Optional[str] = typer.Argument(None, help="The runs folder (default: the user data folder)."),
           runs_dir_opt: Optional[str] = typer.Option(None, "--runs-dir", help="The runs folder, as an option.")) -> None:
    """Open the checkpoint browser: evaluate checkpoints, look at predictions, compare and resume runs."""
    from .app import run_browse_app

    raise typer.Exit(run_browse_app(_runs_dir(ctx, _one_folder(runs_dir, runs_dir_opt))))


def _one_folder(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    """The runs folder given as an argument or as --runs-dir (not two different ones)."""
    if positional is not None and option is not None and Path(positional).expanduser() != Path(option).expanduser():
        fail(f"two runs folders given ({positional} and --runs-dir {option}); give one", 2)
    return positional if positional is not None else option


@app.command()
def export(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="A run folder, or a run id in the runs folder."),
    csv_file: Optional[str] = typer.Option(None, "--csv", help="Write one row per epoch (epoch, train/val loss and accuracy, lr, mixup, seconds) to this CSV file; - for stdout."),
    tensorboard: Optional[str] = typer.Option(None, "--tensorboard", help="Write TensorBoard scalars under DIR/<run id> (needs: pip install 'cifar-tui[tensorboard]')."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Export a run's history: a CSV of its epochs, or TensorBoard scalars."""
    from engine.export import ExportError, epochs_csv, read_history, write_csv, write_tensorboard

    if csv_file is None and tensorboard is None:
        fail("nothing to export: add --csv FILE and/or --tensorboard DIR", 2)
    run_dir = _run_arg(run, _runs_dir(ctx, runs_dir))
    try:
        history = read_history(run_dir)
        if not history.epochs and not history.steps:
            fail(f"{run_dir}: no finished epoch or logged step to export yet", 1)
        if csv_file == "-":
            typer.echo(epochs_csv(history), nl=False)
        elif csv_file is not None:
            n = write_csv(history, Path(csv_file).expanduser())
            typer.echo(f"wrote {n} epoch(s) of {history.run_id} to {csv_file}", err=True)
        if tensorboard is not None:
            where = write_tensorboard(history, tensorboard)
            typer.echo(f"wrote TensorBoard scalars of {history.run_id} to {where} "
                       f"(view them with: tensorboard --logdir {tensorboard})", err=True)
    except ExportError as e:
        fail(str(e), 1)


def _run_arg(run: str, runs_dir: Optional[str]) -> Path:
    """A run folder named by its path or by its id in the runs folder."""
    from engine.runs import default_runs_dir

    p = Path(run).expanduser()
    if p.is_dir():
        return p
    if "/" not in run and "\\" not in run:
        root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
        if (root / run).is_dir():
            return root / run
        fail(f"{run}: no such run folder, and no run with that id in {root}", 1)
    fail(f"{run}: no such run folder", 1)
    raise AssertionError  # pragma: no cover


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="cifar-tui")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
