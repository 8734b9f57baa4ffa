"""Time to accuracy: train a preset and record when validation accuracy first
reaches each target.

The validation split is the engine's own: a seeded, stratified hold-out of the
*training* images (``--val-size``). No test set is ever read or evaluated.

Reported (one JSON line, then a table):

* ``data_load_s``: loading/decoding the data source (``engine.data.load_data``;
  a zip or image folder is decoded once and cached, so a second run is faster),
  kept out of the training time;
* ``compile_s``: torch.compile's warm-up (the engine's ``Compiled`` event), before
  the first step, kept out of the training time;
* ``train_s``: wall clock from the start of training (``RunStarted``, or the end of
  the compile warm-up) to its end (all training steps, the validation pass of every
  epoch; checkpoints are written in the background);
* ``epoch_s``: the engine's ``EpochDone.seconds`` (training + validation) and
  ``val_s`` (the validation part);
* for each target: the first epoch whose validation accuracy reaches it, the
  wall-clock ``seconds`` from the start of training to that epoch's ``EpochDone``,
  and ``train_seconds``: the training time of the epochs up to it plus one
  validation pass, i.e. what a run that evaluates only at its end spends (a
  speedrun evaluates only at the end); ``null`` if never reached. A target reached
  part-way through a longer schedule is a conservative figure: a run whose
  schedule ends at that epoch usually does better;
* final and best validation accuracy.

    python benchmarks/time_to_accuracy.py --preset tiny --data synthetic --epochs 3 --width 0.25
    python benchmarks/time_to_accuracy.py --preset paper --data cifar10 --epochs 30 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402


def parse_targets(text: str) -> list[float]:
    """``"90,93,94"`` -> ``[90.0, 93.0, 94.0]`` (percent)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        v = float(part)
        if not 0 < v <= 100:
            raise ValueError(f"target {part} is not a percentage in (0, 100]")
        out.append(v)
    if not out:
        raise ValueError("no targets")
    return sorted(set(out))


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["cutout=12", "whiten_stem=false"]`` -> ``{"cutout": 12, "whiten_stem": False}``."""
    import dataclasses

    from engine.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in names:
            raise ValueError(f"{item!r} is not KEY=VALUE with KEY a config setting")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text  # a bare word: text
    return out


class Recorder:
    """Keeps the events a time-to-accuracy report needs."""

    def __init__(self) -> None:
        self.started: Optional[float] = None
        self.ended: Optional[float] = None
        self.epochs: list = []  # EpochDone events
        self.run: Any = None  # RunStarted
        self.failed: Optional[str] = None
        self.warnings: list[str] = []
        self.compiled: Any = None  # the Compiled event

    def __call__(self, event) -> None:
        from engine import events as ev

        now = time.perf_counter()
        if isinstance(event, ev.RunStarted):
            self.started, self.run = now, event
        elif isinstance(event, ev.Compiled):
            self.compiled, self.started = event, now  # the training clock starts after the compile
        elif isinstance(event, ev.EpochDone):
            self.epochs.append((now, event))
        elif isinstance(event, ev.Failed):
            self.failed = event.message
        elif isinstance(event, ev.Warning):
            self.warnings.append(event.message)
        elif isinstance(event, ev.StateChanged) and event.state in ("finished", "failed"):
            self.ended = now


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="engine preset, e.g. paper, fast, tiny (default tiny)")
    p.add_argument("--data", default="synthetic", help="cifar10, synthetic, or a path (folder, zip) (default synthetic)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--targets", default="90,93,94,95,96", help="validation accuracies in percent (default 90,93,94,95,96)")
    p.add_argument("--subset", type=int, default=None, help="train on this many images (after the validation hold-out)")
    p.add_argument("--val-size", type=int, default=None, help="validation images held out of the training set (default: the engine's)")
    p.add_argument("--seed", type=int, default=None, help="split, initialisation and augmentation seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--val-every", type=int, default=1,
                   help="validate every N epochs (default 1: every epoch, to see when each target is reached)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the step (default: the preset's)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config setting, VALUE as JSON (e.g. --set whiten_stem=false --set cutout=12); repeatable")
    p.add_argument("--runs-dir", default=None, help="keep the run folder here (default: a temporary folder, deleted)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    try:
        args.targets = parse_targets(args.targets)
    except ValueError as e:
        p.error(f"--targets: {e}")
    try:
        args.overrides = parse_settings(args.settings)
    except ValueError as e:
        p.error(f"--set: {e}")
    if args.val_size is not None and args.val_size < 1:
        p.error("--val-size must be at least 1: the targets are validation accuracies")
    return args


def summarise(rec: Recorder, wanted: list[float]) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(every epoch's row, the validated ones, the first hit of each target)."""
    per_epoch, trained = [], 0.0
    for t, e in rec.epochs:
        val_s = e.val_seconds or 0.0
        trained += e.seconds - val_s
        per_epoch.append({
            "epoch": e.epoch, "val_acc": None if e.val_acc is None else round(100 * e.val_acc, 3),
            "train_acc": round(100 * e.train_acc, 3), "train_loss": round(e.train_loss, 4),
            "val_loss": None if e.val_loss is None else round(e.val_loss, 4), "seconds": round(e.seconds, 3),
            "val_s": round(val_s, 3), "elapsed_s": round(t - rec.started, 3), "train_seconds": round(trained + val_s, 3)})
    validated = [row for row in per_epoch if row["val_acc"] is not None]
    targets: dict[str, Any] = {}
    for target in wanted:
        hit = next((row for row in validated if row["val_acc"] >= target - 1e-9), None)
        targets[f"{target:g}"] = ({"epoch": hit["epoch"], "seconds": hit["elapsed_s"], "train_seconds": hit["train_seconds"]}
                                  if hit else {"epoch": None, "seconds": None, "train_seconds": None})
    return per_epoch, validated, targets


