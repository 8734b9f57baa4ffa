"""The ``cifar-tui`` command line (typer).

Importing this module must stay cheap: no torch, no textual at import time, so
that ``cifar-tui --help`` answers at once. Heavy modules load inside commands.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from engine.commands import USAGE as CTL_USAGE  # the command table's words (no torch)
from engine.config import DEFAULT_PRESET, describe_presets

from . import cli_eval, cli_export, model_cmd, sweep_cmd
from .cliargs import DATA_HELP, RUN_HELP, RUNS_DIR_HELP, checkpoint_arg, fail, run_arg, runs_dir_of
from .exitcodes import EXIT_FAILED, EXIT_USAGE

app = typer.Typer(
    add_completion=False,
    help="Train a small SE-ResNet on CIFAR-10 from a dashboard in the terminal.\n\n"
    "Run with no command to open the app; `cifar-tui --no-ui train` trains headless.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    no_ui: bool = typer.Option(False, "--no-ui", help="Run the command headless (rich progress) instead of the dashboard."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="The runs folder (default: $CIFAR_TUI_RUNS_DIR, else the user data folder). Also the default of the commands' own --runs-dir."),
) -> None:
    if runs_dir is not None:
        where = Path(runs_dir).expanduser()
        if where.exists() and not where.is_dir():
            fail(f"--runs-dir {runs_dir} is a file; give a folder for the run folders", EXIT_USAGE)
    ctx.obj = {"no_ui": no_ui, "runs_dir": runs_dir}
    if ctx.invoked_subcommand is None:
        if no_ui:
            fail("--no-ui needs a command, for example: cifar-tui --no-ui train --preset tiny", EXIT_USAGE)
        from .app import run_start_app

        raise typer.Exit(run_start_app(runs_dir))


# ------------------------------------------------------------------------------ train

# train's settings, in the order of its help: name -> (type, flags, help). Each is an option
# whose default, None, means "the preset's" (or, with --resume, "the run's").
TRAIN_SETTINGS: dict[str, tuple[type, tuple[str, ...], str]] = {
    "data": (str, ("--data", "-d"), DATA_HELP + "  [default: cifar10]"),
    "preset": (str, ("--preset",), f"Recipe: {describe_presets()}.  [default: {DEFAULT_PRESET}]"),
    "epochs": (int, ("--epochs", "-e"), "Epochs in total (with --resume: extend the run to this many; see --extend-schedule)."),
    "width": (float, ("--width", "-w"), "Channel width multiplier; 1.0 is the report's 4,993,166-parameter network."),
    "blocks": (str, ("--blocks",), model_cmd.BLOCKS_HELP + "  [default: 4,3,2,3]"),
    "channels": (str, ("--channels",), model_cmd.CHANNELS_HELP + "  [default: 64,128,128,256]"),
    "strides": (str, ("--strides",), model_cmd.STRIDES_HELP + "  [default: 1,2,1,2]"),
    "stem_channels": (int, ("--stem-channels",), model_cmd.STEM_HELP + "  [default: 64]"),
    "se": (str, ("--se",), model_cmd.SE_HELP + "  [default: stem]"),
    "se_reduction": (int, ("--se-reduction",), model_cmd.SE_REDUCTION_HELP + "  [default: 16]"),
    "max_params": (int, ("--max-params",), "Refuse a network with more trainable parameters than this (see cifar-tui model)."),
    "batch_size": (int, ("--batch-size", "-b"), "Images per step."),
    "lr": (float, ("--lr",), "Peak learning rate (extending a finished run: the new schedule's peak)."),
    "mixup": (bool, ("--mixup/--no-mixup",), "Use mixup on the schedule's epochs, or never."),
    "subset": (int, ("--subset",), "Train on only N images (for quick runs)."),
    "val_size": (int, ("--val-size",), "Validation images held out of the training set; 0: train on all (default: 5,000, or 10% of a small set; speedrun: 0)."),
    "seed": (int, ("--seed",), "Random seed (split, initialisation, augmentation).  [default: 0]"),
    "device": (str, ("--device",), "auto, cpu, cuda, cuda:N or mps.  [default: auto]"),
    "runs_dir": (str, ("--runs-dir",), "Where run folders go (default: the user data folder)."),
    "save_every": (int, ("--save-every",), "Also keep a copy of the checkpoint as checkpoints/epoch-NNN.pt every N epochs (last.pt is written on those epochs too)."),
    "save_every_epochs": (int, ("--save-every-epochs",), "Write checkpoints/last.pt every N epochs; 0: at the end of the first epoch a minute or more after the last write. Always at the run's end and at a stop; a new best.pt is written with it.  [default: 0]"),
    "compile": (bool, ("--compile/--no-compile",), "torch.compile the training step on CUDA (compile time is reported apart; the last, smaller batch of each epoch is then skipped).  [default: the preset's]"),
    "compile_mode": (str, ("--compile-mode",), "torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune or max-autotune-no-cudagraphs."),
    "warmup_start": (float, ("--warmup-start",), "The lr warm-up rises from this fraction of the peak lr (0: from zero).  [default: the preset's]"),
    "bn_momentum": (float, ("--bn-momentum",), "BatchNorm momentum, PyTorch's convention: the weight of each new batch in the running statistics (PyTorch's default 0.1; airbench's 0.6 is 0.4 here).  [default: the preset's]"),
    "lookahead_every": (int, ("--lookahead-every",), "Every N steps fold a slow average of the weights back into them (lookahead; 0: off).  [default: the preset's]"),
    "lookahead_decay": (float, ("--lookahead-decay",), "The lookahead average's decay per step, reached at the run's end (it grows with the run's progress).  [default: 0.95]"),
}


def _with_settings(settings: dict[str, tuple[type, tuple[str, ...], str]]):
    """Give a command taking ``**settings`` one typer option per entry of ``settings``,
    before its own options (typer reads the signature)."""
    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                                   default=typer.Option(None, *flags, help=help))
                 for name, (kind, flags, help) in settings.items()]
        fn.__signature__ = sig.replace(parameters=own[:1] + extra + [p.replace(kind=p.KEYWORD_ONLY) for p in own[1:]])
        fn.__annotations__ = {**fn.__annotations__, **{p.name: p.annotation for p in extra}}
        return fn
    return wrap


@app.command()
@_with_settings(TRAIN_SETTINGS)
def train(
    ctx: typer.Context,
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue from a checkpoint (.pt), a run folder or a run id (its last.pt), with its stored settings."),
    extend_schedule: Optional[str] = typer.Option(
        None, "--extend-schedule", metavar="restart|keep",
        help="With --resume --epochs N, extending a run that finished its epochs: restart (the default) trains "
             "the added epochs on a new schedule of the run's kind (a cosine, or a linear decay) from a peak lr "
             "(--lr, else a tenth of the run's) down to 0; keep follows the run's old schedule exactly (a "
             "finished cosine stays near lr 0). The lr of the next epoch is printed before training."),
    detach: bool = typer.Option(False, "--detach", help="Train in a background process of its own that survives closing the terminal or the SSH session (output in the run folder's train.log); then attach the dashboard to it, or with --no-ui print how to attach (cifar-tui watch RUN) and steer it (cifar-tui ctl RUN ...)."),
    no_ui_here: bool = typer.Option(False, "--no-ui", hidden=True),
    **settings: Any,
) -> None:
    """Train the network (dashboard by default; headless with --no-ui)."""
    from engine.config import ConfigError, make_config

    no_ui = bool((ctx.obj or {}).get("no_ui")) or no_ui_here
    preset = settings.pop("preset")
    settings["runs_dir"] = runs_dir = runs_dir_of(ctx, settings["runs_dir"])
    if settings["compile_mode"] is not None and settings["compile"] is None:
        settings["compile"] = True  # a mode says to compile
    overrides: dict[str, Any] = dict(settings)
    config = None
    if resume is not None:
        if preset is not None:
            overrides["preset"] = preset
        resume = checkpoint_arg(resume, "resume", runs_dir)
        # Validate the overrides on their own (an impossible value is refused before loading).
        try:
            make_config("tiny", **{k: v for k, v in overrides.items() if k != "preset"})
        except ConfigError as e:
            fail(str(e), EXIT_USAGE)
    else:
        try:
            config = make_config(preset or "paper", **overrides)
        except ConfigError as e:
            fail(str(e), EXIT_USAGE)
    resume_overrides = {k: v for k, v in overrides.items() if v is not None} if resume else None
    if extend_schedule is not None:
        from engine.schedule import EXTEND_SCHEDULES

        if resume is None:
            fail("--extend-schedule goes with --resume RUN --epochs N (extending a finished run)", EXIT_USAGE)
        if extend_schedule not in EXTEND_SCHEDULES:
            fail(f"--extend-schedule must be {' or '.join(EXTEND_SCHEDULES)} (got {extend_schedule!r})", EXIT_USAGE)
        resume_overrides["extend_schedule"] = extend_schedule

    if detach:
        from engine.distributed import torchrun_env

        if torchrun_env() is not None:
            fail("--detach cannot be used under torchrun; detach the torchrun command itself "
                 "(e.g. setsid nohup torchrun ... &) and steer rank 0 with cifar-tui ctl RUN", EXIT_USAGE)
        from .console import start_from_cli

        raise typer.Exit(start_from_cli(config, resume=resume, resume_overrides=resume_overrides, ui=not no_ui))
    if not no_ui:
        from engine.distributed import torchrun_env

        if torchrun_env() is not None:
            fail("the dashboard cannot run under torchrun; add --no-ui (cifar-tui --no-ui train ...) "
                 "and watch the job with: cifar-tui watch RUN_FOLDER", EXIT_USAGE)
        from .app import run_train_app

        raise typer.Exit(run_train_app(config=config, resume=resume, resume_overrides=resume_overrides))
    from .headless import run_headless

    raise typer.Exit(run_headless(config=config, resume=resume, resume_overrides=resume_overrides))


@app.command()
def watch(
    ctx: typer.Context,
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Attach the dashboard to a run another process is training (or open a finished one).

    While the run trains, m, M, p, s and x steer it as in your own dashboard (over the
    run's control channel); q detaches and leaves it training."""
    from .app import run_watch_app

    raise typer.Exit(run_watch_app(str(run_arg(run, runs_dir_of(ctx, runs_dir)))))


