"""`cifar-tui runs` (table and --json, without torch) and what a killed run looks like."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tui_trainer.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def runs_json(root) -> list:
    r = runner.invoke(app, ["runs", str(root), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_runs_json_fields(finished_run):
    (run,) = runs_json(finished_run.parent)
    for key in ("run_id", "path", "status", "preset", "data", "epochs_done", "epochs", "best_val_acc", "checkpoints"):
        assert key in run, key
    assert run["run_id"] == finished_run.name and run["status"] == "completed"
    assert run["epochs_done"] == run["epochs"] == 2 and run["preset"] == "tiny" and run["data"] == "synthetic"
    names = {c["name"]: c for c in run["checkpoints"]}
    assert {"last.pt", "best.pt", "epoch-001.pt", "epoch-002.pt"} <= set(names)
    for c in names.values():
        assert {"name", "epoch", "global_step", "val_acc", "test_acc"} <= set(c)
    assert names["last.pt"]["epoch"] == 2 and names["last.pt"]["global_step"] > 0
    assert names["best.pt"]["val_acc"] == run["best_val_acc"]
    # the network: its trainable parameters and its shape (the report's, at the run's width)
    assert run["shape"]["blocks"] == [4, 3, 2, 3] and run["shape"]["se"] == "stem"
    from engine.shape import NetShape

    assert run["params"] == NetShape.from_record(run["shape"]).params() > 0


def test_runs_json_gives_a_non_default_shape(tmp_path):
    from engine.config import make_config
    from engine.trainer import Trainer

    cfg = make_config("tiny", data="synthetic", width=0.125, blocks="1,1", channels="16,32", strides="1,2",
                      se="blocks", subset=64, val_size=32, epochs=1, batch_size=32, runs_dir=str(tmp_path / "runs"))
    assert Trainer(cfg).run() == "completed"
    (run,) = runs_json(tmp_path / "runs")
    assert run["shape"]["blocks"] == [1, 1] and run["shape"]["channels"] == [16, 32] and run["shape"]["se"] == "blocks"
    assert run["params"] == _params_of(run["shape"])


def _params_of(record):
    from engine.shape import NetShape

    return NetShape.from_record(record).params()


def test_runs_takes_the_folder_as_runs_dir_too(finished_run, tmp_path):
    r = runner.invoke(app, ["runs", "--runs-dir", str(finished_run.parent), "--json"])
    assert r.exit_code == 0, r.output
    assert [run["run_id"] for run in json.loads(r.output)] == [finished_run.name]
    r = runner.invoke(app, ["runs", str(tmp_path), "--runs-dir", str(finished_run.parent)])
    assert r.exit_code == 2 and "two runs folders" in r.output


def test_runs_json_test_acc_is_null_when_stale(run_copy):
    from engine.evaluate import evaluate_checkpoint
    from engine.rundir import RunDir

    evaluate_checkpoint(str(RunDir(run_copy).last_checkpoint))
    (run,) = runs_json(run_copy.parent)
    assert {c["name"]: c for c in run["checkpoints"]}["last.pt"]["test_acc"] is not None
    RunDir(run_copy).last_checkpoint.write_bytes(RunDir(run_copy).last_checkpoint.read_bytes() + b"\0")
    (run,) = runs_json(run_copy.parent)
    last = {c["name"]: c for c in run["checkpoints"]}["last.pt"]
    assert last["test_acc"] is None and last["test_stale"] is True
    table = runner.invoke(app, ["runs", str(run_copy.parent)])
    assert "stale" in table.output and run_copy.name in table.output and "completed" in table.output


def test_runs_works_without_torch(finished_run, tmp_path):
    """`cifar-tui runs` reads only small files: it must not import torch (checked in an
    environment where importing torch fails)."""
    fake = tmp_path / "no-torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    for args in (["runs", str(finished_run.parent)], ["runs", str(finished_run.parent), "--json"]):
        r = subprocess.run([sys.executable, "-m", "tui_trainer", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert finished_run.name in r.stdout and "completed" in r.stdout


def _wait_for(predicate, what, timeout=90.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_run_is_interrupted_everywhere_and_resumes(tmp_path):
    """kill -9 a real headless run: within seconds runs --json, the watch dashboard's state and
    the catalogue say interrupted; resuming it continues from its last checkpoint."""
    from engine import events as ev
    from engine.rundir import RunDir
    from tui_trainer.bridge import WatchSource
    from tui_trainer.runstate import RunState

    runs = tmp_path / "runs"
    env = dict(os.environ, CIFAR_TUI_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "tui_trainer", "--no-ui", "train", "--data", "synthetic", "--preset", "tiny",
                          "--width", "0.125", "--subset", "256", "--val-size", "64", "--batch-size", "64",
                          "--epochs", "500", "--runs-dir", str(runs)],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: runs.exists() and any(runs.iterdir()), "the run folder")
        (run,) = list(runs.iterdir())
        last = RunDir(run).last_checkpoint
        _wait_for(last.exists, "the first checkpoint")
        assert runs_json(runs)[0]["status"] == "running"
        watch = WatchSource(run)
        state = RunState()
        state.apply_all(watch.poll())
        assert watch.liveness() == "running" and state.state == "running"
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        t_dead = time.time()
        _wait_for(lambda: runs_json(runs)[0]["status"] == "interrupted", "interrupted in runs --json", timeout=5)
        watch._checked_at = None  # (no need to wait a second for the next look)
        assert watch.liveness() == "interrupted"
        state.apply_all(watch.poll())
        state.mark_interrupted()
        assert state.state == "interrupted" and state.ended_at is not None
        frozen = state.elapsed()
        time.sleep(0.2)
        assert state.elapsed() == frozen  # Elapsed stops
        assert time.time() - t_dead < 5
    finally:
        if p.poll() is None:
            p.kill()
    r = runner.invoke(app, ["--no-ui", "train", "--resume", str(run), "--epochs", str(_epochs_done(run) + 1)])
    assert r.exit_code == 0, r.output
    assert runs_json(runs)[0]["status"] == "completed"
    assert json.loads(RunDir(run).metrics_path.read_text().splitlines()[-1])["event"] == ev.RunFinished.__name__


def _epochs_done(run) -> int:
    from engine.rundir import RunDir

    return RunDir.read_summary(RunDir(run).last_checkpoint)["epoch"]


def _fake_runs(root: Path) -> list[str]:
    """Two runs with long ids, four checkpoints each (one manual, mid-epoch), a zip's path, a note."""
    ids = ["20261206-014701-paper-12", "20261206-014702-fast"]
    for name, data in zip(ids, ["/home/u/data/cifar10-jpeg-train.zip", "cifar10"]):
        d = root / name
        (d / "checkpoints").mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"created": name, "data": {"source": data},
                                                   "config": {"preset": "paper", "data": data, "epochs": 4}}))
        for ck, ep, sie in [("last", 4, 0), ("best", 3, 0), ("epoch-001", 1, 0), ("manual-e001-s0000012", 0, 12)]:
            (d / "checkpoints" / f"{ck}.pt").write_bytes(b"x" * 5000)
            (d / "checkpoints" / f"{ck}.json").write_text(json.dumps({"kind": ck.split("-")[0], "epoch": ep,
                                                                      "step_in_epoch": sie, "val_acc": 0.9123}))
    (root / ids[1] / "note.txt").write_text("baseline with the fast preset\n")
    return ids


