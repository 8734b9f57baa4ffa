"""Every GPU figure of docs/benchmarks.md, in one process, in about 20 minutes on one H100.

    python benchmarks/gpu_suite.py                      # on a machine with a CUDA GPU
    python benchmarks/gpu_suite.py --data PATH.zip      # the training zip (default: ../shared/data/...)
    python benchmarks/gpu_suite.py --dry-run            # the same code, tiny, on the CPU (< 3 minutes)

Measures, in this order (a section that would overrun ``--budget-min`` is skipped, and
the output says so):

1. throughput of ``paper`` (batch 128) and ``speedrun`` (batch 1024): the model alone,
   the engine headless, the engine with the dashboard (skipped, with a note, where
   Textual does not import), the report's DataLoader (``benchmarks/throughput.py``);
2. torch.compile: compile time and speed of the model alone, eager and compiled in
   the default and reduce-overhead (CUDA graphs) modes, for both presets;
3. time to 94 / 95 / 96 / 96.5% validation accuracy on images held out of the
   training zip (``benchmarks/time_to_accuracy.py``): ``speedrun`` (seed 0),
   ``speedrun`` with translate 4 + cutout over more epochs (the 96% recipe), ``fast``;
4. the paper preset's seconds per epoch (eager, then ``--compile``) on the data;
5. a synchronisation check: the host-device syncs of a few hundred engine steps
   (``torch.cuda.set_sync_debug_mode``), which should be the metric reads alone;
6. as time allows: ``speedrun`` seeds 1 and 2, then the choices the CPU could not
   settle (progressive resizing, an EMA of the weights).

Writes ``gpu-suite-<time>.json`` and ``gpu-suite-<time>.md`` (a table to paste into
docs/benchmarks.md, with the GPU, torch version, date and commit) under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import throughput  # noqa: E402
import time_to_accuracy as tta  # noqa: E402
from _common import cpu_model  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.zip"
TARGETS = "94,95,96,96.5"
# The 96% recipe: speedrun with translate 4 (reflect) and 12-pixel cutout over more epochs.
SPEEDRUN_96 = {"crop_padding": 4, "cutout": 12, "epochs": 40}
# Choices the CPU could not settle (docs/benchmarks.md), measured last, as time allows.
ABLATIONS = {"speedrun_lowres": {"low_res_size": 24, "low_res_epochs": 6}, "speedrun_ema": {"ema_decay": 0.99}}
RUN_KEYS = ("speedrun_seed0", "speedrun96", "fast", "speedrun_seed1", "speedrun_seed2", *ABLATIONS)


class Suite:
    """The run's plan (GPU or dry run), its clock, and what it found."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.dry_run
        self.t0 = time.monotonic()
        self.budget = args.budget_min * 60
        self.notes: list[str] = []
        self.results: dict[str, Any] = {}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(f"note: {text}")

    def section(self, key: str, need_s: float, fn: Callable[[], Any]) -> Any:
        """Run one measurement if ``need_s`` seconds are left; record a failure as a note."""
        if self.left() < need_s:
            self.note(f"{key}: skipped, {self.left():.0f} s of the budget left and it needs about {need_s:.0f} s")
            return None
        self.say(f"{key} ...")
        t = time.monotonic()
        try:
            out = fn()
        except (Exception, SystemExit) as e:  # one failed measurement must not lose the others
            self.note(f"{key}: failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            self.results.setdefault("errors", {})[key] = traceback.format_exc()[-2000:]
            return None
        self.say(f"{key} done in {time.monotonic() - t:.1f} s")
        self.results[key] = out
        return out


# ------------------------------------------------------------------ plan


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Sizes for a GPU run, or the same code tiny on the CPU (``--dry-run``)."""
    if args.dry_run:
        return dict(device="cpu", width=0.125, steps={"paper": 2, "speedrun": 2}, warmup=1, repeats=1,
                    batch={"paper": 32, "speedrun": 64},
                    modes=["eager", "default"], backend="eager", seeds=[0], epochs={"speedrun": 1, "fast": 1,
                    "speedrun96": 1, "paper": 1}, subset=200, val_size=50, workers=1, sync_steps=0)
    return dict(device=args.device, width=None, steps={"paper": 150, "speedrun": 50}, warmup=10, repeats=2,
                batch={"paper": 128, "speedrun": 1024},
                modes=["eager", "default", "reduce-overhead"], backend=None, seeds=list(range(args.seeds)),
                epochs={"speedrun": None, "fast": None, "speedrun96": SPEEDRUN_96["epochs"], "paper": 2},
                subset=None, val_size=5000, workers=args.workers, sync_steps=300)


def throughput_args(p: dict, preset: str, variants: str, mode: Optional[str] = None) -> argparse.Namespace:
    argv = ["--preset", preset, "--batch-size", str(p["batch"][preset]), "--steps", str(p["steps"][preset]),
            "--warmup", str(p["warmup"]), "--repeats", str(p["repeats"]), "--device", p["device"],
            "--workers", str(p["workers"]), "--variants", variants]
    if p["width"] is not None:
        argv += ["--width", str(p["width"])]
    if mode == "eager":
        argv += ["--no-compile"]
    elif mode is not None:
        argv += ["--compile"] + (["--compile-backend", p["backend"]] if p["backend"] else ["--compile-mode", mode])
    return throughput.parse_args(argv)


def measure_throughput(s: Suite, p: dict, preset: str, bundle) -> dict:
    """(a)-(d) for a preset, as its config says (speedrun compiles on CUDA)."""
    mode = "default" if (preset == "speedrun" and p["backend"]) else None
    res = throughput.run(throughput_args(p, preset, ",".join(throughput.VARIANTS), mode), progress=s.say, bundle=bundle)
    for n in res.get("notes", []):
        s.note(f"throughput {preset}: {n}")
    return res


def measure_compile_modes(s: Suite, p: dict, preset: str) -> list[dict]:
    """The model alone, eager and compiled in each mode: first step (compile) and speed."""
    out = []
    for mode in p["modes"]:
        res = throughput.run(throughput_args(p, preset, "model_only", mode), progress=s.say)
        out.append({"preset": preset, "mode": mode, "backend": res["compile_backend"] if res["compile"] else None,
                    "images_per_s": res["model_only"], "first_step_s": res["first_step_s"]})
    return out


# ------------------------------------------------------------------ training runs


def tta_args(p: dict, preset: str, data: str, seed: int, epochs: Optional[int], compile_: Optional[bool] = None,
             targets: str = TARGETS) -> argparse.Namespace:
    argv = ["--preset", preset, "--data", data, "--device", p["device"], "--seed", str(seed),
            "--val-size", str(p["val_size"]), "--val-every", "1", "--targets", targets, "--json-only"]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if p["width"] is not None:
        argv += ["--width", str(p["width"])]
    if p["subset"] is not None:
        argv += ["--subset", str(p["subset"])]
    if compile_ is not None:
        argv += ["--compile" if compile_ else "--no-compile"]
    return tta.parse_args(argv)


def train_run(s: Suite, p: dict, preset: str, bundle, seed: int = 0, epochs: Optional[int] = None,
              extra: Optional[dict] = None, compile_: Optional[bool] = None) -> dict:
    overrides = dict(extra or {})
    if p["backend"] and (compile_ or (compile_ is None and preset in ("speedrun", "fast"))):
        overrides["compile_backend"] = p["backend"]
        compile_ = True
    res = tta.run(tta_args(p, preset, bundle.source, seed, epochs, compile_), progress=s.say, bundle=bundle,
                  overrides=overrides)
    return res


def paper_epochs(s: Suite, p: dict, bundle) -> dict:
    """The paper preset's seconds per epoch: eager, with --compile, and (on CUDA) with
    --compile-mode reduce-overhead (CUDA graphs in the engine's own loop)."""
    out = {}
    variants = [("eager", False, None), ("compiled", True, None)]
    if not s.dry:
        variants.append(("compiled, reduce-overhead", True, {"compile_mode": "reduce-overhead"}))
    for label, comp, extra in variants:
        res = train_run(s, p, "paper", bundle, epochs=p["epochs"]["paper"], extra=extra, compile_=comp)
        out[label] = {"epoch_s": res["epoch_s"], "val_s": res["val_s"], "compile_s": res["compile_s"],
                      "train_images": res["train_images"], "device_name": res["device_name"]}
    return out


def sync_check(s: Suite, p: dict, bundle) -> dict:
    """Host-device synchronisations while the engine trains (CUDA's sync debug mode warns on
    each): expected are the metric reads (every log_every steps and at each epoch's end)
    and validation's one read per evaluation."""
    import warnings

    import torch

    from engine.config import make_config
    from engine.trainer import Trainer

    n = min(len(bundle.train), p["sync_steps"] * 128)
    with tempfile.TemporaryDirectory() as runs:
        cfg = make_config("paper", epochs=1, subset=n, val_size=1000, device=p["device"], runs_dir=runs, log_every=50,
                          log_seconds=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                outcome = Trainer(cfg, data=bundle).run()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    messages = [str(w.message).splitlines()[0][:160] for w in caught if "synchroniz" in str(w.message).lower()]
    counts: dict[str, int] = {}
    for m in messages:
        counts[m] = counts.get(m, 0) + 1
    return {"outcome": outcome, "steps": -(-n // 128), "log_every": 50, "syncs": len(messages), "kinds": counts}


# ------------------------------------------------------------------ the whole run


def environment(s: Suite, device: str) -> dict:
    import torch

    def git(*a: str) -> Optional[str]:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if cuda else cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "dry_run": s.dry,
    }


def load_bundle(s: Suite, p: dict):
    """The training images: the zip (or --data) for a GPU run, a small synthetic set for a
    dry run (unless --data names one). None when there is nothing to train on."""
    from engine.data import load_data, make_synthetic

    data = s.args.data
    if data is None and not s.dry:
        data = str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None
    if data is None:
        if not s.dry:
            s.note(f"no training data ({DEFAULT_DATA} is missing; give --data PATH): the training-run sections are skipped")
            return None
        return make_synthetic(n_train=p["subset"] + p["val_size"] + 100, n_test=10)
    t = time.monotonic()
    bundle = load_data(data)
    s.results["data"] = {"source": bundle.source, "images": len(bundle.train), "load_s": round(time.monotonic() - t, 1)}
    return bundle


def run_all(s: Suite) -> None:
    p = plan(s.args)
    s.results["environment"] = env = environment(s, p["device"])
    s.say(f"{env['device_name']}, torch {env['torch']}, commit {env['commit']}{' (dirty)' if env['dirty'] else ''}")
    try:
        bundle = load_bundle(s, p)
    except Exception as e:  # noqa: BLE001 - a bad --data: the rest still runs
        s.note(f"data: could not load {s.args.data}: {e}")
        bundle = None
    for preset in ("paper", "speedrun"):  # (on synthetic images: the data's content does not change the speed)
        s.section(f"throughput_{preset}", 60 if s.dry else 150, lambda pr=preset: measure_throughput(s, p, pr, None))
    for preset in ("paper", "speedrun"):
        s.section(f"compile_{preset}", 20 if s.dry else 200, lambda pr=preset: measure_compile_modes(s, p, pr))
    if bundle is None:
        return
    short = p["epochs"]["speedrun"]
    s.section("speedrun_seed0", 20 if s.dry else 120, lambda: train_run(s, p, "speedrun", bundle, 0, short))
    s.section("speedrun96", 20 if s.dry else 240, lambda: train_run(
        s, p, "speedrun", bundle, 0, p["epochs"]["speedrun96"], {k: v for k, v in SPEEDRUN_96.items() if k != "epochs"}))
    s.section("fast", 20 if s.dry else 150, lambda: train_run(s, p, "fast", bundle, 0, p["epochs"]["fast"]))
    s.section("paper_epochs", 20 if s.dry else 200, lambda: paper_epochs(s, p, bundle))
    if p["sync_steps"] and p["device"].startswith("cuda"):
        s.section("sync_check", 90, lambda: sync_check(s, p, bundle))
    else:
        s.note("sync_check: CUDA only (torch.cuda.set_sync_debug_mode)")
    for seed in p["seeds"][1:]:
        s.section(f"speedrun_seed{seed}", 120, lambda sd=seed: train_run(s, p, "speedrun", bundle, sd, short))
    for key, extra in ABLATIONS.items():
        if not s.dry:  # (the dry run has covered this code already)
            s.section(key, 120, lambda x=extra: train_run(s, p, "speedrun", bundle, 0, short, x))


# ------------------------------------------------------------------ the report


def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _throughput_md(r: dict) -> list[str]:
    rows = ["| preset | batch | (a) model only | (b) engine | (c) + dashboard | (d) report's DataLoader | b/a | c/b | b/d | compile s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for preset in ("paper", "speedrun"):
        t = r.get(f"throughput_{preset}")
        if not t:
            continue
        rows.append(f"| {preset} | {t['batch_size']} | {_f(t['model_only'])} | {_f(t['pipeline'])} | {_f(t['dashboard'])} | "
                    f"{_f(t['report_baseline'])} | {_f(t['pipeline_vs_model'], '{:.3f}')} | "
                    f"{_f(t['dashboard_vs_pipeline'], '{:.3f}')} | {_f(t['pipeline_vs_report'], '{:.2f}')} | "
                    f"{', '.join(str(x) for x in t['compile_s']) or '-'} |")
    return rows


def _compile_md(r: dict) -> list[str]:
    rows = ["| preset | mode | backend | first step s (compile) | images/s, model only |", "|---|---|---|---:|---:|"]
    for preset in ("paper", "speedrun"):
        for c in r.get(f"compile_{preset}") or []:
            rows.append(f"| {preset} | {c['mode']} | {c['backend'] or '-'} | {', '.join(str(x) for x in c['first_step_s'])} | "
                        f"{_f(c['images_per_s'])} |")
    return rows


def _runs_md(r: dict) -> list[str]:
    keys = [k for k in RUN_KEYS if r.get(k)]
    head = "| run | seed | epochs | compile s | " + " | ".join(f"{t}%: epoch, s, training s" for t in TARGETS.split(",")) + \
           " | final val % | best val % |"
    rows = [head, "|---|---:|---:|---:|" + "---|" * len(TARGETS.split(",")) + "---:|---:|"]
    for k in keys:
        x = r.get(k)
        if not x:
            continue
        cells = []
        for hit in x["targets"].values():
            cells.append("not reached" if hit["epoch"] is None else
                         f"{hit['epoch']}, {hit['seconds']:.1f}, {hit['train_seconds']:.1f}")
        label = k + (" (" + ", ".join(f"{a}={b}" for a, b in x["overrides"].items() if a != "compile_backend") + ")"
                     if k in ABLATIONS or k == "speedrun96" else "")
        rows.append(f"| {label} | {x['seed']} | {x['epochs']} | {_f(x['compile_s'], '{:.1f}')} | " + " | ".join(cells) +
                    f" | {x['final_val_acc']:.2f} | {x['best_val_acc']:.2f} |")
    return rows


def markdown(r: dict, notes: list[str]) -> str:
    env = r["environment"]
    out = [f"### GPU suite: {env['device_name']}{' (DRY RUN on the CPU, not a GPU figure)' if env['dry_run'] else ''}", "",
           f"`{env['command']}`: {env['date_utc']} UTC, commit `{env['commit']}`{' (with local changes)' if env['dirty'] else ''}, "
           f"torch {env['torch']}, CUDA {env['cuda'] or '-'}, Python {env['python']}, {env['cpus']} CPUs"]
    if "data" in r:
        out.append(f"; data {r['data']['source']} ({r['data']['images']:,} images, loaded in {r['data']['load_s']} s)")
    out += ["", "Throughput, images/s (median of the rounds):", "", *_throughput_md(r), "",
            "torch.compile, the model alone:", "", *_compile_md(r), ""]
    if r.get("paper_epochs"):
        out.append("The paper preset, seconds per epoch (training + validation; validation part in brackets):")
        out.append("")
        for label, x in r["paper_epochs"].items():
            secs = ", ".join(f"{a:.1f} ({b:.1f})" for a, b in zip(x["epoch_s"], x["val_s"]))
            out.append(f"- {label}: {secs}; compile {_f(x['compile_s'], '{:.1f}')} s; {x['train_images']:,} training images")
        out.append("")
    if any(r.get(k) for k in RUN_KEYS):
        out += ["Time to validation accuracy (held-out training images). Seconds: wall clock from the first step "
                "(validating every epoch); training s: without the per-epoch validation, plus one evaluation:", "",
                *_runs_md(r), ""]
    if r.get("sync_check"):
        c = r["sync_check"]
        out.append(f"Synchronisations in {c['steps']} paper steps (log every {c['log_every']}): {c['syncs']} "
                   f"({'; '.join(f'{n} x {m}' for m, n in c['kinds'].items()) or 'none'})")
        out.append("")
    if notes:
        out += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help=f"the training images (default: {DEFAULT_DATA}, when present)")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON and markdown (default benchmarks/results)")
    p.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    p.add_argument("--seeds", type=int, default=3, help="speedrun seeds, as time allows (default 3)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the report baseline (default 2)")
    p.add_argument("--budget-min", type=float, default=None, help="time budget in minutes (default 20; 3 for --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="the same code at width 0.125 on a few hundred images, on the CPU")
    args = p.parse_args(argv)
    if args.budget_min is None:
        args.budget_min = 3.0 if args.dry_run else 20.0
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA GPU here; run with --dry-run to check the suite on the CPU", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="cifar-tui-suite-") as tmp:
        os.environ.setdefault("CIFAR_TUI_CACHE_DIR", str(Path(tmp) / "cache"))  # (platformdirs may be missing)
        os.environ["CIFAR_TUI_RUNS_DIR"] = str(Path(tmp) / "runs")
        s = Suite(args)
        run_all(s)
    s.results["notes"] = s.notes
    s.results["seconds"] = round(time.monotonic() - s.t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + ("-dry" if args.dry_run else "")
    (out / f"gpu-suite-{stamp}.json").write_text(json.dumps(s.results, indent=1, default=str) + "\n")
    md = markdown(s.results, s.notes)
    (out / f"gpu-suite-{stamp}.md").write_text(md + "\n")
    print(md)
    print(f"wrote {out / f'gpu-suite-{stamp}.json'} and .md ({s.results['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