@app.command()
def ctl(
    ctx: typer.Context,
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    command: list[str] = typer.Argument(..., metavar="COMMAND", help=f"{CTL_USAGE}."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the run to confirm the command."),
) -> None:
    """Steer a running training from any terminal: COMMAND is one of those below.

    Waits until the run's events confirm the command and prints one line. Exit codes: 0 done,
    1 the run is not training or refused, 2 bad arguments, 124 no confirmation in time."""
    from .ctl import parse_command, run_ctl

    try:
        cmd = parse_command(command)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    if not timeout > 0:
        fail(f"--timeout must be a positive number of seconds (got {timeout:g})", EXIT_USAGE)
    raise typer.Exit(run_ctl(run_arg(run, runs_dir_of(ctx, runs_dir)), cmd, timeout))


app.command("eval")(cli_eval.eval_cmd)
app.command()(cli_eval.predict)
app.command("check-submission")(cli_eval.check_submission_cmd)


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

    from engine.runs import list_runs
    from engine.rundir import runs_root

    runs_dir = runs_dir_of(ctx, _one_folder(runs_dir, runs_dir_opt))
    root = runs_root(runs_dir)
    if runs_dir and not root.exists():
        fail(f"{runs_dir}: no such folder", EXIT_FAILED)
    if root.exists() and not root.is_dir():
        fail(f"{runs_dir}: a file, not a runs folder", EXIT_FAILED)
    found = list_runs(root)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    from .console import render_runs

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

    raise typer.Exit(run_browse_app(runs_dir_of(ctx, _one_folder(runs_dir, runs_dir_opt))))


def _one_folder(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    """The runs folder given as an argument or as --runs-dir (not two different ones)."""
    if positional is not None and option is not None and Path(positional).expanduser() != Path(option).expanduser():
        fail(f"two runs folders given ({positional} and --runs-dir {option}); give one", EXIT_USAGE)
    return positional if positional is not None else option


app.command()(cli_export.export)

app.command("model")(model_cmd.model)
app.command("sweep")(sweep_cmd.sweep)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="cifar-tui")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
