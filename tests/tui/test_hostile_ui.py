"""Damaged files in the app: a resume from a damaged checkpoint, a metrics file with wrong
field types, run folders whose JSON holds wrong types. The app says what is wrong and
stays usable; nothing of the run is destroyed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import torch
from textual.widgets import DataTable, Static

from engine import events as ev
from engine.rundir import RunDir
from tui_trainer.app import CifarTuiApp
from tui_trainer.bridge import MetricsFollower
from tui_trainer.screens import DashboardScreen
from ui_support import BrowserHost, quit_app, wait_for

SIZE = (120, 36)


def run(coro):
    return asyncio.run(coro)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_dashboard_resuming_a_damaged_checkpoint_fails_in_one_line_and_destroys_nothing(run_copy, tmp_path):
    odd = tmp_path / "a[" / "blue]" / run_copy.name  # the message names a path holding "[/blue]"
    odd.parent.mkdir(parents=True)
    shutil.move(run_copy, odd)
    last = RunDir(odd).last_checkpoint
    ck = torch.load(last, weights_only=True)
    ck["rng"] = {"torch": "not a state"}
    torch.save(ck, last)
    before = snapshot(odd)

    async def main():
        app = CifarTuiApp("train", resume=str(odd), resume_overrides={"epochs": 4})
        async with app.run_test(size=SIZE) as pilot:
            dash = app.screen
            assert isinstance(dash, DashboardScreen)
            await wait_for(pilot, lambda: dash.run_state.state == "failed", timeout=60, what="the failure")
            await pilot.pause(0.4)
            log = "\n".join(dash.event_log.lines_written)
            assert "random-number state is damaged" in log and "a[/blue]" in log
            assert "✖ failed" in dash.status.plain and "Traceback" not in log
            await quit_app(pilot)
        assert app.return_code == 1

    run(main())
    assert snapshot(odd) == before


def _metrics(lines: list) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def test_watch_skips_events_with_wrong_field_types_as_bad_lines(tmp_path):
    t = 1_700_000_000.0
    started = ev.event_to_json(ev.RunStarted(config={"epochs": 2}, run_dir=str(tmp_path), device="cpu", params=10,
                                             run_id="r", train_size=100, val_size=0, steps_per_epoch=4, time=t))
    step = json.loads(ev.event_to_json(ev.StepDone(epoch=1, step=1, loss=2.0, lr=0.1, images_per_s=10.0,
                                                   step_in_epoch=1, steps_per_epoch=4, train_acc=0.1, time=t + 1)))
    bad = [{**step, "loss": "abc"}, {**step, "epoch": "one"}, {**step, "step": None}, {**step, "train_acc": [1]},
           {"event": "CheckpointSaved", "path": 5, "epoch": 1, "kind": "last", "time": t},
           {"event": "StateChanged", "state": {"x": 1}, "reason": "", "time": t}]
    good = {**step, "step": 2, "step_in_epoch": 2, "loss": 1.5}
    (tmp_path / "metrics.jsonl").write_text(_metrics([started, *bad, good]))
    follower = MetricsFollower(tmp_path / "metrics.jsonl")
    events = follower.poll()
    assert [type(e).__name__ for e in events] == ["RunStarted", "StepDone"] and events[1].loss == 1.5
    assert follower.bad_lines == len(bad)

    async def main():
        app = CifarTuiApp("watch", run_dir=tmp_path, clock=lambda: t + 5)
        async with app.run_test(size=SIZE) as pilot:
            dash = app.screen
            await wait_for(pilot, lambda: dash.run_state.global_step == 2, what="the good step")
            assert dash.run_state.step_x
            await quit_app(pilot)
        assert app.return_code == 0

    run(main())




def _damage(run_dir: Path) -> None:
    """Wrong types everywhere the catalogue reads: a string where a dict is expected, a
    string accuracy, a stored evaluation whose numbers are strings."""
    run = RunDir(run_dir)
    run.config_path.write_text(json.dumps({"config": "a string", "data": ["a list"], "model": 5, "created": 7}))
    best = run.best_checkpoint
    run.summary_path(best).write_text(json.dumps({"epoch": "five", "val_acc": "high", "kind": 3}))
    st = best.stat()
    bad = {"accuracy": "high", "loss": "low", "images": "many", "data_source": "x", "confusion_matrix": [[1, "a"]],
           "per_class_accuracy": ["x"], "fingerprint": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}}
    RunDir.eval_path(best).write_text(json.dumps({"x": bad}))


def test_browser_lists_a_run_with_damaged_json_and_stays_usable(run_copy):
    root = run_copy.parent
    _damage(run_copy)

    async def main():
        app = BrowserHost(root)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            screen = app.screen
            assert {"best.pt", "last.pt"} <= {r.ckpt.name for r in screen.rows}
            for i, row in enumerate(screen.rows):
                screen.query_one(DataTable).move_cursor(row=i)
                await pilot.pause(0.1)
                if row.ckpt.name == "best.pt":
                    summary = str(screen.query_one("#eval-summary", Static).render())
                    assert "damaged" in summary
            screen.action_new_run()  # the settings are unusable: a message, not a crash
            await pilot.pause(0.2)
            assert app.return_code is None

    run(main())


def _epoch(t, epoch, loss, **kw):
    return {"event": "EpochDone", "time": t, "epoch": epoch, "train_loss": loss, "train_acc": 0.5,
            "val_loss": loss, "val_acc": 0.5, "seconds": 1.0, "lr": 0.1, **kw}


ABSURD_LINES = {  # issue 25: each ended `watch` with exit 1
    "time 1e300": lambda t: [{"event": "Warning", "time": 1e300, "message": "m"}],
    "time NaN": lambda t: ['{"event": "Warning", "time": NaN, "message": "m"}'],
    "epoch 10**13": lambda t: [_epoch(t, 10_000_000_000_000, 1.0)],
    "epochs many": lambda t: [{"event": "RunStarted", "time": t, "config": {"epochs": "many"}, "run_dir": "r",
                               "device": "cpu", "params": 1}],
    # values that pass: the plots and the run state cope with any float
    "losses +-1e308": lambda t: [_epoch(t, 1, 1e308), _epoch(t, 2, -1e308)],
    "losses inf, NaN, lr 1e300": lambda t: [_epoch(t, 1, float("inf"), lr=1e300, val_acc=float("nan")),
                                           _epoch(t, 2, float("-inf"), seconds=0.0)],
}


def test_watch_survives_every_absurd_value(tmp_path):
    t = 1_700_000_000.0
    started = json.loads(ev.event_to_json(ev.RunStarted(config={"epochs": 3}, run_dir=str(tmp_path), device="cpu",
                                                        params=10, run_id="r", train_size=100, val_size=0,
                                                        steps_per_epoch=4, time=t)))
    step = json.loads(ev.event_to_json(ev.StepDone(epoch=3, step=9, loss=2.0, lr=0.1, images_per_s=10.0,
                                                   step_in_epoch=1, steps_per_epoch=4, train_acc=0.1, time=t + 1)))

    async def watch(folder: Path) -> None:
        app = CifarTuiApp("watch", run_dir=folder, clock=lambda: t + 5)
        async with app.run_test(size=SIZE) as pilot:
            dash = app.screen
            await wait_for(pilot, lambda: dash.run_state.global_step == 9, what="the good step after the line")
            await pilot.pause(0.3)  # the plots redraw
            await quit_app(pilot)
        assert app.return_code == 0, app.return_code

    for name, lines in ABSURD_LINES.items():
        folder = tmp_path / name.replace(" ", "_").replace("*", "")
        folder.mkdir()
        (folder / "metrics.jsonl").write_text(_metrics([started, *lines(t), step]))
        run(watch(folder))
