"""Training throughput (images/s) of the SE-ResNet, four ways, on one device.

    (a) model_only       a fixed batch already on the device: forward, backward,
                         SGD step (the same step the engine takes: autocast and
                         channels_last on CUDA, gradient clipping if the preset
                         clips). The upper bound.
    (b) pipeline         the real engine, headless: ``Trainer.run()`` on synthetic
                         data, read from its own ``StepDone.images_per_s``.
    (c) dashboard        the same config trained by the Textual app
                         (``CifarTuiApp("train")`` under ``App.run_test()``,
                         headless), measured the same way as (b).
    (d) report_baseline  the report's approach: a torchvision ``DataLoader`` over a
                         dataset of PIL images with RandomCrop(32, padding=4),
                         RandomHorizontalFlip, ToTensor, Normalize, fp32, the same
                         model and optimiser step.

Every variant trains a fresh model for ``--warmup`` steps (not timed), then
``--steps`` timed steps, in a non-main thread as the CLI and the app train
(``--main-thread`` runs (a), (b), (d) in the main thread instead). The variants run interleaved (a, b, c, d, a, b, ...)
for ``--repeats`` rounds so that drift in a noisy machine hits all of them
alike; the median of the rounds is reported.

    python benchmarks/throughput.py --width 0.25 --steps 12 --repeats 3   # 2-core CPU, ~1.5 minutes
    python benchmarks/throughput.py --device cuda                           # the report's network on a GPU

Prints one JSON line, then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

VARIANTS = ("model_only", "pipeline", "dashboard", "report_baseline")


# ----------------------------------------------------------------------------- helpers


def in_thread(fn: Callable, *args, **kwargs):
    """Run ``fn`` in a fresh non-main thread and return its result (re-raising its error).

    The engine always trains in such a thread (the headless CLI's ``trainer.start()``,
    the app's thread worker), so by default every variant does too."""
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e

    t = threading.Thread(target=target, name="bench-train")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, opt, cfg, device, *, amp: bool, label_smoothing: float = 0.0, cpu_bf16: bool = False) -> Callable:
    """One training step as the engine takes it, minus data, mixup, EMA and bookkeeping.
    ``cpu_bf16``: bf16 autocast on the CPU too (the GPU suite's dry run exercises it there)."""
    import torch
    import torch.nn.functional as F

    from engine.device import autocast_for

    def autocast():
        if cpu_bf16 and device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return autocast_for(device, amp)

    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    cudagraphs = bool(cfg.compile and device.type == "cuda" and cfg.compile_mode in ("reduce-overhead", "max-autotune"))

    def step(xb, yb):
        if cudagraphs and mark is not None:
            mark()
        with autocast():
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
        opt.step()

    return step


def fresh_model(cfg, device, *, channels_last: bool, compile_model: bool = False):
    """The network and the engine's optimiser (fused SGD on CUDA, BatchNorm-bias groups),
    compiled as the engine compiles it when ``compile_model``."""
    import torch

    from engine.model import SEResNet
    from engine.trainer import compile_backend, make_optimizer

    model = SEResNet(width=cfg.width).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(cfg, model, device)
    backend = compile_backend(cfg, device) if compile_model else None
    if backend is None:
        return model, opt
    mode = cfg.compile_mode if backend == "inductor" and cfg.compile_mode not in (None, "default") else None
    import torch._dynamo

    torch._dynamo.reset()  # compile anew (inductor's on-disk caches may still make a repeat faster)
    # dynamic=False: a second batch size in this process is a new static graph, never a dynamic one
    return torch.compile(model, backend=backend, dynamic=False, **({"mode": mode} if mode else {})), opt


# ---------------------------------------------------------------------------- variants


def bench_model_only(cfg, device, batch: int, warmup: int, steps: int, stats: Optional[dict] = None,
                     cpu_bf16: bool = False) -> float:
    """(a) A fixed, already-normalised batch on the device; the engine's step. ``stats``
    gets ``first_step_s``: the first step's seconds (with torch.compile, the compile time)."""
    import torch

    cuda = device.type == "cuda"
    cl = (cuda or cpu_bf16) and cfg.channels_last  # (the dry run's CPU check takes the GPU's layout too)
    model, opt = fresh_model(cfg, device, channels_last=cl, compile_model=cfg.compile)
    g = torch.Generator().manual_seed(0)
    xb = torch.randn((batch, 3, 32, 32), generator=g).to(device)
    if cl:
        xb = xb.contiguous(memory_format=torch.channels_last)
    yb = torch.randint(0, 10, (batch,), generator=g).to(device)
    step = make_step(model, opt, cfg, device, amp=cfg.amp, label_smoothing=cfg.label_smoothing, cpu_bf16=cpu_bf16)
    t0 = time.perf_counter()
    for i in range(warmup):
        step(xb, yb)
        if i == 0:
            sync(device)
            if stats is not None:
                stats.setdefault("first_step_s", []).append(round(time.perf_counter() - t0, 3))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(xb, yb)
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


