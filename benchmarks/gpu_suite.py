"""Every GPU figure of docs/benchmarks.md, sized for one 15-minute GPU lease.

    python benchmarks/gpu_suite.py --data data/cifar10-jpeg-train.zip --out "$OUT" --budget-min 7 --commit SHA
    python benchmarks/gpu_suite.py --part 2 ...     # what part 1 leaves out, same shape
    python benchmarks/gpu_suite.py --dry-run --out DIR   # the same code, tiny, on the CPU (< 3 minutes)

Part 1, in order of value: a preflight (bf16 autocast, channels_last, the compiled
``speedrun`` step, reduce-overhead from the main thread, ``TORCH_LOGS=recompiles,
graph_breaks`` counted), decoding the data once, ``speedrun`` throughput (the model alone
beside the full engine), a full ``speedrun`` schedule on the held-out validation split
(time to 94%), then the sync census. Part 2: ``paper`` throughput and epoch time, the
compile modes, ``fast``, ``speedrun`` to 96.5%, seeds 1 and 2, and the ablations.

Each section runs in its own process (``gpu_sections.py``) with its own deadline: the
smaller of its cap and what is left of ``--budget-min``; a section that would start with
less than it needs is recorded as skipped. After every section one JSON line is appended
to ``OUT/gpu-suite-partN.jsonl`` (``section``, ``ok``, ``seconds``, ``device``, ``gpu``,
``torch``, ``cuda``, ``commit`` and the section's figures) and ``OUT/gpu-suite-partN.md``
is rewritten, so a stop at any moment keeps everything finished so far. The inductor
cache is shared by the sections (``compile_cache`` says whether it was cold or warm).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IN_TREE_DATA = REPO / "data" / "cifar10-jpeg-train.zip"  # carried to the GPU machine in an ignored folder
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-train.zip"
DATA_SHA256 = "f9e11d6283a4afd5286866ecf0496165390e4f1f2305295e0cfdf337d5eead54"
TARGETS = "94,95,96,96.5"

# (name, seconds needed to be worth starting, cap) on a GPU; the dry run uses DRY_CAP for all
PARTS: dict[int, list[tuple[str, float, float]]] = {
    1: [("preflight", 30, 60), ("data", 20, 90), ("throughput_speedrun", 40, 90), ("speedrun_to_94", 60, 200),
        ("sync_census", 30, 60)],
    2: [("data", 20, 90), ("throughput_paper", 40, 100), ("paper_epochs", 60, 150), ("compile_modes", 60, 150),
        ("fast", 40, 120), ("speedrun96", 60, 200), ("speedrun_seed1", 40, 120), ("speedrun_seed2", 40, 120),
        ("speedrun_lowres", 40, 120), ("speedrun_ema", 40, 120), ("speedrun_lookahead", 40, 120)],
}
DRY_CAP = 300.0  # a cold inductor compile on a loaded 2-core machine can take minutes
NEEDS_DATA = {"speedrun_to_94", "sync_census", "paper_epochs", "fast", "speedrun96", "speedrun_seed1",
              "speedrun_seed2", "speedrun_lowres", "speedrun_ema", "speedrun_lookahead"}


def plan_for(args: argparse.Namespace, data: Optional[str]) -> dict[str, Any]:
    """Sizes for a GPU run, or the same code tiny on the CPU (``--dry-run``: inductor, bf16
    autocast and channels_last still exercised)."""
    if args.dry_run:
        return dict(dry_run=True, device="cpu", width=0.0625, data=data, backend="inductor",
                    steps={"paper": 2, "speedrun": 2}, warmup=1, repeats=1, batch={"paper": 32, "speedrun": 32},
                    modes=["eager", "default"], variants="model_only,pipeline",
                    epochs={"speedrun": 1, "fast": 1, "speedrun96": 1, "paper": 1},
                    subset=200, val_size=50, workers=0, sync_steps=0, targets=TARGETS)
    return dict(dry_run=False, device=args.device, width=None, data=data, backend=None,
                steps={"paper": 150, "speedrun": 50}, warmup=10, repeats=2, batch={"paper": 128, "speedrun": 1024},
                modes=["eager", "default", "reduce-overhead"], variants="model_only,pipeline,report_baseline",
                epochs={"speedrun": None, "fast": None, "speedrun96": 40, "paper": 2},
                subset=None, val_size=5000, workers=args.workers, sync_steps=100, targets=TARGETS)


class Suite:
    """The clock, the shared files and the record of one part."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget_min * 60
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        tag = f"part{args.part}" + ("-dry" if args.dry_run else "")
        self.jsonl = self.out / f"gpu-suite-{tag}.jsonl"
        self.md = self.out / f"gpu-suite-{tag}.md"
        self.lines: list[dict] = []
        cache = Path(args.cache_dir or tempfile.gettempdir()) / "cifar-tui-gpu-suite"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", CIFAR_TUI_CACHE_DIR=str(cache / "data"),
                        CIFAR_TUI_RUNS_DIR=str(tmp / "runs"), TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"))
        self.inductor = cache / "inductor"
        self.common: dict[str, Any] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    def record(self, section: str, ok: bool, seconds: float, figures: dict) -> None:
        line = {"section": section, "ok": ok, "seconds": round(seconds, 1), **self.common, **figures}
        self.lines.append(line)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(line, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.md.write_text(markdown(self.lines) + "\n")
        self.say(f"{section}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s" +
                 ("" if ok else f" ({figures.get('error', figures.get('skipped', ''))})"))

    def run_section(self, name: str, need: float, cap: float, plan_path: Path) -> None:
        if self.left() - 2 < need:  # (2 s kept for writing the record)
            self.record(name, False, 0.0, {"skipped": f"{self.left():.0f} s left of the budget, it needs {need:.0f} s"})
            return
        timeout = max(1.0, min(cap, self.left() - 2))
        result = self.tmp / f"{name}.json"
        log = self.tmp / f"{name}.log"
        env = dict(self.env)
        if name == "preflight":
            env["TORCH_LOGS"] = "recompiles,graph_breaks"
        cold = not any(self.inductor.rglob("*")) if self.inductor.exists() else True
        t = time.monotonic()
        with open(log, "w") as lf:
            # (in this process's session: whoever stops the suite stops the section too)
            p = subprocess.Popen([sys.executable, str(HERE / "gpu_sections.py"), name, "--plan", str(plan_path),
                                  "--result", str(result)], cwd=REPO, env=env, stdout=lf, stderr=subprocess.STDOUT)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(p)
        seconds = time.monotonic() - t
        figures: dict[str, Any] = {"compile_cache": "cold" if cold else "warm"}
        try:
            figures.update(json.loads(result.read_text()))
        except (OSError, ValueError):
            why = f"stopped at its deadline ({timeout:.0f} s)" if p.returncode in (-signal.SIGTERM, -signal.SIGKILL) \
                else f"exited {p.returncode} without a result"
            figures.update(ok=False, error=why, log_tail=_tail(log))
        if name == "preflight":
            text = log.read_text(errors="replace")
            figures["recompiles"] = len(re.findall(r"Recompiling function", text))
            figures["graph_breaks"] = len(re.findall(r"[Gg]raph break", text))
        ok = bool(figures.pop("ok", False))
        if not ok and "log_tail" not in figures:
            figures["log_tail"] = _tail(log)
        self.record(name, ok, seconds, figures)


def _stop(p: subprocess.Popen) -> None:
    """A section past its deadline: SIGTERM, then SIGKILL 5 s later."""
    p.terminate()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def environment(args: argparse.Namespace, data: Optional[str]) -> dict[str, Any]:
    """What every line carries: the commit (passed in: the copy may not be a git checkout),
    the device and its name, torch and CUDA versions. Probed in a child process so that this
    process never holds a CUDA context."""
    probe = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
             "'cuda': torch.version.cuda if c else None, 'gpu': torch.cuda.get_device_name(0) if c else None}))")
    try:
        info = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                         timeout=120).stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        info = {"torch": None, "cuda": None, "gpu": None}
    if info["gpu"] is None:
        sys.path.insert(0, str(HERE))
        from _common import cpu_model

        info["gpu"] = f"none (CPU: {cpu_model()})"
    return {"device": "cpu" if args.dry_run else args.device, **info, "commit": args.commit or _git_commit(),
            "part": args.part, "dry_run": args.dry_run, "data": data, "data_sha256_ok": _sha_ok(data),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unknown"


def _sha_ok(data: Optional[str]) -> Optional[bool]:
    if data is None or not Path(data).is_file() or not data.endswith("cifar10-jpeg-train.zip"):
        return None
    h = hashlib.sha256()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == DATA_SHA256


def _fmt(v: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _summary(line: dict) -> str:
    """The headline figure of one section, for the markdown table."""
    s = line["section"]
    if "skipped" in line:
        return f"skipped: {line['skipped']}"
    if not line["ok"]:
        return f"failed: {line.get('error', '')}"[:160]
    if s == "preflight":
        d = line.get("default", {})
        return (f"model {_fmt(d.get('model_only'))} img/s (compile {d.get('first_step_s')} s); engine "
                f"{_fmt(line.get('engine', {}).get('pipeline'))} img/s; recompiles {line.get('recompiles')}, "
                f"graph breaks {line.get('graph_breaks')}")
    if s == "data":
        return f"{line['images']:,} images decoded in {line['load_s']} s"
    if s.startswith("throughput"):
        return (f"model {_fmt(line.get('model_only'))}, engine {_fmt(line.get('pipeline'))}, report's loader "
                f"{_fmt(line.get('report_baseline'))} img/s (engine/model {_fmt(line.get('pipeline_vs_model'), '{:.3f}')})")
    if s == "compile_modes":
        return "; ".join(f"{m['preset']} {m['mode']}: " + (f"{_fmt(m['images_per_s'])} img/s, first step "
                         f"{m['first_step_s']}" if m["ok"] else "failed") for m in line["modes"])
    if s == "sync_census":
        if "skipped" in line or "paper" not in line:
            return str(line.get("skipped", ""))
        return "; ".join(f"{p}: {line[p]['syncs']} in {line[p]['steps']} steps ({line[p]['where']})"
                         for p in ("paper", "speedrun"))
    if s == "paper_epochs":
        return "; ".join(f"{k}: {v['epoch_s']} s/epoch" for k, v in line.items() if isinstance(v, dict) and "epoch_s" in v)
    if "targets" in line:
        hits = ", ".join(f"{t}%: " + ("-" if h["epoch"] is None else f"{h['train_seconds']:.1f} s (epoch {h['epoch']})")
                         for t, h in line["targets"].items())
        return f"best {line['best_val_acc']:.2f}% in {line['epochs']} epochs; {hits}"
    return ""


def markdown(lines: list[dict]) -> str:
    if not lines:
        return ""
    env = lines[0]
    head = (f"### GPU suite, part {env['part']}: {env['gpu']}{' (DRY RUN on the CPU, not a GPU figure)' if env['dry_run'] else ''}\n\n"
            f"{env['date_utc']} UTC, commit `{env['commit']}`, torch {env['torch']}, CUDA {env['cuda'] or '-'}, "
            f"data {env['data'] or 'synthetic'} (sha256 {'ok' if env['data_sha256_ok'] else 'not checked' if env['data_sha256_ok'] is None else 'MISMATCH'})\n")
    rows = ["| section | ok | seconds | compile cache | figures |", "|---|---|---:|---|---|"]
    rows += [f"| {x['section']} | {'yes' if x['ok'] else 'no'} | {x['seconds']} | {x.get('compile_cache', '-')} | "
             f"{_summary(x).replace('|', '/')} |" for x in lines]
    return head + "\n" + "\n".join(rows)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help=f"the training zip (default: {IN_TREE_DATA.relative_to(REPO)} in the "
                   f"working tree, else ../shared/data/)")
    p.add_argument("--out", required=True, help="folder for the .jsonl and .md (on a lent GPU: \"$OUT\")")
    p.add_argument("--part", type=int, choices=(1, 2), default=1, help="1: what matters most; 2: the rest")
    p.add_argument("--budget-min", type=float, default=None, help="wall-clock budget in minutes (default 7; 3 dry)")
    p.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse, when a checkout)")
    p.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the report baseline (default 4)")
    p.add_argument("--cache-dir", default=None, help="where decoded data and the inductor cache live (default: tmp)")
    p.add_argument("--sections", default=None,
                   help=f"only these sections of the part, comma-separated (of: {', '.join(n for n, _, _ in PARTS[1] + PARTS[2])})")
    p.add_argument("--dry-run", action="store_true", help="the same code at a tiny width on the CPU, with inductor")
    args = p.parse_args(argv)
    known = {n for n, _, _ in PARTS[args.part]}
    args.only = None if args.sections is None else [x.strip() for x in args.sections.split(",") if x.strip()]
    if args.only is not None and (bad := [x for x in args.only if x not in known]):
        p.error(f"--sections: {', '.join(bad)} not in part {args.part} (its sections: {', '.join(sorted(known))})")
    if args.budget_min is None:
        args.budget_min = 3.0 if args.dry_run else 7.0
    if args.budget_min <= 0:
        p.error("--budget-min must be positive")
    return args


