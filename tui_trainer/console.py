"""The command line's rich output: the tables of ``eval``, ``predict`` and ``runs``,
their progress bars, and what ``train --detach`` says when its run has started.

Only rich here (no textual, no torch at import time): ``--no-ui`` commands use it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from engine import commands

from .cliargs import one_line
from .exitcodes import EXIT_FAILED, EXIT_OK
from .formatting import STATUS_STYLE, fmt_pct, format_size


def pct_cell(v: Optional[float]) -> str:
    """A percentage in a fixed width, for columns of numbers."""
    return f"{fmt_pct(v, 2, missing='n/a'):>6}"


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (string, style) pairs. Strings are never parsed as
    markup: paths, class names and messages from files may hold ``[`` and ``]``."""
    return Text.assemble(*parts)



class progress_callback:
    """Context manager giving a ``(done, total)`` callback that drives a rich progress bar."""

    def __init__(self, console: Console, label: str, enabled: bool = True):
        self.console, self.label, self.enabled = console, label, enabled
        self.progress: Optional[Progress] = None
        self.task = None

    def __enter__(self):
        if not self.enabled:
            return None
        self.progress = Progress(TextColumn(self.label), BarColumn(bar_width=30), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()

        def cb(done: int, total: int) -> None:
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=total)
            self.progress.update(self.task, completed=done)

        return cb

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def render_eval(console: Console, result: dict) -> None:
    from rich.table import Table

    classes = result.get("classes") or [str(i) for i in range(len(result["per_class_accuracy"]))]
    console.print(styled((f"{pct_cell(result['accuracy']).strip()}", "bold"),
                         f" accuracy, loss {result['loss']:.4f} on {result['images']:,} images of {result['data_source']} "
                         f"(checkpoint {result['checkpoint']}, epoch {result.get('epoch')})"), soft_wrap=True)
    for note in result.get("notes", []):
        console.print(styled(f"note: {one_line(note)}"))
    per = Table(title="per-class accuracy", show_edge=False)
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("images", justify="right")
    cm = result["confusion_matrix"]
    for i, c in enumerate(classes):
        per.add_row(Text(c), pct_cell(result["per_class_accuracy"][i]).strip(), f"{sum(cm[i]):,}")
    console.print(per)
    grid = Table(title="confusion matrix (rows: true class, columns: predicted)", show_edge=False, padding=(0, 1))
    grid.add_column("")
    for c in classes:
        grid.add_column(Text(c[:5]), justify="right")
    for i, c in enumerate(classes):
        total = max(1, sum(cm[i]))
        cells = [Text(str(v), style="bold green" if i == j else ("red" if v / total > 0.05 else "dim"))
                 for j, v in enumerate(cm[i])]
        grid.add_row(Text(c[:10]), *cells)
    console.print(grid)