class StepRecorder:
    """An engine listener keeping the ``StepDone`` events of one run."""

    def __init__(self) -> None:
        self.steps: list = []
        self.failed: Optional[str] = None
        self.compiled = None  # the Compiled event, when the engine compiled

    def __call__(self, event) -> None:
        from engine import events as ev

        if isinstance(event, ev.StepDone):
            self.steps.append(event)
        elif isinstance(event, ev.Failed):
            self.failed = event.message
        elif isinstance(event, ev.Compiled):
            self.compiled = event

    def rate(self, batch: int, warmup: int) -> float:
        """Images/s over the windows after the first ``warmup`` steps, from the engine's own
        ``images_per_s`` (each window's seconds = its images / its rate)."""
        if self.failed:
            raise RuntimeError(f"the engine failed: {self.failed}")
        images = seconds = 0.0
        prev = 0
        for e in self.steps:
            n = (e.step_in_epoch - prev) * batch
            if prev >= warmup and e.images_per_s > 0:
                images += n
                seconds += n / e.images_per_s
            prev = e.step_in_epoch
        if seconds <= 0:
            raise RuntimeError("no timed StepDone window after the warm-up; raise --steps")
        return images / seconds


def engine_config(cfg, batch: int, warmup: int, steps: int, runs_dir: str):
    """One epoch of exactly ``warmup + steps`` steps, a StepDone every ``warmup`` steps
    (so the warm-up is the first window), no validation split, no mixup."""
    return cfg.replace(epochs=1, subset=batch * (warmup + steps), val_size=0, log_every=warmup,
                       mixup=False, runs_dir=runs_dir, low_res_epochs=0).validate()


def _compiled(rec: "StepRecorder", stats: Optional[dict], expected: bool = False) -> None:
    """Record the engine's compile: its seconds, and whether it really compiled (``expected``
    and no ``Compiled`` event means torch.compile was refused up front: an eager run)."""
    if stats is not None and rec.compiled is None and expected:
        stats.setdefault("compile_ok", []).append(False)
        stats.setdefault("compile_message", []).append("the engine reported no compile: it trained eagerly")
    if stats is not None and rec.compiled is not None:
        stats.setdefault("compile_s", []).append(round(rec.compiled.seconds, 3))
        stats.setdefault("compile_ok", []).append(bool(rec.compiled.ok))
        if not rec.compiled.ok:
            stats.setdefault("compile_message", []).append(rec.compiled.message)


def bench_pipeline(cfg, bundle, batch: int, warmup: int, steps: int, runs_dir: str, stats: Optional[dict] = None) -> float:
    """(b) The real trainer, no UI (``Trainer.run()`` in the calling thread). ``stats`` gets
    ``compile_s`` from the engine's ``Compiled`` event when it compiled."""
    from engine.device import resolve_device
    from engine.trainer import Trainer, compile_backend

    rec = StepRecorder()
    Trainer(engine_config(cfg, batch, warmup, steps, runs_dir), listeners=[rec], data=bundle).run()
    _compiled(rec, stats, expected=compile_backend(cfg, resolve_device(cfg.device)) is not None)
    return rec.rate(batch, warmup)


def dashboard_available() -> Optional[str]:
    """None when the Textual app imports here, else why not (one line)."""
    try:
        import tui_trainer.app  # noqa: F401
    except ImportError as e:
        return f"the dashboard variant needs the app's packages ({e})"
    return None


def bench_dashboard(cfg, bundle, batch: int, warmup: int, steps: int, runs_dir: str,
                    size: tuple[int, int] = (120, 36), timeout: float = 1800.0) -> float:
    """(c) The Textual app trains the same config (trainer in its thread worker, the
    dashboard drawing on the main thread), run headless by ``App.run_test()``."""
    from engine.trainer import Trainer
    from tui_trainer.app import CifarTuiApp

    rec = StepRecorder()

    def factory(config, *, listeners=(), resume=None, resume_overrides=None):
        return Trainer(config, listeners=[*listeners, rec], data=bundle, resume=resume,
                       resume_overrides=resume_overrides)

    app = CifarTuiApp("train", config=engine_config(cfg, batch, warmup, steps, runs_dir), trainer_factory=factory)

    async def drive() -> None:
        async with app.run_test(size=size):
            t0 = time.monotonic()
            while app.session is None or app.session.active:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError("the dashboard run did not finish")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.4)  # let the dashboard take the last events
            app.exit()

    asyncio.run(drive())
    return rec.rate(batch, warmup)


