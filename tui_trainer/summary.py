"""What a run's end leaves, said once for headless training and for a dashboard that closes."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.text import Text

from engine import events as ev

from .cliargs import one_line
from .formatting import fmt_pct


def test_figure(f: Optional[ev.RunFinished], best: Optional[ev.CheckpointSaved], run_dir: Optional[str]) -> Optional[str]:
    """The test accuracy of a completed run's best checkpoint, evaluated now and stored beside
    it as the browser stores it; when its data has no test split (or cannot be read), the
    commands that evaluate it instead. None: nothing to say (no best checkpoint, not completed)."""
    if f is None or f.outcome != "completed" or best is None:
        return None
    from engine.evaluate import evaluate_checkpoint

    from .cliargs import engine_errors

    try:
        r = evaluate_checkpoint(best.path)
    except engine_errors() as e:
        run = run_dir or best.path
        return (f"test accuracy:   not evaluated ({one_line(str(e))}); evaluate it on a test set with "
                f"`cifar-tui eval {run} --data PATH`, or on its validation images with `cifar-tui eval {run} --split val`")
    return f"test accuracy:   {fmt_pct(r.result.accuracy, 2, missing='n/a')}  (best checkpoint on {r.source}; stored beside it)"


def print_summary(c: Console, f: Optional[ev.RunFinished], run_dir: Optional[str], best: Optional[ev.CheckpointSaved],
                  resume: str = "cifar-tui --no-ui train --resume", params: Optional[int] = None) -> None:
    """What a run's end leaves (headless, and a dashboard on leaving): the error, the run
    folder, the trainable parameter count, the best checkpoint's validation accuracy and
    (a completed run) its test accuracy, and for a stopped run the command (``resume``) that goes on."""
    if f is None:
        return
    if f.outcome == "failed":
        c.print(Text.assemble(("error: ", "bold red"), one_line(f.reason)), soft_wrap=True)
    if run_dir:
        c.print(Text(f"run folder:      {run_dir}"), soft_wrap=True)
    if params is not None:
        c.print(Text(f"parameters:      {params:,} trainable"), soft_wrap=True)
    if best is not None:
        acc = fmt_pct(best.val_acc, 2, missing="n/a")
        c.print(Text(f"best checkpoint: {best.path}  (val acc {acc} at epoch {best.epoch})"), soft_wrap=True)
        test = test_figure(f, best, run_dir)
        if test:
            c.print(Text(test), soft_wrap=True)
    if f.save_error:
        c.print(Text.assemble(("error: ", "bold red"), "training ended but its last checkpoint was not written: "
                              f"{one_line(f.save_error)}"), soft_wrap=True)
    elif f.outcome in ("stopped", "pruned") and f.last_checkpoint and run_dir:
        c.print(Text(f"{f.reason}; saved in {f.last_checkpoint}"), soft_wrap=True)
        c.print(Text(f"continue with: {resume} {run_dir}"), soft_wrap=True)
    elif f.last_checkpoint and best is None:
        c.print(Text(f"last checkpoint: {f.last_checkpoint}"), soft_wrap=True)
