"""``cifar-tui sweep``: a search over recipes and networks (engine.sweep), run from the terminal.

    cifar-tui --no-ui sweep SPEC.toml --trials 20        # trials one after another, headless
    cifar-tui sweep SPEC.toml --trials 20                # the same in the Sweep screen
    cifar-tui sweep --name NAME --status [--json]        # the study's trials
    cifar-tui sweep --name NAME --best                   # the best trial as train flags

Several processes (one per GPU, or on several machines with a shared --storage) started
with the same spec and ``--trials N`` share one study and stop when it holds N trials.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from .cliargs import fail, runs_dir_of
from .exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .formatting import SWEEP_COLUMNS, sweep_best, sweep_trial_cells

STORAGE_HELP = ("Where the study lives: a database URL (sqlite:///FILE, postgresql://USER@HOST/DB, mysql://...) or a "
                "journal file path on a shared disk. Default: RUNS/sweeps/NAME.db (SQLite).")


def sweep(
    ctx: typer.Context,
    spec_file: Optional[str] = typer.Argument(None, metavar="[SPEC.toml]", help="The sweep's spec (TOML)."),
    trials: int = typer.Option(20, "--trials", "-n", min=1, max=100_000,
                               help="Trials the study holds in all (several processes share them)."),
    name: Optional[str] = typer.Option(None, "--name", help="The study's name (default: [sweep] name of the spec)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps (one per process)."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where the trials' run folders go."),
    status: bool = typer.Option(False, "--status", help="Show the study's trials and exit."),
    best: bool = typer.Option(False, "--best", help="Show the best trial's settings as train flags, and its checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="With --status or --best: print JSON."),
) -> None:
    """Search recipes and network shapes with Optuna: each trial an ordinary run."""
    from engine import sweep as sw
    from engine.trials import Sweep

    runs = Path(runs_dir_of(ctx, runs_dir) or _default_runs()).expanduser()
    if status or best:
        if name is None and spec_file is None:
            fail("--status and --best need the study: give --name NAME (or the spec file)", EXIT_USAGE)
        study_name = name or _spec(spec_file, None).name
        try:
            url = storage or sw.default_storage(runs, study_name, create=False)
        except sw.SweepError as e:
            fail(str(e), EXIT_USAGE)
        return _report(study_name, url, status, as_json)
    if spec_file is None:
        fail("give the sweep's spec file: cifar-tui --no-ui sweep SPEC.toml --trials 20 (see the README's Sweeps)",
             EXIT_USAGE)
    if device is not None:
        from engine.config import ConfigError, make_config

        try:
            make_config("tiny", device=device)
        except ConfigError as e:
            fail(str(e), EXIT_USAGE)
    spec = _spec(spec_file, name)
    url = storage or sw.default_storage(runs, spec.name)
    try:
        runner = Sweep(spec, url, runs_dir=str(runs), device=device)
    except sw.SweepError as e:
        fail(str(e), EXIT_FAILED)
    if not (ctx.obj or {}).get("no_ui"):
        from .app import run_sweep_app

        raise typer.Exit(run_sweep_app(runner, trials))
    raise typer.Exit(run_headless_sweep(runner, trials))


def _default_runs() -> str:
    from engine.rundir import default_runs_dir

    return str(default_runs_dir())


def _spec(path: Optional[str], name: Optional[str]):
    from engine.sweep import SpecError, load_spec

    try:
        return load_spec(path, name)
    except SpecError as e:
        fail(str(e), EXIT_USAGE)


def _report(study_name: str, url: str, status: bool, as_json: bool) -> None:
    import optuna

    from engine import sweep as sw
    from engine.trials import best_trial, summary_rows

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=sw.open_storage(url))
    except sw.SweepError as e:
        fail(str(e), EXIT_FAILED)
    except KeyError:
        fail(f"no sweep named {study_name!r} in {sw.redact(url)}; start one with: cifar-tui --no-ui sweep SPEC.toml",
             EXIT_USAGE)
    rows = summary_rows(study)
    if status:
        if as_json:
            typer.echo(json.dumps({"name": study_name, "storage": sw.redact(url), "trials": rows}, default=str))
        else:
            from rich.console import Console

            Console(highlight=False).print(trials_table(rows, f"sweep {study_name}"))
        raise typer.Exit(EXIT_OK)
    top = best_trial(study)
    if top is None:
        fail(f"the sweep {study_name!r} has no completed trial yet", EXIT_FAILED)
    spec = study.user_attrs.get("spec", {})
    flags = sw.as_train_flags(sw.SweepSpec(name=study_name, preset=spec.get("preset", "paper"),
                                           fixed=spec.get("fixed", {})), top["params"])
    checkpoint = str(Path(top["run_dir"]) / "checkpoints" / "best.pt") if top.get("run_dir") else None
    if as_json:
        typer.echo(json.dumps({**top, "train_flags": flags, "checkpoint": checkpoint}, default=str))
    else:
        typer.echo(f"best: trial {top['number']}, validation accuracy {100 * top['value']:.2f}%")
        typer.echo("train it again: cifar-tui train " + " ".join(flags))
        if checkpoint:
            typer.echo(f"its run: {top['run_dir']}")
    raise typer.Exit(EXIT_OK)


def trials_table(rows: list[dict], title: str):
    """A rich table of trials (the headless renderer and --status)."""
    from rich.markup import escape
    from rich.table import Table

    keys = sorted({k for r in rows for k in r["params"]})
    t = Table(title=title, title_justify="left")
    for col in (*SWEEP_COLUMNS[:2], *keys, *SWEEP_COLUMNS[2:]):
        t.add_column(col, justify="left" if col == "state" else "right", overflow="fold")
    best = sweep_best(rows)
    for r in rows:
        cells, style = sweep_trial_cells(r, keys, best)
        t.add_row(*(escape(c) for c in cells), style=style)
    return t



def run_headless_sweep(runner, trials: int) -> int:
    """Trials one after another with a table that grows as they finish and the current
    trial's progress bar. Ctrl+C (or SIGTERM, SIGHUP) stops the current trial with a
    checkpoint; the next start of the same command resumes it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from engine import events as ev
    from engine import sweep as sw
    from engine.trials import summary_rows

    con = Console(highlight=False)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                        TimeRemainingColumn(), console=con, transient=True)
    task = {"id": None}

    def on_event(event) -> None:
        if isinstance(event, ev.RunStarted):
            total = event.config.get("epochs", 1) * max(1, event.steps_per_epoch)
            task["id"] = progress.add_task(f"trial {event.config.get('sweep', '')}", total=total, status="")
        elif isinstance(event, ev.StepDone) and task["id"] is not None:
            progress.update(task["id"], completed=event.step, status=f"epoch {event.epoch} loss {event.loss:.3f}")
        elif isinstance(event, ev.EpochDone) and task["id"] is not None and event.val_acc is not None:
            progress.update(task["id"], status=f"epoch {event.epoch} val {100 * event.val_acc:.2f}%")

    def on_trial(what: str, row: dict) -> None:
        if what == "finished":
            if task["id"] is not None:
                progress.remove_task(task["id"])
                task["id"] = None
            con.print(trials_table(summary_rows(runner.study), f"sweep {runner.spec.name}"))

    runner.listeners.append(on_event)
    runner.on_trial = on_trial
    if runner.recovered:
        con.print(f"resuming: trial(s) {', '.join(map(str, runner.recovered))} of a stopped sweep queued again")
    stop_reason = {"signal": None}

    def on_signal(signum, frame) -> None:
        stop_reason["signal"] = signum
        runner.interrupt()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
    with progress:
        try:
            trained = runner.run(trials)
        except sw.SweepError as e:
            con.print(f"error: {e}")
            return EXIT_FAILED
    done = runner.done(trials)
    if stop_reason["signal"] is not None:
        con.print(f"stopped ({signal.Signals(stop_reason['signal']).name}): {done} of {trials} trials done; "
                  f"run the same command again to go on")
        return 128 + stop_reason["signal"]
    con.print(f"sweep {runner.spec.name}: {done} of {trials} trials done ({trained} trained by this process)")
    return EXIT_OK
