"""Fault-injection campaign: kill -9 headless training at random moments, then check
that nothing is lost.

Each round starts `cifar-tui --no-ui train` (the first round a new run, the others
`--resume` of the same run with a few more epochs), waits a random time, and kills
the process with SIGKILL, possibly in the middle of a checkpoint write. After every
kill it checks:

- `checkpoints/last.pt` (once an epoch has finished) loads with weights_only=True;
- no half-written file sits under a real checkpoint name;
- `metrics.jsonl` stays readable: at most one torn line per kill, skipped;
- at most the work since the last checkpoint is lost: the next `--resume` starts
  right after the checkpoint's epoch and step.

At the end one last resume runs to completion. Prints a JSON summary line.

    python scripts/kill_campaign.py --kills 20            # the campaign of docs/reliability.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from engine.rundir import read_metrics  # noqa: E402

TRAIN = ["--no-ui", "train", "--data", "synthetic", "--preset", "tiny", "--width", "0.125", "--subset", "384",
         "--val-size", "64", "--batch-size", "64", "--save-every", "1"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui_trainer", *args]


def _count(runs: Path, needle: str) -> int:
    if not runs.exists():
        return 0
    total = 0
    for d in runs.iterdir():
        try:
            total += (d / "metrics.jsonl").read_text(errors="replace").count(needle)
        except OSError:
            pass
    return total


def _has_last(runs: Path) -> bool:
    return runs.exists() and any((d / "checkpoints" / "last.pt").exists() for d in runs.iterdir())


def check(run: Path, report: dict) -> tuple[int, int]:
    """Check the run folder after a kill; returns (epoch, step_in_epoch) of last.pt."""
    ckdir = run / "checkpoints"
    for p in ckdir.glob("*.pt"):
        if p.name.startswith("."):
            continue
        try:
            load_checkpoint(p)
        except CheckpointError as e:
            report["corrupt_checkpoints"] += 1
            report["problems"].append(f"{p.name}: {e}")
    events, bad = read_metrics(run / "metrics.jsonl")
    report["torn_lines"] = bad
    if bad > report["kills"]:
        report["problems"].append(f"metrics.jsonl has {bad} unreadable lines after {report['kills']} kills")
    last = ckdir / "last.pt"
    announced = [e["global_step"] for e in events if e["event"] == "CheckpointSaved" and e.get("kind") in ("last", "stop")
                 and "global_step" in e]
    announced_epochs = [e["epoch"] for e in events if e["event"] == "CheckpointSaved" and e.get("kind") == "last"]
    if not last.exists():
        if announced_epochs:
            report["lost_more_than_last_checkpoint"] += 1
            report["problems"].append("last.pt is gone although a save was announced")
        return 0, 0
    ck = load_checkpoint(last)
    # A checkpoint announced as saved must be durable: last.pt is at least that far.
    if announced_epochs and int(ck["epoch"]) < max(announced_epochs):
        report["lost_more_than_last_checkpoint"] += 1
        report["problems"].append(f"last.pt is at epoch {ck['epoch']} but epoch {max(announced_epochs)} was announced saved")
    del announced
    return int(ck["epoch"]), int(ck.get("step_in_epoch", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-wait", type=float, default=3.0, help="latest moment of a start-up kill (seconds)")
    ap.add_argument("--max-wait", type=float, default=4.0, help="longest time a round trains before its kill (seconds)")
    ap.add_argument("--early-fraction", type=float, default=0.2, help="share of kills aimed at start-up")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kill-campaign-"))
    runs = work / "runs"
    env = dict(os.environ, CIFAR_TUI_CACHE_DIR=str(work / "cache"), OMP_NUM_THREADS="1")
    report = {"kills": 0, "kills_at_startup": 0, "kills_while_training": 0, "kills_during_checkpoint_write": 0, "runs": 0, "corrupt_checkpoints": 0, "torn_lines": 0, "lost_more_than_last_checkpoint": 0,
              "resumes_ok": 0, "problems": []}
    run: Path | None = None
    epochs = 3
    for i in range(args.kills):
        if run is None:
            cmd = cli(*TRAIN, "--epochs", str(epochs), "--runs-dir", str(runs))
        else:
            done, _ = check(run, report)
            epochs = max(epochs, done + 3)
            cmd = cli("--no-ui", "train", "--resume", str(run), "--epochs", str(epochs))
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        report["runs"] += 1
        t0 = time.time()
        early = rng.random() < args.early_fraction and run is not None
        if early:  # some kills land during start-up (import, data loading, lock)
            wait = rng.uniform(0.2, args.min_wait)
        else:
            # the others land while training: after this process has written its RunStarted line
            # (the first round also waits for the first checkpoint, so later rounds can resume)
            n_started = _count(runs, '"RunStarted"')
            while proc.poll() is None and time.time() - t0 < 300:
                if _count(runs, '"RunStarted"') > n_started and (run is not None or _has_last(runs)):
                    break
                time.sleep(0.02)
            wait = (time.time() - t0) + rng.uniform(0, args.max_wait)
        try:
            proc.wait(timeout=max(0.0, wait - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            report["kills"] += 1
            report["kills_at_startup" if early else "kills_while_training"] += 1
            if runs.exists() and any(p.name.startswith(".") and ".tmp-" in p.name
                                     for d in runs.iterdir() for p in (d / "checkpoints").glob(".*")):
                report["kills_during_checkpoint_write"] += 1
        out = proc.stdout.read() if proc.stdout else ""
        if proc.returncode not in (0, -signal.SIGKILL):
            report["problems"].append(f"round {i}: exit {proc.returncode}: {out.strip().splitlines()[-1:]}")
        if run is None:
            found = [d for d in runs.iterdir()] if runs.exists() else []
            run = found[0] if found else None
        if run is None:
            continue
        before = check(run, report)
        # the next start must continue exactly from last.pt
        if (run / "checkpoints" / "last.pt").exists():
            report["resumes_ok"] += 1
        print(f"round {i + 1}: {'killed' if proc.returncode == -signal.SIGKILL else 'ended'} after {wait:.1f}s "
              f"({'start-up' if early else 'training'}); last.pt at epoch {before[0]} step {before[1]}", flush=True)
    # one last resume, to completion
    if run is not None and not (run / "checkpoints" / "last.pt").exists():
        report["problems"].append("no last.pt at the end of the campaign")
    elif run is not None:
        done, step = check(run, report)
        r = subprocess.run(cli("--no-ui", "train", "--resume", str(run), "--epochs", str(max(epochs, done + 1))),
                           cwd=ROOT, env=env, capture_output=True, text=True)
        report["final_exit"] = r.returncode
        if r.returncode != 0:
            report["problems"].append("final resume failed: " + (r.stdout + r.stderr).strip().splitlines()[-1])
        events, bad = read_metrics(run / "metrics.jsonl")
        resumed = [e for e in events if e["event"] == "RunStarted" and e.get("resumed_from")]
        starts = [e["start_epoch"] for e in resumed]
        report["final_epoch"] = int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])
        report["resumed_starts"] = starts
        report["run_dir"] = str(run)
    report["ok"] = (not report["problems"] and report["corrupt_checkpoints"] == 0
                    and report["lost_more_than_last_checkpoint"] == 0)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
