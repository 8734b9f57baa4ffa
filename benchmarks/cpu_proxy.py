"""A CPU proxy that can tell whether a recipe choice hurts: several runs, one after another,
each with the same wall-clock budget for its training, on the real training images.

By default: ``speedrun``, ``fast`` and a short ``paper`` run at width 0.25 on the training zip
with 5,000 validation images (a seeded, stratified hold-out of the training images; no test
set is read), ``--minutes`` each (default 5). Each run's schedule is sized to its budget:
a short timing run measures the preset's seconds per step on its first steps, and the run
gets as many whole epochs as fit (at least one), so its schedule (warm-up, decay to zero)
ends with the budget. Validation runs after every epoch and is not counted in the budget
(the speedrun's test-time augmentation would otherwise be charged to its training).

It does not replace the GPU figures (docs/benchmarks.md): on a CPU a small network at a
few epochs is measured, not the recipe's real target. Run it on a quiet machine: the load
average at each run's start and end is recorded beside its figures.

Out: ``OUT/cpu-proxy.jsonl`` (one JSON object per run, appended as it ends) and
``OUT/cpu-proxy.md`` (the table, rewritten after each run).

    python benchmarks/cpu_proxy.py --data ../shared/data/cifar10-jpeg-train.zip --out /tmp/proxy
    # sanity runs of single settings at a fixed schedule (no timing), on a subset:
    python benchmarks/cpu_proxy.py --data ZIP --width 0.125 --subset 5000 --val-size 1000 --epochs 6 \\
        --runs base=speedrun la=speedrun:lookahead_every=5 --set batch_size=256 lr=0.4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "cifar10-jpeg-train.zip")
DEFAULT_RUNS = ["speedrun=speedrun", "fast=fast", "paper=paper"]
TIMING_STEPS = 12  # steps of a timing run; the first 3 are not counted (warm-up)


def parse_value(text: str) -> Any:
    """``"5"`` -> 5, ``"0.4"`` -> 0.4, ``"true"`` -> True, anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_run(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"label=preset[:key=value,...]"`` -> (label, preset, overrides)."""
    label, _, rest = spec.partition("=")
    preset, _, settings = rest.partition(":")
    if not label or not preset:
        raise ValueError(f"run {spec!r}: write it as label=preset or label=preset:key=value,key=value")
    return label, preset, parse_settings(settings.split(",") if settings else [])


def parse_settings(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"setting {item!r}: write it as key=value")
        out[key.strip()] = parse_value(value.strip())
    return out


def load_avg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def _config(args, preset: str, overrides: dict[str, Any], epochs: int, runs_dir: Path):
    from engine.config import make_config

    settings = dict(width=args.width, val_size=args.val_size, subset=args.subset, val_every=1, epochs=epochs,
                    device="cpu", runs_dir=str(runs_dir), save_seconds=1e6, log_every=50, seed=args.seed)
    settings.update(args.set)
    settings.update(overrides)
    return make_config(preset, **settings)


def seconds_per_step(args, bundle, preset: str, overrides: dict[str, Any], runs_dir: Path) -> tuple[float, int]:
    """(seconds per training step, steps per epoch) of a preset, from a short run's first steps."""
    from engine import events as ev
    from engine.trainer import Trainer

    marks: list[float] = []
    box: dict[str, Any] = {}

    def listen(e):
        if isinstance(e, ev.RunStarted):
            box["steps"] = e.steps_per_epoch
        if isinstance(e, ev.StepDone):
            marks.append(time.perf_counter())
            if len(marks) == TIMING_STEPS:
                box["trainer"].send(ev.Stop(save=False))

    cfg = _config(args, preset, overrides, 1, runs_dir).replace(log_every=1, log_seconds=0.0)
    box["trainer"] = t = Trainer(cfg, data=bundle, listeners=[listen])
    t.run()
    if len(marks) < 5:  # an epoch shorter than the timing: time what there was
        return (marks[-1] - marks[0]) / max(len(marks) - 1, 1) if len(marks) > 1 else 1.0, box.get("steps", 1)
    return (marks[-1] - marks[3]) / (len(marks) - 4), box["steps"]


def epochs_for(minutes: float, step_s: float, steps: int) -> int:
    """The whole epochs of ``steps`` steps of ``step_s`` seconds that fit ``minutes`` (at least one)."""
    return max(1, math.floor(minutes * 60 / max(step_s * steps, 1e-9)))


def train_one(args, bundle, label: str, preset: str, overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    """One run: its epochs (fixed, or sized to the budget), then its figures."""
    from engine import events as ev
    from engine.trainer import Trainer

    runs_dir = out / "runs"
    load_start = load_avg()
    t0 = time.perf_counter()
    step_s = steps = None
    if args.epochs:
        epochs = args.epochs
    else:
        step_s, steps = seconds_per_step(args, bundle, preset, overrides, runs_dir)
        epochs = epochs_for(args.minutes, step_s, steps)
    timing_s = time.perf_counter() - t0
    records: list[Any] = []
    t = Trainer(_config(args, preset, overrides, epochs, runs_dir), data=bundle,
                listeners=[lambda e: records.append(e) if isinstance(e, (ev.EpochDone, ev.Failed)) else None])
    t1 = time.perf_counter()
    outcome = t.run()
    done = [r for r in records if isinstance(r, ev.EpochDone)]
    vals = [r.val_acc for r in done if r.val_acc is not None]
    return {
        "label": label, "preset": preset, "overrides": overrides, "outcome": outcome,
        "failed": next((r.message for r in records if isinstance(r, ev.Failed)), None),
        "epochs": epochs, "epochs_done": len(done), "width": args.width, "subset": args.subset,
        "val_size": args.val_size, "budget_min": None if args.epochs else args.minutes,
        "timing_step_s": step_s, "steps_per_epoch": steps, "timing_s": round(timing_s, 1),
        "train_s": round(sum(r.seconds - (r.val_seconds or 0.0) for r in done), 1),
        "wall_s": round(time.perf_counter() - t1, 1),
        "best_val_acc": max(vals) if vals else None, "final_val_acc": vals[-1] if vals else None,
        "load_start": load_start, "load_end": load_avg(), "threads": _threads(), "cpu": cpu_model(),
        "run_dir": str(t.run_dir) if t.run_dir else None,
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def table(rows: list[dict[str, Any]]) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    lines = ["| run | preset | epochs | train s | wall s | best val acc % | final val acc % | load start | load end |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load = [("-" if x is None else f"{x[0]:.2f}") for x in (r["load_start"], r["load_end"])]
        lines.append(f"| {r['label']} | {r['preset']} | {r['epochs_done']}/{r['epochs']} | {r['train_s']:.0f} | "
                     f"{r['wall_s']:.0f} | {pct(r['best_val_acc'])} | {pct(r['final_val_acc'])} | "
                     f"{load[0]} | {load[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help="the training zip (default: ../shared/data/...)")
    ap.add_argument("--out", default="cpu-proxy-out", help="folder for cpu-proxy.jsonl, cpu-proxy.md and the runs")
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget of each run (default 5)")
    ap.add_argument("--epochs", type=int, default=0, help="a fixed number of epochs instead of a budget")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--subset", type=int, default=None, help="train on this many images (default: all the rest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, metavar="LABEL=PRESET[:K=V,...]")
    ap.add_argument("--set", nargs="*", default=[], metavar="K=V", help="settings for every run")
    args = ap.parse_args(argv)
    try:
        runs = [parse_run(spec) for spec in args.runs]
        args.set = parse_settings(args.set)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.epochs and not 0 < args.minutes <= 24 * 60:
        print("error: --minutes must be above 0 and at most 1440", file=sys.stderr)
        return 2
    from engine.config import ConfigError
    from engine.data import DataError, load_data

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for label, preset, overrides in runs:  # every setting checked before hours of training
            _config(args, preset, overrides, 1, out / "runs")
        t0 = time.perf_counter()
        bundle = load_data(args.data)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"data: {args.data} in {time.perf_counter() - t0:.0f} s; load average {load_avg()}", flush=True)
    rows = []
    for label, preset, overrides in runs:
        row = train_one(args, bundle, label, preset, overrides, out)
        rows.append(row)
        with open(out / "cpu-proxy.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        (out / "cpu-proxy.md").write_text(table(rows))
        print(json.dumps(row), flush=True)
    print(table(rows))
    return 0 if all(r["outcome"] == "completed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