def run(args: argparse.Namespace, progress=lambda s: None, bundle=None, overrides: Optional[dict] = None) -> dict[str, Any]:
    """``bundle``: the data already loaded (``data_load_s`` is then 0); ``overrides``: more
    config settings (the GPU suite's variants of a preset)."""
    import torch

    from engine.config import make_config
    from engine.data import load_data
    from engine.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="cifar-tui-tta-") as tmp:
        settings = dict(data=args.data, epochs=args.epochs, width=args.width, batch_size=args.batch_size, lr=args.lr,
                        subset=args.subset, val_size=args.val_size, seed=args.seed, device=args.device,
                        runs_dir=args.runs_dir or tmp, val_every=getattr(args, "val_every", 1),
                        compile=getattr(args, "compile", None), compile_mode=getattr(args, "compile_mode", None))
        settings.update({**getattr(args, "overrides", {}), **(overrides or {})})  # --set, then the caller's
        cfg = make_config(args.preset, **settings)
        progress(f"loading {cfg.data}")
        t0 = time.perf_counter()
        if bundle is None:
            bundle = load_data(cfg.data)
        data_load_s = time.perf_counter() - t0

        rec = Recorder()

        def on_event(event) -> None:
            rec(event)
            from engine import events as ev

            if isinstance(event, ev.EpochDone):
                acc = "-" if event.val_acc is None else f"{100 * event.val_acc:.2f}%"
                progress(f"epoch {event.epoch}/{cfg.epochs}: val {acc} ({event.seconds:.1f} s)")

        progress(f"training {cfg.preset}, width {cfg.width}, {cfg.epochs} epochs")
        trainer = Trainer(cfg, listeners=[on_event], data=bundle)
        outcome = trainer.run()
        if outcome != "completed":
            raise SystemExit(f"training did not complete ({outcome}): {rec.failed or trainer.result.reason}")
        run_info = rec.run

    if not rec.epochs or all(e.val_acc is None for _, e in rec.epochs):
        raise SystemExit("no validation accuracy was reported; give a --val-size of at least 1")
    start = rec.started
    per_epoch, validated, targets = summarise(rec, args.targets)

    from engine.device import resolve_device

    device = resolve_device(cfg.device)
    return {
        "benchmark": "time_to_accuracy",
        "preset": cfg.preset,
        "data": bundle.source,
        "data_kind": bundle.kind,
        "width": cfg.width,
        "params": run_info.params,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "train_images": run_info.train_size,
        "val_images": run_info.val_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "overrides": {**getattr(args, "overrides", {}), **(overrides or {})},
        "data_load_s": round(data_load_s, 2),
        "compile_s": round(rec.compiled.seconds, 2) if rec.compiled is not None else None,
        "compile_ok": rec.compiled.ok if rec.compiled is not None else None,
        "train_s": round(rec.ended - start, 2),
        "epoch_s": [row["seconds"] for row in per_epoch],
        "val_s": [row["val_s"] for row in per_epoch],
        "targets": targets,
        "final_val_acc": validated[-1]["val_acc"],
        "best_val_acc": max(row["val_acc"] for row in validated),
        "per_epoch": per_epoch,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]Time to accuracy[/]: preset {res['preset']}, width {res['width']} ({res['params']:,} params), "
              f"{res['data_kind']} data, {res['train_images']:,} train / {res['val_images']:,} val images, "
              f"{res['device']} ({res['device_name']})")
    if res.get("compile_s") is not None:
        con.print(f"torch.compile warm-up {res['compile_s']:.2f} s (not counted)")
    con.print(f"data loading {res['data_load_s']:.2f} s (not counted); training {res['train_s']:.2f} s; "
              f"final val {res['final_val_acc']:.2f}%, best {res['best_val_acc']:.2f}%")
    t = Table(title="epochs")
    for col in ("epoch", "val acc %", "train acc %", "val loss", "epoch s", "elapsed s"):
        t.add_column(col, justify="right")
    for row in res["per_epoch"]:
        t.add_row(str(row["epoch"]), "-" if row["val_acc"] is None else f"{row['val_acc']:.2f}", f"{row['train_acc']:.2f}",
                  "-" if row["val_loss"] is None else f"{row['val_loss']:.3f}", f"{row['seconds']:.1f}",
                  f"{row['elapsed_s']:.1f}")
    con.print(t)
    t = Table(title="targets (validation accuracy)")
    t.add_column("target %", justify="right")
    t.add_column("first epoch", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("training seconds", justify="right")
    for key, hit in res["targets"].items():
        t.add_row(key, "not reached" if hit["epoch"] is None else str(hit["epoch"]),
                  "-" if hit["seconds"] is None else f"{hit['seconds']:.1f}",
                  "-" if hit["train_seconds"] is None else f"{hit['train_seconds']:.1f}")
    con.print(t)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    progress = (lambda s: None) if args.json_only else (lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    from engine.config import ConfigError
    from engine.data import DataError

    try:
        res = run(args, progress)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res), flush=True)
    if not args.json_only:
        print_table(res)
    return 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:  # run as a script from a checkout that is not installed
        sys.path.insert(0, str(REPO))
    sys.exit(main())