class PILImages:
    """A torchvision-style dataset: HWC uint8 images held as an array, each turned
    into a PIL image in ``__getitem__`` and passed through ``transform`` (as
    ``torchvision.datasets.CIFAR10`` does)."""

    def __init__(self, data, targets, transform) -> None:
        self.data = data  # numpy (N, 32, 32, 3) uint8
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), int(self.targets[i])


def report_loader(bundle, batch: int, n_images: int, workers: int, device, seed: int):
    import numpy as np
    import torch
    from torchvision import transforms as T

    from engine.config import CIFAR_MEAN, CIFAR_STD

    reps = math.ceil(n_images / len(bundle.train))
    x = bundle.train.x.permute(0, 2, 3, 1).numpy()
    y = bundle.train.y.numpy()
    data = np.ascontiguousarray(np.concatenate([x] * reps)[:n_images])
    targets = np.concatenate([y] * reps)[:n_images]
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(PILImages(data, targets, tf), batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, pin_memory=device.type == "cuda", generator=g)


def bench_report(cfg, bundle, device, batch: int, warmup: int, steps: int, workers: int) -> float:
    """(d) DataLoader of PIL images + torchvision transforms, fp32, the same model and step."""
    model, opt = fresh_model(cfg, device, channels_last=False)
    step = make_step(model, opt, cfg, device, amp=False)
    loader = report_loader(bundle, batch, batch * (warmup + steps), workers, device, cfg.seed)
    it = iter(loader)  # the workers start here, inside the warm-up
    for _ in range(warmup):
        xb, yb = next(it)
        step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        xb, yb = next(it)
        step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
    sync(device)
    rate = batch * steps / (time.perf_counter() - t0)
    del it
    return rate


