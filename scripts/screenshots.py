#!/usr/bin/env python
"""Regenerate the SVG screenshots in ``screenshots/``.

    python scripts/screenshots.py [--data ZIP_OR_FOLDER] [--out screenshots] [--epochs 6]

The pictures are of real CIFAR-10 images: ``--data`` names a folder or zip of them
(``train/<class>/*.jpg``, as the CIFAR-10 JPEG zip; default: ``$CIFAR10_ZIP``, else
``cifar10-jpeg-train.zip`` in the current folder or in ``/work/shared/data``, when
there). A few hundred images per class are copied into a temporary image folder,
split into ``train/`` and a disjoint ``test/``; two short runs train on them on the
CPU (a few minutes on a quiet 2-core machine), with different learning rates.
Without real images the script falls back to the built-in synthetic data and says
so. It saves:

* ``dashboard.svg`` / ``dashboard-80x24.svg``: the dashboard mid-training, with the
  system panel (100x30 and 80x24 terminals);
* ``browser.svg`` / ``gallery.svg``: the checkpoint browser after evaluating the
  first run's best checkpoint, and its gallery of misclassified test images;
* ``compare.svg``: the two runs compared (curves and the settings that differ);
* ``start.svg``: the start screen with its form and both runs;
* ``attached.svg``: ``cifar-tui watch RUN`` attached to a headless run that
  another process trains, just paused from the dashboard (``p``);
* ``form-budget.svg``: the new-run form with its network section open, a shape
  typed in and its live figures and budget line (no training needed);
* ``sweep.svg``: the Sweep screen of a five-trial sweep (learning rate, mixup and
  width searched), the last trial training.

``--only attached start`` makes only some of them (browser and start need the
dashboard's runs).

The numbers come from real training, so they differ a little from one run to the
next; the layout does not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import make_config  # noqa: E402
from tui_trainer.app import CifarTuiApp  # noqa: E402
from tui_trainer.screens import BrowserScreen, DashboardScreen, StartScreen  # noqa: E402

ZIP_NAME = "cifar10-jpeg-train.zip"


def find_images(given: str | None) -> Path | None:
    candidates = [given, os.environ.get("CIFAR10_ZIP"), ZIP_NAME, f"/work/shared/data/{ZIP_NAME}"]
    for c in candidates:
        if c and Path(c).expanduser().exists():
            return Path(c).expanduser()
    return None


def small_image_folder(src: Path, dst: Path, train_per_class: int, test_per_class: int) -> Path:
    """``dst/train/<class>/`` and ``dst/test/<class>/`` with real images from ``src`` (a zip or a
    folder with ``train/<class>/*``): the first images of each class, the test ones after them."""
    if src.is_dir():
        files = {p.relative_to(src).as_posix(): p.read_bytes for p in sorted(src.rglob("*")) if p.is_file()}
        read = lambda name: files[name]()  # noqa: E731
        names = list(files)
    else:
        zf = zipfile.ZipFile(src)
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))
        read = zf.read
    by_class: dict[str, list[str]] = {}
    for n in names:
        parts = n.split("/")
        if len(parts) >= 3 and parts[-3] == "train" and n.lower().endswith((".jpg", ".jpeg", ".png")):
            by_class.setdefault(parts[-2], []).append(n)
    if len(by_class) < 2:
        raise SystemExit(f"{src}: no train/<class>/ images found")
    for cls, members in by_class.items():
        for split, chosen in (("train", members[:train_per_class]),
                              ("test", members[train_per_class:train_per_class + test_per_class])):
            folder = dst / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for n in chosen:
                (folder / n.rsplit("/", 1)[-1]).write_bytes(read(n))
    return dst


async def wait_until(pilot, predicate, timeout: float = 3600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.1)


def save(app, out: Path, name: str) -> None:
    path = out / name
    path.write_text(app.export_screenshot(title="cifar-tui"))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def dashboard_shots(out: Path, config, mid: int) -> None:
    app = CifarTuiApp("train", config=config)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        # mid-training: some epochs done, the next one under way
        await wait_until(pilot, lambda: dash.run_state.epochs_done >= mid and dash.run_state.epoch > mid
                         and dash.run_state.step_x and dash.run_state.step_x[-1] > mid + 0.3)
        await pilot.pause(2.5)  # the system panel has two samples (a CPU percentage)
        save(app, out, "dashboard.svg")
        await pilot.resize_terminal(80, 24)
        await pilot.pause(1.0)
        save(app, out, "dashboard-80x24.svg")
        await pilot.resize_terminal(100, 30)
        await pilot.press("q")  # stops with a checkpoint, then quits
        await wait_until(pilot, lambda: app.return_code is not None)


async def browser_shots(out: Path, runs: Path) -> None:
    from tui_trainer.screens.compare import CompareScreen

    app = CifarTuiApp("browse", runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows)
        browser = app.screen
        first = min(browser.rows, key=lambda r: r.run.run_id).run.path  # the dashboard's run
        target = next(i for i, r in enumerate(browser.rows) if r.run.path == first and r.ckpt.name == "best.pt")
        browser.query_one("DataTable").move_cursor(row=target)
        await pilot.pause(0.3)
        await pilot.press("e")
        await pilot.pause(0.3)
        await wait_until(pilot, lambda: browser.evaluating is None)
        await pilot.pause(0.5)
        save(app, out, "browser.svg")
        await pilot.press("w")  # the gallery, misclassified images only
        await pilot.pause(1.0)
        save(app, out, "gallery.svg")
        await pilot.press("space")  # mark this run and the other, compare them
        other = next(i for i, r in enumerate(browser.rows) if r.run.path != first)
        browser.query_one("DataTable").move_cursor(row=other)
        await pilot.pause(0.2)
        await pilot.press("space")
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        await pilot.pause(0.5)
        save(app, out, "compare.svg")


async def attached_shot(out: Path, runs: Path, data: str, mid: int) -> None:
    """A headless run in another process, the dashboard attached to it, paused with p."""
    import os
    import subprocess

    from engine.rundir import RunDir

    runs.mkdir(parents=True, exist_ok=True)
    before = set(runs.iterdir())
    cmd = [sys.executable, "-m", "tui_trainer", "--no-ui", "train", "--data", data, "--preset", "tiny",
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


SWEEP_SPEC = """
[sweep]
name = "lr-mixup"
preset = "tiny"
max_params = 5_000_000
[fixed]
data = "{data}"
epochs = 4
subset = 1000
val_size = 300
[search]
lr = {{ low = 0.01, high = 0.4, log = true }}
mixup_prob = {{ choices = [0.0, 0.5, 0.9] }}
width = {{ choices = [0.0625, 0.125] }}
"""


async def sweep_shot(out: Path, work: Path, data: str, trials: int = 5) -> None:
    """The Sweep screen while the last of ``trials`` trains (its earlier ones done)."""
    from engine.sweep import default_storage, load_spec
    from engine.trials import Sweep
    from tui_trainer.app import build_sweep_app
    from tui_trainer.screens.sweep import SweepScreen

    spec_file = work / "lr-mixup.toml"
    spec_file.write_text(SWEEP_SPEC.format(data=data))
    spec = load_spec(spec_file)
    runs = work / "sweep-runs"
    app = build_sweep_app(Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs)), trials)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SweepScreen))
        screen = app.screen
        await wait_until(pilot, lambda: sum(r["state"] in ("complete", "pruned") for r in screen.rows) >= trials - 1
                         and any(r["state"] == "running" and (r.get("epochs") or 0) >= 2 for r in screen.rows))
        await pilot.pause(0.5)
        save(app, out, "sweep.svg")
        await pilot.press("q")  # the running trial saves, then the app quits
        await wait_until(pilot, lambda: app.return_code is not None)


async def start_shot(out: Path, runs: Path) -> None:
    app = CifarTuiApp("start", runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs)
        await pilot.pause(0.3)
        save(app, out, "start.svg")


async def form_shot(out: Path, runs: Path) -> None:
    """The form's network section open, the report's network made a little deeper: the
    figures and the budget line follow the fields as they are typed."""
    from textual.widgets import Input

    app = CifarTuiApp("start", runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, StartScreen))
        screen = app.screen
        await pilot.click("#f-shape CollapsibleTitle")
        field = screen.query_one("#f-blocks", Input)
        field.focus()
        field.value = ""
        await pilot.press(*"4,4,2,3")
        await pilot.pause(0.5)
        save(app, out, "form-budget.svg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help=f"real CIFAR-10 images: a zip or folder with train/<class>/ (default: {ZIP_NAME} if found)")
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="folder for the .svg files")
    parser.add_argument("--epochs", type=int, default=6, help="planned epochs of the dashboard's run")
    parser.add_argument("--mid", type=int, default=3, help="epochs done when the dashboard is captured")
    parser.add_argument("--per-class", type=int, default=200, help="training images per class copied from --data")
    parser.add_argument("--only", nargs="+", choices=("dashboard", "browser", "attached", "start", "form", "sweep"),
                        help="make only these (browser and start need dashboard's runs)")
    args = parser.parse_args()
    only = set(args.only or ("dashboard", "browser", "attached", "start", "form", "sweep"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.gettempdir()) / "cifar-tui-screenshots"  # a stable path: it shows on screen
    shutil.rmtree(work, ignore_errors=True)
    runs = work / "runs"
    src = find_images(args.data)
    if src is not None:
        data = str(small_image_folder(src, work / "cifar10-sample", args.per_class, max(20, args.per_class // 4)))
        print(f"images: {args.per_class} per class from {src}")
    else:
        data = "synthetic"
        print("no CIFAR-10 images found (give --data ZIP): the screenshots show synthetic data")
    os.environ.setdefault("CIFAR_TUI_CACHE_DIR", str(work / "cache"))
    common = dict(data=data, width=0.125, val_size=300, log_every=5, runs_dir=str(runs))
    try:
        if "dashboard" in only:
            asyncio.run(dashboard_shots(out, make_config("tiny", epochs=args.epochs, mixup=True, mixup_off_epochs=2,
                                                         **common), args.mid))
            from engine.trainer import Trainer  # a second, shorter run with another learning rate, to compare

            Trainer(make_config("tiny", epochs=args.mid, lr=0.02, **common)).run()
        if "browser" in only:
            asyncio.run(browser_shots(out, runs))
        if "attached" in only:
            asyncio.run(attached_shot(out, runs, data, args.mid))
        if "start" in only:
            asyncio.run(start_shot(out, runs))
        if "form" in only:
            asyncio.run(form_shot(out, runs))
        if "sweep" in only:
            asyncio.run(sweep_shot(out, work, data))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