def test_runs_fits_the_terminal_by_dropping_columns_never_cutting_a_run_id(tmp_path):
    from rich.console import Console

    from engine.runs import list_runs
    from tui_trainer.console import render_runs

    ids = _fake_runs(tmp_path)
    shown = {}
    for width in (80, 100, 160):
        console = Console(width=width, force_terminal=True, color_system=None, highlight=False, record=True)
        render_runs(console, list_runs(tmp_path), tmp_path)
        text = console.export_text()
        lines = text.splitlines()
        assert all(len(line.rstrip()) <= width for line in lines), text
        for run_id in ids:
            assert any(line.lstrip().startswith(run_id + " ") for line in lines), text  # whole, never cut
        header = next(line for line in lines if line.lstrip().startswith("run "))
        shown[width] = header.split()
        assert "in 1" in text and "0+" not in text  # a mid-epoch checkpoint: the epoch it was saved in
    assert shown[80] == ["run", "status", "checkpoint", "ep", "val"]  # the essential columns at 80
    assert shown[100] == ["run", "status", "checkpoint", "ep", "val", "size"]
    assert shown[160][-1] == "note"
    # piped (not a terminal): every column, whole paths, whatever the width
    r = runner.invoke(app, ["runs", str(tmp_path)])
    assert r.exit_code == 0 and "/home/u/data/cifar10-jpeg-train.zip" in r.output and "baseline with" in r.output
    assert [run["note"] for run in runs_json(tmp_path)] == ["baseline with the fast preset", ""]
