"""Helpers for the dashboard tests: a fixed, deterministic event stream and pilot waits."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

from textual.app import App

from engine import events as ev

T0 = 1_700_000_000.0  # fixed wall clock for deterministic text


def demo_events(epochs_done: int = 4, epochs: int = 10, steps_per_epoch: int = 40, log_every: int = 5,
                run_dir: str = "/runs/20231114-221320-paper", mid_epoch_steps: int = 20) -> list[ev.Event]:
    """A plausible run: ``epochs_done`` epochs finished and part of the next one, no randomness."""
    t = T0
    batch = 128
    out: list[ev.Event] = []

    def at(dt: float) -> float:
        nonlocal t
        t += dt
        return t

    cfg = {"preset": "paper", "data": "cifar10", "epochs": epochs, "batch_size": batch, "lr": 0.1, "width": 1.0,
           "mixup": True, "log_every": log_every}
    out.append(ev.RunStarted(config=cfg, run_dir=run_dir, device="cuda", params=4_993_166, run_id=run_dir.rsplit("/", 1)[-1],
                             train_size=steps_per_epoch * batch, val_size=5000, steps_per_epoch=steps_per_epoch,
                             classes=("airplane",), time=at(0)))
    out.append(ev.StateChanged(state="running", reason="started", time=at(0.01)))
    total = steps_per_epoch * epochs
    best = None
    best_epoch = None
    gstep = 0

    def lr_at(s: int) -> float:
        return 0.05 * (1 + math.cos(math.pi * s / total))

    override = None
    for epoch in range(1, epochs_done + 2):
        mix = epoch % 3 != 0 if override is None else override
        out.append(ev.EpochStarted(epoch=epoch, epochs=epochs, steps=steps_per_epoch, mixup=mix,
                                   mixup_source="schedule" if override is None else "user", time=at(0.01)))
        last_step = steps_per_epoch if epoch <= epochs_done else mid_epoch_steps
        running = 0.0
        for s in range(1, last_step + 1):
            gstep += 1
            inst = 2.3 * math.exp(-gstep / 90) + 0.35 + 0.08 * math.sin(gstep * 0.7)
            running += (inst - running) / s
            if s % log_every == 0 or s == steps_per_epoch:
                out.append(ev.StepDone(epoch=epoch, step=gstep, loss=running, lr=lr_at(gstep - 1),
                                       images_per_s=5120.0 + 40 * (s % 3), step_in_epoch=s, steps_per_epoch=steps_per_epoch,
                                       train_acc=min(0.99, 0.1 + 0.8 * (1 - math.exp(-gstep / 70))), time=at(0.5)))
        if epoch > epochs_done:
            break
        val_acc = 0.25 + 0.6 * (1 - math.exp(-epoch / 2.5))
        val_loss = 2.0 * math.exp(-epoch / 2.2) + 0.4
        if best is None or val_acc > best:
            best, best_epoch = val_acc, epoch
        out.append(ev.EpochDone(epoch=epoch, train_loss=running, train_acc=0.2 + 0.55 * (1 - math.exp(-epoch / 2)),
                                val_loss=val_loss, val_acc=val_acc, seconds=4.0, lr=lr_at(gstep - 1), mixup=mix,
                                best_val_acc=best, best_epoch=best_epoch, time=at(1.0)))
        out.append(ev.CheckpointSaved(path=f"{run_dir}/checkpoints/last.pt", epoch=epoch, val_acc=val_acc, kind="last",
                                      time=at(0.1)))
        if best_epoch == epoch:
            out.append(ev.CheckpointSaved(path=f"{run_dir}/checkpoints/best.pt", epoch=epoch, val_acc=val_acc,
                                          kind="best", time=at(0.01)))
        if epoch == 2:
            override = False
            out.append(ev.MixupChanged(epoch=epoch, on=False, source="user", time=at(0.2)))
            out.append(ev.Warning(message="the validation split is small; accuracy is noisy", time=at(0.1)))
    return out


def clock_after(events: list[ev.Event], extra: float = 1.0) -> Callable[[], float]:
    """A frozen clock just after the last event, so elapsed/ETA text never changes."""
    end = max(e.time for e in events) + extra
    return lambda: end


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
    await asyncio.sleep(0)


async def press(pilot, *keys: str) -> None:
    """Press keys the way a terminal would (a Key event to the app).

    ``pilot.press`` waits until the process is idle after each key, up to a second
    twice over; a process that trains in a thread is never idle, so that wait would
    cost two seconds per key. Callers wait for the effect they expect instead.
    """
    for key in keys:
        pilot.app.simulate_key(key)
        await pilot.pause(0.05)


def form_values(**kw) -> dict:
    """The run form's fields as the user typed them (strings): a tiny synthetic run, ``kw`` changed."""
    base = dict(data="synthetic", preset="tiny", epochs="3", width="0.25", batch="64", lr="0.05", subset="",
                val="", mixup=False)
    base.update(kw)
    return base


