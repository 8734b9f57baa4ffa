"""Fault-injection campaign: kill -9 cifar-tui at random moments, then check that nothing
is lost and that no file is left half-written under its real name.

Rounds run until ``--kills`` kills are made. Each round runs one command in a
subprocess and sends it SIGKILL:

- ``train``: ``cifar-tui --no-ui train`` (the first round a new run, the others
  ``--resume`` of the same run with a few more epochs);
- ``dashboard``: ``cifar-tui train --resume ...`` with the Textual dashboard, in a
  pseudo-terminal (the app draws, the trainer runs in its thread);
- ``eval``: ``cifar-tui eval RUN``, which stores ``checkpoints/best.eval.json``;
- ``predict``: ``cifar-tui predict RUN images.pkl --output predictions.csv``,
  replacing the previous round's CSV.

Most kills land at a random moment (start-up, training, evaluating); a share of
them (``--aim``) waits until a temporary file of the command's write appears (a
checkpoint, the stored evaluation, the CSV) and kills within the next moments.
After every round it checks:

- every checkpoint loads with weights_only=True; ``metrics.jsonl`` is readable (at
  most one torn line per kill);
- a checkpoint the run announced as saved is on disk: no work is lost beyond the
  last checkpoint, and the next ``--resume`` starts from it;
- ``best.eval.json`` is absent or complete; ``predictions.csv`` is absent, the
  previous complete CSV, or the new complete one, never a partial file.

A kill "inside a write" is one after which a temporary file of the killed process
(``.NAME.tmp-PID``) is found. At the end one last resume runs to completion. Prints
one JSON line (the report) last.

    python scripts/kill_campaign.py --kills 20                   # small, train only
    python scripts/kill_campaign.py --width 1.0 --kills 1000 \\
        --mix train=3,dashboard=2,eval=2.5,predict=2.5 --aim 0.3  # docs/reliability.md
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import os
import pickle
import pty
import random
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from engine.files import TEMP_MARK, atomic_write_json  # noqa: E402
from engine.safeio import read_json_dict  # noqa: E402
from engine.rundir import RunDir, read_metrics  # noqa: E402
from engine.runs import complete_result  # noqa: E402

SCENARIOS = ("train", "dashboard", "eval", "predict")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PREDICT_IMAGES = 256


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui_trainer", *map(str, args)]


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in SCENARIOS:
            raise SystemExit(f"--mix: unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        mix[name.strip()] = float(weight or 1)
    return mix


def make_data(folder: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """A small cifar-10-batches-py folder (with a test split for eval) and a pickle of
    unlabelled images for predict."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("data_batch_1", n_train), ("test_batch", n_test)):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(n)]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": CLASSES}, fh)
    images = folder.parent / "unlabelled.pkl"
    with open(images, "wb") as fh:
        pickle.dump({b"data": rng.integers(0, 256, (PREDICT_IMAGES, 3072), dtype=np.uint8)}, fh)
    return folder, images


def temp_files_of(folder: Path, pid: int) -> list[Path]:
    """Temporary files (``.NAME.tmp-PID``) that process ``pid`` left in ``folder``."""
    try:
        return [p for p in folder.glob(f".*{TEMP_MARK}{pid}")]
    except OSError:
        return []


class PtyDrain:
    """A pseudo-terminal for a full-screen app, its output read and dropped (a full pty
    buffer would block the app)."""

    def __init__(self, rows: int = 30, cols: int = 100):
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.thread = threading.Thread(target=self._drain, daemon=True)

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self.master, 65536):
                    return
            except OSError:
                return

    def start(self) -> None:
        os.close(self.slave)
        self.thread.start()

    def close(self) -> None:
        try:
            os.close(self.master)
        except OSError:
            pass
        self.thread.join(2)