def find_data(args: argparse.Namespace) -> Optional[str]:
    if args.data is not None:
        return args.data
    if args.dry_run:
        return None  # synthetic images
    for candidate in (IN_TREE_DATA, SHARED_DATA):
        if candidate.is_file():
            return str(candidate)
    return None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    data = find_data(args)
    with tempfile.TemporaryDirectory(prefix="cifar-tui-suite-") as tmp:
        s = Suite(args, Path(tmp))
        s.common = environment(args, data)
        if not args.dry_run and s.common["cuda"] is None:
            print("error: no CUDA GPU here; run with --dry-run to check the suite on the CPU", file=sys.stderr)
            return 2
        s.say(f"{s.common['gpu']}, torch {s.common['torch']}, commit {s.common['commit']}, "
              f"budget {args.budget_min} min, writing {s.jsonl}")
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan_for(args, data)))
        for name, need, cap in PARTS[args.part]:
            if args.only is not None and name not in args.only:
                continue
            if data is None and name in NEEDS_DATA and not args.dry_run:
                s.record(name, False, 0.0, {"skipped": "no training data: give --data PATH"})
                continue
            if args.dry_run:
                need, cap = 1.0, DRY_CAP
            s.run_section(name, need, cap, plan_path)
    s.say(f"done in {time.monotonic() - s.t0:.0f} s: {sum(x['ok'] for x in s.lines)} of {len(s.lines)} sections ok")
    print(s.md.read_text() if s.md.exists() else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
