#!/usr/bin/env python
"""Regenerate the SVG screenshots in ``screenshots/``.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--epochs 6]

It trains a small real run (synthetic data, a narrow network, on the CPU: under
a minute) in a temporary runs folder, and saves:

* ``dashboard.svg`` / ``dashboard-80x24.svg``: the dashboard mid-training
  (100x30 and 80x24 terminals);
* ``browser.svg`` / ``gallery.svg``: the checkpoint browser after evaluating the
  run's best checkpoint, and its gallery of misclassified test images;
* ``start.svg``: the start screen, listing that run;
* ``attached.svg``: ``cifar-tui watch RUN`` attached to a headless run that
  another process trains, just paused from the dashboard (``p``).

``--only attached start`` makes only some of them.

The numbers come from real training, so they differ a little from one run to
the next; the layout does not.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import make_config  # noqa: E402
from tui_trainer.app import CifarTuiApp  # noqa: E402
from tui_trainer.screens import BrowserScreen, DashboardScreen, StartScreen  # noqa: E402


async def wait_until(pilot, predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.1)


def save(app, out: Path, name: str) -> None:
    path = out / name
    path.write_text(app.export_screenshot(title="cifar-tui"))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def dashboard_shots(out: Path, runs: Path, epochs: int, mid: int) -> None:
    config = make_config("tiny", data="synthetic", width=0.125, subset=1200, val_size=300, epochs=epochs,
                         log_every=2, mixup=True, mixup_off_epochs=2, runs_dir=str(runs))
    app = CifarTuiApp("train", config=config)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        # mid-training: some epochs done, the next one under way
        await wait_until(pilot, lambda: dash.run_state.epochs_done >= mid and dash.run_state.epoch > mid
                         and dash.run_state.step_x and dash.run_state.step_x[-1] > mid + 0.3)
        await pilot.pause(0.5)
        save(app, out, "dashboard.svg")
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.8)
        save(app, out, "dashboard-80x24.svg")
        await pilot.resize_terminal(100, 30)
        await pilot.press("q")  # stops with a checkpoint, then quits
        await wait_until(pilot, lambda: app.return_code is not None)


async def browser_shots(out: Path, runs: Path) -> None:
    app = CifarTuiApp("browse", runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
        browser = app.screen
        await pilot.pause(0.3)
        await pilot.press("e")
        await pilot.pause(0.3)
        await wait_until(pilot, lambda: browser.evaluating is None)
        await pilot.pause(0.5)
        save(app, out, "browser.svg")
        await pilot.press("w")  # the gallery, misclassified images only
        await pilot.pause(0.8)
        save(app, out, "gallery.svg")


async def attached_shot(out: Path, runs: Path, mid: int) -> None:
    """A headless run in another process, the dashboard attached to it, paused with p."""
    import os
    import subprocess

    from engine.rundir import RunDir

    runs.mkdir(parents=True, exist_ok=True)
    before = set(runs.iterdir())
    cmd = [sys.executable, "-m", "tui_trainer", "--no-ui", "train", "--data", "synthetic", "--preset", "tiny",
           "--width", "0.125", "--subset", "1200", "--val-size", "300", "--epochs", "8", "--mixup",
           "--runs-dir", str(runs)]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        deadline = time.monotonic() + 120
        while not (set(runs.iterdir()) - before) or not RunDir(next(iter(set(runs.iterdir()) - before))).control_path.exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the headless run did not start")
            time.sleep(0.2)
        (run,) = set(runs.iterdir()) - before
        app = CifarTuiApp("watch", run_dir=run)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
            dash = app.screen
            await wait_until(pilot, lambda: dash.source.can_command and dash.run_state.epochs_done >= mid
                             and dash.run_state.step_x and dash.run_state.step_x[-1] > mid + 0.3)
            await pilot.press("p")
            await wait_until(pilot, lambda: dash.run_state.state == "paused")
            await pilot.pause(0.8)
            save(app, out, "attached.svg")
            await pilot.press("x")  # stop the run (it saves), then quit
            await wait_until(pilot, lambda: dash.run_state.state == "finished")
            await pilot.press("q")
            await wait_until(pilot, lambda: app.return_code is not None)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()


async def start_shot(out: Path, runs: Path) -> None:
    app = CifarTuiApp("start", runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs)
        await pilot.pause(0.3)
        save(app, out, "start.svg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="folder for the .svg files")
    parser.add_argument("--epochs", type=int, default=8, help="planned epochs of the demo run")
    parser.add_argument("--mid", type=int, default=4, help="epochs done when the dashboard is captured")
    parser.add_argument("--only", nargs="+", choices=("dashboard", "browser", "attached", "start"),
                        help="make only these (browser needs dashboard's run)")
    args = parser.parse_args()
    only = set(args.only or ("dashboard", "browser", "attached", "start"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.gettempdir()) / "cifar-tui-screenshots"  # a stable path: it shows on screen
    shutil.rmtree(work, ignore_errors=True)
    runs = work / "runs"
    try:
        if "dashboard" in only:
            asyncio.run(dashboard_shots(out, runs, args.epochs, args.mid))
        if "browser" in only:
            asyncio.run(browser_shots(out, runs))
        if "attached" in only:
            asyncio.run(attached_shot(out, runs, args.mid))
        if "start" in only:
            asyncio.run(start_shot(out, runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