class BrowserHost(App):
    """A bare app hosting the checkpoint browser; records what the browser asks it to start."""

    def __init__(self, root: Path, select=None):
        super().__init__()
        self.root, self.select, self.started = root, select, []

    def on_mount(self) -> None:
        from tui_trainer.screens import BrowserScreen

        self.push_screen(BrowserScreen(self.root, select=self.select))

    def on_start_run(self, message) -> None:
        self.started.append((message.config, {"resume": message.resume, "overrides": message.resume_overrides}))


@asynccontextmanager
async def browsing(root: Path, select=None, size=(100, 30)):
    """A :class:`BrowserHost` on ``root`` at ``size``, once the browser lists its rows:
    yields the app, its pilot and the browser screen."""
    from tui_trainer.screens import BrowserScreen

    app = BrowserHost(root, select=select)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows, what="the rows")
        yield app, pilot, app.screen


async def on_dashboard(pilot, app, until: Callable = lambda dash: True, what: str = "the dashboard"):
    """Wait until the dashboard is the app's screen and ``until(dashboard)`` holds; returns it."""
    from tui_trainer.screens import DashboardScreen

    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and until(app.screen), what=what)
    return app.screen


async def quit_app(pilot, key: str = "q") -> int:
    """Press ``key`` (q: quit, or detach) and wait until the app exits; returns its code."""
    await press(pilot, key)
    await wait_for(pilot, lambda: pilot.app.return_code is not None, what="the app to exit")
    return pilot.app.return_code


class FixedSampler:
    """The system panel's numbers, fixed: a test or a snapshot must not show this machine's load.
    A subclass may set other ``STATS``."""

    STATS = dict(cpu_pct=50.0, proc_cpu_pct=100.0, cores=2, mem_used=2**30, mem_total=8 * 2**30, rss=2**28,
                 threads=9, torch_threads=2, gpu=None, gpu_note="n/a")
    device = None

    def set_device(self, device: str) -> None:
        self.device = device

    def sample(self):
        from tui_trainer.sysstats import SystemStats

        return SystemStats(**self.STATS)


class FakeTrainer:
    """A trainer's interface (start, send, join, alive) without training: :meth:`work` (a
    subclass's) emits the events, in a thread. ``stop`` is set by a Stop command;
    ``received`` holds every command sent."""

    def __init__(self, config, *, listeners=(), **kw):
        self.config, self.listeners, self.result, self.thread = config, list(listeners), None, None
        self.received: list = []
        self.stop = threading.Event()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def send(self, cmd) -> None:
        self.received.append(cmd)
        if isinstance(cmd, ev.Stop):
            self.stop.set()

    def join(self, timeout=None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def emit(self, e) -> None:
        for fn in self.listeners:
            fn(e)

    def work(self) -> None:
        raise NotImplementedError

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.work, daemon=True)
        self.thread.start()
        return self.thread