class Campaign:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="kill-campaign-"))
        self.runs = self.work / "runs"
        self.data, self.images = make_data(self.work / "data" / "cifar-10-batches-py", args.train_images + args.val_size,
                                           args.test_images)
        self.csv = self.work / "out" / "predictions.csv"
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, CIFAR_TUI_CACHE_DIR=str(self.work / "cache"), OMP_NUM_THREADS="1",
                        TERM="xterm-256color", PYTHONPATH=str(ROOT))
        self.log = self.work / "round.log"
        self.run: Optional[Path] = None
        self.epochs = 3
        self.done = 0  # epochs in last.pt at the last check
        self._bad: set = set()  # damaged files already counted
        self.report: dict = {
            "kills": 0, "rounds": 0, "ended_by_itself": 0, "kills_inside_a_write": 0, "aimed_kills": 0,
            "kills_during_checkpoint_write": 0, "corrupt_checkpoints": 0, "corrupt_files": 0, "partial_outputs": 0,
            "torn_lines": 0, "lost_more_than_last_checkpoint": 0,
            "by_scenario": {s: {"rounds": 0, "kills": 0, "inside_a_write": 0, "aimed": 0, "corrupt": 0}
                            for s in SCENARIOS},
            "problems": [], "width": args.width,
        }

    # ------------------------------------------------------------------ commands
    def train_args(self) -> list[str]:
        a = self.args
        return ["--data", str(self.data), "--preset", "tiny", "--width", str(a.width), "--val-size", str(a.val_size),
                "--batch-size", str(a.batch_size), "--runs-dir", str(self.runs)]

    def command(self, scenario: str) -> tuple[list[str], list[Path]]:
        """The command of a round, and the folders its writes go to."""
        if self.run is None:
            return cli("--no-ui", "train", *self.train_args(), "--epochs", self.epochs), []
        ck = self.run / "checkpoints"
        if scenario in ("train", "dashboard"):
            self.epochs = max(self.epochs, self.done + 3)
            ui = ["--no-ui"] if scenario == "train" else []
            return cli(*ui, "train", "--resume", self.run, "--epochs", self.epochs), [ck, self.run]  # aim: ck
        if scenario == "eval":
            return cli("eval", self.run, "--batch-size", "64"), [ck]
        return cli("predict", self.run, self.images, "--output", self.csv, "--batch-size", "64"), [self.csv.parent]

    # -------------------------------------------------------------------- rounds
    def round(self, i: int, scenario: str) -> None:
        if self.run is None:
            scenario = "train"  # the first round makes the run (and is killed only once last.pt exists)
        cmd, folders = self.command(scenario)
        before_csv = self.csv.read_bytes() if scenario == "predict" and self.csv.exists() else None
        tty = PtyDrain() if scenario == "dashboard" else None
        with open(self.log, "w") as log:
            out = (tty.slave if tty else log)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdin=tty.slave if tty else subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True)
        if tty:
            tty.start()
        aimed = self.run is not None and self.rng.random() < self.args.aim
        try:
            how = self._wait_and_kill(proc, scenario, folders, aimed)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if tty:
                tty.close()
        self._tally(i, scenario, proc, folders, aimed, how)
        if self.run is None and self.runs.exists():
            found = sorted(d for d in self.runs.iterdir() if d.is_dir())
            self.run = found[0] if found else None
        self._check_outputs(scenario, before_csv)

    def _wait_and_kill(self, proc: subprocess.Popen, scenario: str, folders: list[Path], aimed: bool) -> str:
        t0 = time.monotonic()
        if aimed:  # wait for a write of this process to be under way
            while proc.poll() is None and time.monotonic() - t0 < self.args.round_limit:
                if temp_files_of(folders[0], proc.pid):  # a checkpoint, the stored evaluation, the CSV
                    if scenario in ("train", "dashboard"):  # a checkpoint write lasts a while: land anywhere in it
                        time.sleep(self.rng.uniform(0, self.args.aim_delay))
                    break
                time.sleep(0.002)
            return self._kill(proc, "write")
        if scenario in ("train", "dashboard") and (self.run is None or self.rng.random() >= self.args.early_fraction):
            # after this process's RunStarted line (the first round: after the first checkpoint)
            n_started = self._count_started()
            while proc.poll() is None and time.monotonic() - t0 < self.args.round_limit:
                if (self._count_started() > n_started) if self.run is not None else self._has_last():
                    break
                time.sleep(0.02)
            wait = self.rng.uniform(0, self.args.max_wait)
            where = "training"
        else:
            wait = self.rng.uniform(0.2, self.args.min_wait if scenario in ("train", "dashboard") else
                                    self.args.max_wait_inference)
            where = "start-up" if scenario in ("train", "dashboard") else "running"
        try:
            proc.wait(timeout=wait)
            return "ended"
        except subprocess.TimeoutExpired:
            return self._kill(proc, where)

    @staticmethod
    def _kill(proc: subprocess.Popen, where: str) -> str:
        if proc.poll() is not None:
            return "ended"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return where

    def _count_started(self) -> int:
        run = self.run
        if run is None:
            return sum(_count(d / "metrics.jsonl", '"RunStarted"') for d in self.runs.glob("*"))
        return _count(run / "metrics.jsonl", '"RunStarted"')

    def _has_last(self) -> bool:
        return self.runs.exists() and any((d / "checkpoints" / "last.pt").exists() for d in self.runs.iterdir())

    def _tally(self, i: int, scenario: str, proc: subprocess.Popen, folders: list[Path], aimed: bool, how: str) -> None:
        r, s = self.report, self.report["by_scenario"][scenario]
        r["rounds"] += 1
        s["rounds"] += 1
        killed = proc.returncode == -signal.SIGKILL
        if not killed:
            r["ended_by_itself"] += 1
            if proc.returncode != 0:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if scenario != "dashboard" else []
                r["problems"].append(f"round {i}: {scenario} exited {proc.returncode}: {tail}")
        else:
            r["kills"] += 1
            s["kills"] += 1
            if aimed:
                r["aimed_kills"] += 1
                s["aimed"] += 1
            if not folders and self.runs.exists():  # the first round: its run folder is new
                folders = [f for d in self.runs.iterdir() for f in (d / "checkpoints", d)]
            temps = [p for f in folders for p in temp_files_of(f, proc.pid)]
            if temps:
                r["kills_inside_a_write"] += 1
                s["inside_a_write"] += 1
                if any(p.name.startswith((".last.pt", ".best.pt")) for p in temps):
                    r["kills_during_checkpoint_write"] += 1
        print(f"round {i + 1}: {scenario} {'killed (' + how + ')' if killed else 'ended'} after "
              f"{'aim' if aimed else 'random wait'}", flush=True)

    # -------------------------------------------------------------------- checks
    def check(self) -> tuple[int, int]:
        """Check the run folder; returns (epoch, step_in_epoch) of last.pt."""
        r, run = self.report, self.run
        if run is None:
            return 0, 0
        ckdir = run / "checkpoints"
        for p in ckdir.glob("*.pt"):
            try:
                load_checkpoint(p)
            except CheckpointError as e:
                key = (p.name, p.stat().st_size, p.stat().st_mtime_ns)
                if key not in self._bad:  # counted once, not at every later check
                    self._bad.add(key)
                    r["corrupt_checkpoints"] += 1
                    r["corrupt_files"] += 1
                    r["problems"].append(f"{p.name}: {e}")
        events, bad = read_metrics(run / "metrics.jsonl")
        r["torn_lines"] = bad
        if bad > r["kills"]:
            r["problems"].append(f"metrics.jsonl has {bad} unreadable lines after {r['kills']} kills")
        announced = [e["epoch"] for e in events if e["event"] == "CheckpointSaved" and e.get("kind") == "last"]
        last = ckdir / "last.pt"
        if not last.exists():
            if announced:
                r["lost_more_than_last_checkpoint"] += 1
                r["problems"].append("last.pt is gone although a save was announced")
            return 0, 0
        ck = load_checkpoint(last)
        if announced and int(ck["epoch"]) < max(announced):
            r["lost_more_than_last_checkpoint"] += 1
            r["problems"].append(f"last.pt is at epoch {ck['epoch']} but epoch {max(announced)} was announced saved")
        self.done = int(ck["epoch"])
        return self.done, int(ck.get("step_in_epoch", 0))

    def _check_outputs(self, scenario: str, before_csv: Optional[bytes]) -> None:
        r = self.report
        if scenario in ("train", "dashboard"):
            self.check()
        elif scenario == "eval" and self.run is not None:
            stored = RunDir.eval_path(RunDir(self.run).best_checkpoint)
            if stored.exists():
                data = read_json_dict(stored)
                if not data or not all(complete_result(v) for v in data.values()):
                    self._corrupt(scenario, f"{stored.name} is incomplete or unreadable")
        elif scenario == "predict" and self.csv.exists():
            raw = self.csv.read_bytes()
            if raw != before_csv and not _complete_csv(raw):
                r["partial_outputs"] += 1
                self._corrupt(scenario, f"{self.csv.name} is partial ({len(raw)} bytes)")

    def _corrupt(self, scenario: str, what: str) -> None:
        self.report["corrupt_files"] += 1
        self.report["by_scenario"][scenario]["corrupt"] += 1
        self.report["problems"].append(what)

    # --------------------------------------------------------------------- final
    def final(self) -> None:
        r, run = self.report, self.run
        if run is None or not (run / "checkpoints" / "last.pt").exists():
            r["problems"].append("no last.pt at the end of the campaign")
            return
        done, _ = self.check()
        res = subprocess.run(cli("--no-ui", "train", "--resume", run, "--epochs", max(self.epochs, done + 1)),
                             cwd=ROOT, env=self.env, capture_output=True, text=True)
        r["final_exit"] = res.returncode
        if res.returncode != 0:
            r["problems"].append("final resume failed: " + (res.stdout + res.stderr).strip().splitlines()[-1])
        events, _ = read_metrics(run / "metrics.jsonl")
        r["resumed_starts"] = [e["start_epoch"] for e in events if e["event"] == "RunStarted" and e.get("resumed_from")]
        r["final_epoch"] = int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])
        r["checkpoint_bytes"] = (run / "checkpoints" / "last.pt").stat().st_size
        r["run_dir"] = str(run)
        # leftovers of killed writers: the next write of the same file removes them (a resumed
        # run: all of its folder's); what is left here waits for such a write
        r["temp_files_left"] = sorted(p.name for f in (run, run / "checkpoints", self.csv.parent)
                                      for p in f.glob(f".*{TEMP_MARK}*"))


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _complete_csv(raw: bytes) -> bool:
    """A predictions CSV with its header and one row per input image, nothing cut."""
    rows = list(csv.reader(raw.decode("utf-8", errors="replace").splitlines()))
    if not rows or rows[0][:2] != ["ID", "Labels"] or len(rows) != PREDICT_IMAGES + 1 or not raw.endswith(b"\n"):
        return False
    return all(len(row) >= 2 and row[0] == str(i) and row[1].isdigit() for i, row in enumerate(rows[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="kills to make (a round whose command ends first is not one)")
    ap.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds (default: twice --kills)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", default="train=1", help="scenario weights, e.g. train=3,dashboard=2,eval=2.5,predict=2.5")
    ap.add_argument("--order", choices=("random", "cycle"), default="random",
                    help="pick each round's scenario at random by weight, or take them in turn")
    ap.add_argument("--width", type=float, default=0.125, help="network width (1.0: the report's 4,993,166 parameters)")
    ap.add_argument("--train-images", type=int, default=384)
    ap.add_argument("--val-size", type=int, default=64)
    ap.add_argument("--test-images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--min-wait", type=float, default=3.0, help="latest moment of a start-up kill (seconds)")
    ap.add_argument("--max-wait", type=float, default=4.0, help="longest time a round trains before its kill (seconds)")
    ap.add_argument("--max-wait-inference", type=float, default=8.0, help="latest kill of an eval or predict round")
    ap.add_argument("--early-fraction", type=float, default=0.2, help="share of training kills aimed at start-up")
    ap.add_argument("--aim", type=float, default=0.0, help="share of kills aimed inside a write")
    ap.add_argument("--aim-delay", type=float, default=0.3, help="an aimed kill lands up to this long after the write began")
    ap.add_argument("--round-limit", type=float, default=600.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--minutes", type=float, default=None,
                    help="start no round after this many minutes (then the final resume and the report)")
    ap.add_argument("--report", default=None, help="also write the report so far to this JSON file after each round")
    args = ap.parse_args()
    mix = parse_mix(args.mix)
    c = Campaign(args)
    names, weights = list(mix), list(mix.values())
    pick = random.Random(args.seed)  # its own generator: the scenarios do not depend on timings
    t0 = time.time()
    max_rounds = args.max_rounds if args.max_rounds is not None else 2 * args.kills
    i = 0
    deadline = t0 + 60 * args.minutes if args.minutes is not None else float("inf")
    while c.report["kills"] < args.kills and i < max_rounds and time.time() < deadline:
        c.round(i, names[i % len(names)] if args.order == "cycle" else pick.choices(names, weights)[0])
        i += 1
        if args.report:
            atomic_write_json(Path(args.report), {**c.report, "rounds": i, "seconds": round(time.time() - t0)})
    c.final()
    r = c.report
    r["seconds"] = round(time.time() - t0)
    r["ok"] = not r["problems"] and r["corrupt_files"] == 0 and r["lost_more_than_last_checkpoint"] == 0
    if args.report:
        atomic_write_json(Path(args.report), r)
    print(json.dumps(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