# ---------------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", help="engine preset, e.g. paper, fast, tiny (default: paper, the report's recipe)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default: the preset's; 1.0 = report's net)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per variant and repeat (default 200)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first (default: min(20, max(2, steps // 3))); also the engine's log interval")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the report baseline (default 2)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; as the engine's compile option)")
    p.add_argument("--no-compile", action="store_true", help="do not compile, whatever the preset says")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default, reduce-overhead, max-autotune, ...)")
    p.add_argument("--compile-backend", default=None, help="a torch.compile backend to use on any device (e.g. eager, for a CPU check)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--main-thread", action="store_true",
                   help="train (a), (b), (d) in the main thread (default: a fresh thread each, as the CLI and the app train)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.batch_size < 1:
        p.error("--steps, --repeats and --batch-size must be at least 1")
    if args.warmup is None:
        args.warmup = min(20, max(2, args.steps // 3))
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (it is also the engine's log interval)")
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        p.error(f"unknown --variants {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    args.variants = [v for v in VARIANTS if v in chosen]
    return args


def run(args: argparse.Namespace, progress: Callable[[str], None] = lambda s: None, bundle=None) -> dict[str, Any]:
    """``bundle``: train on these images (default: a synthetic set big enough)."""
    import torch

    from engine.config import make_config
    from engine.data import make_synthetic
    from engine.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    compile_flag = False if getattr(args, "no_compile", False) else (
        True if (args.compile or getattr(args, "compile_mode", None) or getattr(args, "compile_backend", None)) else None)
    cfg = make_config(args.preset, width=args.width, batch_size=args.batch_size, device=args.device, compile=compile_flag,
                      compile_mode=getattr(args, "compile_mode", None),
                      compile_backend=getattr(args, "compile_backend", None))
    device = resolve_device(cfg.device)
    batch, warmup, steps = args.batch_size, args.warmup, args.steps
    need = batch * (warmup + steps)
    if bundle is None or len(bundle.train) < need:
        # a learnable synthetic set with at least one epoch's worth of images (no validation split is taken)
        bundle = make_synthetic(n_train=max(need, 2_000), n_test=10)
    notes: list[str] = []
    variants = list(args.variants)
    if "dashboard" in variants and (why := dashboard_available()) is not None:
        variants.remove("dashboard")
        notes.append(f"dashboard skipped: {why}")
        progress(notes[-1])

    call = (lambda fn, *a: fn(*a)) if args.main_thread else in_thread
    samples: dict[str, list[float]] = {v: [] for v in variants}
    stats: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cifar-tui-bench-") as runs_dir:
        for r in range(args.repeats):
            for v in variants:
                t0 = time.perf_counter()
                if v == "model_only":
                    ips = call(bench_model_only, cfg, device, batch, warmup, steps, stats,
                               getattr(args, "cpu_bf16", False))
                elif v == "pipeline":
                    ips = call(bench_pipeline, cfg, bundle, batch, warmup, steps, runs_dir, stats)
                elif v == "dashboard":  # the app trains in its own thread worker either way
                    ips = bench_dashboard(cfg, bundle, batch, warmup, steps, runs_dir)
                else:
                    ips = call(bench_report, cfg, bundle, device, batch, warmup, steps, args.workers)
                samples[v].append(ips)
                progress(f"round {r + 1}/{args.repeats}: {v:<15} {ips:9.1f} images/s  ({time.perf_counter() - t0:.1f} s)")

    med = {v: (statistics.median(samples[v]) if v in samples else None) for v in VARIANTS}

    def ratio(a: str, b: str) -> Optional[float]:
        return round(med[a] / med[b], 4) if med[a] and med[b] else None

    from engine.model import SEResNet, count_parameters

    return {
        "benchmark": "throughput",
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": cfg.preset,
        "width": cfg.width,
        "params": count_parameters(SEResNet(cfg.width)),
        "batch_size": batch,
        "warmup": warmup,
        "steps": steps,
        "repeats": args.repeats,
        "amp_bf16": bool(cfg.amp and device.type == "cuda") or bool(getattr(args, "cpu_bf16", False)),
        "channels_last": bool(cfg.channels_last and (device.type == "cuda" or getattr(args, "cpu_bf16", False))),
        "compile": bool(cfg.compile and (device.type == "cuda" or cfg.compile_backend)),
        "compile_mode": cfg.compile_mode or "default",
        "compile_backend": cfg.compile_backend or ("inductor" if cfg.compile and device.type == "cuda" else None),
        "first_step_s": stats.get("first_step_s", []),
        "compile_s": stats.get("compile_s", []),
        # False when any engine run's compile fell back to eager (its speed is then not a compiled figure)
        "compile_ok": all(stats.get("compile_ok", [True])),
        "compile_message": "; ".join(stats.get("compile_message", [])) or None,
        "notes": notes,
        "loader_workers": args.workers,
        "train_thread": "main" if args.main_thread else "worker",
        **{v: (round(med[v], 1) if med[v] is not None else None) for v in VARIANTS},
        "pipeline_vs_model": ratio("pipeline", "model_only"),
        "dashboard_vs_pipeline": ratio("dashboard", "pipeline"),
        "pipeline_vs_report": ratio("pipeline", "report_baseline"),
        "best": {v: round(max(s), 1) for v, s in samples.items() if s},
        "samples": {v: [round(x, 1) for x in s] for v, s in samples.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"Training throughput: {res['device']} ({res['device_name']}), width {res['width']}, "
             f"batch {res['batch_size']}, {res['steps']} steps x {res['repeats']} rounds")
    t = Table(title=title)
    t.add_column("variant")
    t.add_column("images/s (median)", justify="right")
    t.add_column("best", justify="right")
    t.add_column("each round", justify="right")
    t.add_column("vs model only", justify="right")
    labels = {
        "model_only": "(a) model only",
        "pipeline": "(b) engine, headless",
        "dashboard": "(c) engine + dashboard",
        "report_baseline": "(d) report's DataLoader",
    }
    for v in VARIANTS:
        if res[v] is None:
            continue
        rel = f"{res[v] / res['model_only']:.2f}" if res["model_only"] else "-"
        t.add_row(labels[v], f"{res[v]:,.0f}", f"{res['best'][v]:,.0f}", ", ".join(f"{x:,.0f}" for x in res["samples"][v]), rel)
    Console().print(t)
    ratios = {k: res[k] for k in ("pipeline_vs_model", "dashboard_vs_pipeline", "pipeline_vs_report")}
    Console().print("  ".join(f"{k} = {v:.3f}" if v is not None else f"{k} = -" for k, v in ratios.items()))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    quiet = args.json_only
    from engine.config import ConfigError
    from engine.data import DataError

    try:
        res = run(args, progress=(lambda s: None) if quiet else (lambda s: print(f"... {s}", file=sys.stderr, flush=True)))
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res), flush=True)
    if not quiet:
        print_table(res)
    return 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:  # run as a script from a checkout that is not installed
        sys.path.insert(0, str(REPO))
    sys.exit(main())
