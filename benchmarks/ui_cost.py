"""The dashboard's own CPU cost while a run trains: CPU seconds of the UI thread per second.

    python benchmarks/ui_cost.py                       # 120x36, a step event every 1 s and every 0.1 s, 20 s each
    python benchmarks/ui_cost.py --every 1 --seconds 30 --size 80x24 --profile

The app (``CifarTuiApp("train")`` under ``App.run_test()``) trains a *fake* trainer
that emits the events of a long paper-preset run (RunStarted, then a StepDone every
``--every`` seconds, 20 steps apart, an EpochDone every 390 steps) and does no work,
so everything measured is the dashboard's: the CPU time of the main thread
(``time.thread_time``), where Textual draws. It is a count of work, not a
wall-clock ratio, so it holds on a machine that other processes keep busy (a busy
machine still slows each unit of work a little: say how loaded it was).

On a 2-core CPU, where training uses both cores, the dashboard costs training
about (this figure / 2000) of its speed: 30 ms/s of UI work is about 1.5%.
Prints one JSON line, then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402


class FakeTrainer:
    """The trainer's interface (``send``, ``start``, ``result``), emitting a plausible run's
    events at a fixed pace from a thread, and doing nothing else."""

    STEPS_PER_EPOCH, EPOCHS, STEPS_PER_EVENT = 390, 200, 20
    every = 1.0

    def __init__(self, config, *, listeners=(), resume=None, resume_overrides=None):
        self.listeners = list(listeners)
        self.stop = threading.Event()
        self.result = None

    def send(self, cmd) -> None:
        from engine import events as ev

        if isinstance(cmd, ev.Stop):
            self.stop.set()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True, name="fake-trainer")
        t.start()
        return t

    def _emit(self, e) -> None:
        for fn in self.listeners:
            fn(e)

    def run(self) -> None:
        from engine import events as ev

        spe, epochs = self.STEPS_PER_EPOCH, self.EPOCHS
        cfg = {"preset": "paper", "data": "cifar10", "epochs": epochs, "batch_size": 128, "lr": 0.1, "width": 1.0}
        self._emit(ev.RunStarted(config=cfg, run_dir="/nonexistent/run", device="cpu", params=4_993_166,
                                 run_id="20261126-000000-paper", train_size=45_000, val_size=5_000,
                                 steps_per_epoch=spe))
        self._emit(ev.StateChanged(state="running", reason="started"))
        step, epoch = 0, 1
        self._emit(ev.EpochStarted(epoch=1, epochs=epochs, steps=spe, mixup=True))
        while not self.stop.wait(self.every):
            step += self.STEPS_PER_EVENT
            if step - (epoch - 1) * spe > spe:
                acc = 0.9 * (1 - math.exp(-epoch / 20))
                self._emit(ev.EpochDone(epoch=epoch, train_loss=2 / (1 + epoch), train_acc=acc, val_loss=2 / (1 + epoch),
                                        val_acc=acc, seconds=10.0, lr=0.1, mixup=True))
                epoch += 1
                self._emit(ev.EpochStarted(epoch=epoch, epochs=epochs, steps=spe, mixup=True))
            self._emit(ev.StepDone(epoch=epoch, step=step, loss=2 / (1 + step / 500), lr=0.05 * (1 + math.cos(step / 4e4)),
                                   images_per_s=5000.0, step_in_epoch=step - (epoch - 1) * spe, steps_per_epoch=spe,
                                   train_acc=0.5))
        self.result = ev.RunFinished(outcome="stopped", reason="benchmark over")
        self._emit(self.result)


def measure(seconds: float, every: float, size: tuple[int, int], profile: bool = False) -> dict:
    from engine import events as ev
    from tui_trainer.app import CifarTuiApp

    factory = type("Paced", (FakeTrainer,), {"every": every})
    app = CifarTuiApp("train", config=object(), trainer_factory=factory)
    out: dict = {}

    async def drive() -> None:
        async with app.run_test(size=size) as pilot:
            while getattr(app.screen, "run_state", None) is None or app.screen.run_state.global_step < 1:
                await pilot.pause(0.05)
            await pilot.pause(2.0)  # past the start-up drawing
            dash = app.screen
            prof = None
            if profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t0, c0, k0, r0 = time.monotonic(), time.thread_time(), dash.ticks, dash.plots.redraws
            await pilot.pause(seconds)
            t1, c1 = time.monotonic(), time.thread_time()
            if prof is not None:
                prof.disable()
                import pstats

                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(
                    r"tui_trainer|textual_plotext", 30)
            out.update(ms_per_s=round(1000 * (c1 - c0) / (t1 - t0), 1), wall_s=round(t1 - t0, 1),
                       ticks=dash.ticks - k0, plot_redraws=dash.plots.redraws - r0,
                       status_redraws=getattr(dash.status, "redraws", None))  # (older versions: None)
            app.session.send(ev.Stop())
            await pilot.pause(0.3)
            app.exit()

    asyncio.run(drive())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per setting")
    parser.add_argument("--every", type=str, default="1,0.1", help="seconds between step events (comma-separated)")
    parser.add_argument("--size", type=str, default="120x36", help="terminal size(s), e.g. 120x36,80x24")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the UI thread to stderr")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.size.split(",")]
    results = []
    for size in sizes:
        for every in (float(v) for v in args.every.split(",")):
            r = measure(args.seconds, every, size, args.profile)  # type: ignore[arg-type]
            results.append({"size": f"{size[0]}x{size[1]}", "every_s": every, **r})
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg": load, "results": results}))
    print(f"{'size':>8} {'event every':>12} {'UI ms/s':>8} {'ticks':>6} {'plot draws':>11} {'status draws':>13}")
    for r in results:
        print(f"{r['size']:>8} {r['every_s']:>11}s {r['ms_per_s']:>8} {r['ticks']:>6} {r['plot_redraws']:>11} "
              f"{str(r['status_redraws']):>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