def render_predictions(console: Console, names: list, probs, classes: list, top_k: int,
                       ids: Optional[list[int]] = None) -> None:
    """A table of the top classes per image; ``ids``: each image's position in the input
    (images that could not be decoded have none), default 0, 1, 2..."""
    from rich.table import Table

    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    table = Table(show_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("input", overflow="fold")
    for r in range(k):
        table.add_column(f"#{r + 1}")
    for i, name in enumerate(names):
        table.add_row(str(ids[i] if ids is not None else i), Text(str(name)),
                      *[Text(f"{classes[int(c)]} {100 * float(p):.1f}%") for p, c in zip(top_p[i], top_i[i])])
    console.print(table)


# the runs table's columns, in the order they are dropped last: a narrow terminal loses
# the columns at the end of this list first (the run id is never dropped, nor cut)
RUNS_COLUMNS = ("run", "status", "checkpoint", "ep", "val", "test", "size", "data", "note")
RIGHT = {"ep", "val", "test", "size"}
ESSENTIAL = RUNS_COLUMNS[:5]  # kept at 80 columns (the checkpoint's name narrowed if need be)
SHRINK_TO = 12  # the checkpoint column's narrowest


def _runs_rows(runs: list, piped: bool) -> list[dict[str, Text]]:
    rows = []
    for run in runs:
        data = run.data or ""
        if not piped:
            data = Path(data).name if "/" in data or "\\" in data else data
        ckpts = run.checkpoints or (None,)
        for i, c in enumerate(ckpts):
            first = i == 0
            test = ""
            if c is not None and c.test_acc is not None:
                test = pct_cell(c.test_acc).strip()
            elif c is not None and c.test_stale:
                test = "stale"
            rows.append({
                "run": Text(one_line(run.run_id)) if first else Text(""),
                "status": Text(run.status, style=STATUS_STYLE.get(run.status, "")) if first else Text(""),
                "checkpoint": Text(c.name) if c else Text("(no checkpoints)", style="dim"),
                "ep": Text(c.epoch_label if c is not None else ""),
                "val": Text(pct_cell(c.val_acc).strip() if c is not None and c.val_acc is not None else ""),
                "test": Text(test, style="dim" if test == "stale" else ""),
                "size": Text(format_size(c.size) if c else ""),
                "data": Text(data if first else ""),
                "note": Text(run.note if first else "", style="italic"),
                "_end": i == len(ckpts) - 1,
            })
    return rows


def fit_columns(widths: dict[str, int], room: int, pad: int = 3) -> dict[str, int]:
    """The columns of RUNS_COLUMNS that fit ``room`` characters, with their widths (each
    column takes its width plus ``pad``). Columns go from the end of the list; to keep the
    ESSENTIAL ones the checkpoint's name narrows first, to SHRINK_TO at the least (cut with
    an ellipsis); the run id always stays, whole."""
    keep = [c for c in RUNS_COLUMNS if widths.get(c, 0) > 0 or c == "run"]
    out = {c: widths[c] for c in keep}

    def over() -> int:
        return sum(w + pad for w in out.values()) - room

    while len(out) > 1 and over() > 0 and list(out)[-1] not in ESSENTIAL:
        out.popitem()
    if over() > 0 and "checkpoint" in out:
        out["checkpoint"] = max(SHRINK_TO, out["checkpoint"] - over())
    while len(out) > 1 and over() > 0:
        out.popitem()
    return out


def render_runs(console: Console, runs: list, root) -> None:
    """Runs and their checkpoints as a table (a list of :class:`engine.runs.RunSummary`),
    fitted to the terminal's width by dropping columns (RUNS_COLUMNS' order), never by
    cutting a run id; piped, every column and whole paths."""
    from rich import box
    from rich.table import Table

    if not runs:
        console.print(styled(f"no runs in {root} yet; start one with: cifar-tui --no-ui train --data synthetic --preset tiny"))
        return
    piped = not console.is_terminal
    rows = _runs_rows(runs, piped)
    widths = {c: max(max(r[c].cell_len for r in rows), len(c) if any(r[c].plain for r in rows) else 0)
              for c in RUNS_COLUMNS}
    if not piped:
        widths["data"] = min(widths["data"], 14)
        widths["note"] = min(widths["note"], 24)
    shown = fit_columns(widths, console.width - 1) if not piped else {c: w for c, w in widths.items() if w}
    dropped = [c for c in RUNS_COLUMNS if c not in shown and widths[c] > 0]
    table = Table(title=Text(f"runs in {root}"), box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left",
                  pad_edge=False, caption=Text(f"(hidden at this width: {', '.join(dropped)}; "
                                               "cifar-tui runs --json has everything)" if dropped else ""),
                  caption_justify="left")
    for c in shown:
        table.add_column(c, justify="right" if c in RIGHT else "left", no_wrap=True,
                         min_width=shown[c] if c == "run" else None,
                         overflow="ellipsis", max_width=None if piped or c == "run" else shown[c])
    for r in rows:
        table.add_row(*(r[c] for c in shown), end_section=r["_end"])
    console.print(table)
    for run in runs:
        if run.status == "damaged":
            console.print(Text(f"damaged: {one_line(run.run_id)}: {one_line(run.reason)}", style="magenta"), soft_wrap=True)


# ------------------------------------------------------------------ train --detach


def start_from_cli(config: Any = None, *, resume: Optional[str] = None, resume_overrides: Optional[dict] = None,
                   ui: bool = True) -> int:
    """``cifar-tui train --detach ...``: start the run in the background, say where it is
    and how to reach it, then (``ui``) open the dashboard attached to it. Exit code: 0
    started, 1 it could not start (its one-line error on stderr)."""
    from .detach import DetachError, launch

    err = Console(stderr=True, highlight=False)
    try:
        with err.status("starting the run in the background (loading torch and the data)..."):
            launched = launch(config, resume=resume, resume_overrides=resume_overrides)
    except DetachError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("stopped waiting; the run goes on starting in the background (cifar-tui runs shows it)",
              file=sys.stderr)
        return EXIT_OK
    run = launched.run
    if launched.note:
        print(f"note: {one_line(launched.note)}")
    state = "training" if launched.started else "still starting (loading the data)"
    print(f"{state} in the background (process {launched.pid}): {run.path}")
    print(f"  attach:  cifar-tui watch {run.path}")
    print(f"  control: cifar-tui ctl {run.path} {commands.SHORT_USAGE}")
    print(f"  output:  {run.log_path}")
    if ui and launched.started:
        from .app import run_watch_app

        return run_watch_app(str(run.path))
    return EXIT_OK
