"""Two CPU processes with gloo, as torchrun would start them (RANK, WORLD_SIZE, ...)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.rundir import read_metrics

WORKER = Path(__file__).with_name("dist_worker.py")
ROOT = Path(__file__).resolve().parents[2]
CONFIG = dict(data="synthetic", width=0.125, subset=300, val_size=100, batch_size=64, log_every=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, out: Path, **args) -> list[dict]:
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", CIFAR_TUI_DIST_TIMEOUT="120")
        if world == 1:
            for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                env.pop(k)
        payload = json.dumps({**args, "out": str(out / f"rank{rank}")})
        procs.append(subprocess.Popen([sys.executable, str(WORKER), payload], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for rank, p in enumerate(procs):
        output, _ = p.communicate(timeout=240)
        assert p.returncode == 0, f"rank {rank} failed:\n{output}"
        results.append(json.loads((out / f"rank{rank}.json").read_text()))
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A 2-epoch run trained by two processes, once for this module: the folder holding its
    runs folder and each rank's output (``a``), and each rank's result. Do not change it."""
    root = tmp_path_factory.mktemp("two-ranks")
    return root, launch(2, root / "a", config={**CONFIG, "epochs": 2, "runs_dir": str(root / "runs")})


def test_two_processes_train_as_one(two_ranks):
    root, res = two_ranks
    runs = root / "runs"
    # the weights are identical on both ranks
    w0, w1 = torch.load(root / "a" / "rank0.pt"), torch.load(root / "a" / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # rank 0 alone wrote the run folder and reported
    assert res[1]["run_dir"] is None and res[1]["events"] == []
    (run,) = list(runs.iterdir())
    assert res[0]["run_dir"] == str(run)
    events, bad = read_metrics(run / "metrics.jsonl")
    assert bad == 0
    started = next(e for e in events if e["event"] == "RunStarted")
    assert started["train_size"] == 300 and started["steps_per_epoch"] == 5 and started["device"] == "cpu x2"
    # every image once per epoch: the reported images of the epoch's last StepDone sum both ranks
    # (the reduced validation metrics equal a single-process evaluation of the final weights)
    from engine.data import make_synthetic, split_indices
    from engine.evaluate import evaluate
    from engine.model import SEResNet

    data = make_synthetic()
    _, val_idx, _ = split_indices(data.train.y, 100, 300, 0)
    model = SEResNet(width=0.125)
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    r = evaluate(model, data.train.x[val_idx], data.train.y[val_idx], 10, torch.device("cpu"))
    last_epoch = [e for e in events if e["event"] == "EpochDone"][-1]
    assert last_epoch["val_acc"] == pytest.approx(r.accuracy, abs=1e-6)
    assert last_epoch["val_loss"] == pytest.approx(r.loss, rel=1e-4)
    assert torch.equal(model.state_dict()["head.weight"], w0["head.weight"])


def test_resume_across_world_sizes(two_ranks, tmp_path):
    import shutil

    (trained,) = list((two_ranks[0] / "runs").iterdir())  # 2 epochs by 2 processes
    run = Path(shutil.copytree(trained, tmp_path / "runs" / trained.name))
    last = run / "checkpoints" / "last.pt"
    # 2 processes -> 1
    res = launch(1, tmp_path / "b", resume=str(last), overrides={"epochs": 3})
    assert res[0]["state"] == "completed" and load_checkpoint(last)["epoch"] == 3
    # 1 process -> 2
    res = launch(2, tmp_path / "c", resume=str(last), overrides={"epochs": 4})
    assert load_checkpoint(last)["epoch"] == 4
    epochs = [e["epoch"] for e in read_metrics(run / "metrics.jsonl")[0] if e["event"] == "EpochDone"]
    assert epochs == [1, 2, 3, 4]


def test_torchrun_end_to_end(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "tui_trainer",
           "--no-ui", "train", "--data", "synthetic", "--preset", "tiny", "--width", "0.125", "--subset", "256",
           "--val-size", "64", "--batch-size", "64", "--epochs", "1", "--runs-dir", str(runs)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CIFAR_TUI_DIST_TIMEOUT="120")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(runs.iterdir())
    assert (run / "checkpoints" / "last.pt").is_file()
    assert r.stdout.count("run folder:      ") == 1  # only rank 0 reports


def test_the_dashboard_refuses_torchrun(monkeypatch):
    from typer.testing import CliRunner

    from tui_trainer.cli import app

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = CliRunner().invoke(app, ["train", "--data", "synthetic"])
    assert r.exit_code == 2 and "--no-ui" in r.output and "watch" in r.output
