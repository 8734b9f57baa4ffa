"""Faults injected on purpose: kill -9, signals, a second writer, torn metrics, bad settings."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.checkpoint import load_checkpoint
from engine.rundir import read_metrics
from tui_trainer.cli import app

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--no-ui", "train", "--data", "synthetic", "--preset", "tiny", "--width", "0.125", "--subset", "384",
         "--val-size", "64", "--batch-size", "64"]


def env_for(tmp_path):
    return dict(os.environ, CIFAR_TUI_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")


def test_small_kill_campaign(tmp_path):
    """One round of each scenario: headless training, the dashboard in a pseudo-terminal,
    eval storing its result, predict writing a CSV (the 1000-kill campaign is run by hand)."""
    r = subprocess.run([sys.executable, "scripts/kill_campaign.py", "--kills", "4", "--max-rounds", "4", "--order", "cycle",
                        "--mix", "train=1,dashboard=1,eval=1,predict=1", "--min-wait", "2.5", "--early-fraction", "0.3",
                        "--max-wait", "2", "--max-wait-inference", "3", "--workdir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=400)
    assert r.stdout.strip(), r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and report["ok"], r.stdout + r.stderr
    assert [s["rounds"] for s in report["by_scenario"].values()] == [1, 1, 1, 1]
    assert report["kills"] >= 2 and report["corrupt_files"] == 0 and report["final_exit"] == 0


def _wait_for_step(metrics: Path, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and '"StepDone"' in metrics.read_text():
            return
        time.sleep(0.1)
    raise AssertionError("training never started")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_gracefully_and_saves(tmp_path, sig, code):
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-m", "tui_trainer", *TRAIN, "--epochs", "200", "--runs-dir", str(runs)],
                         cwd=ROOT, env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (runs.exists() and any(runs.iterdir())):
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.1)
    (run,) = list(runs.iterdir())
    _wait_for_step(run / "metrics.jsonl")
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == code, out
    assert "stopping" in out and f"saved in {run / 'checkpoints' / 'last.pt'}" in out and "--resume" in out
    assert "Traceback" not in out
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["global_step"] > 0
    assert not (run / ".lock").exists()  # the lock is released


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A run of ``TRAIN`` that finished its one epoch, trained once for the tests that resume
    it; each works on its own copy (``one_epoch_copy``)."""
    runs = tmp_path_factory.mktemp("one-epoch")
    r = CliRunner().invoke(app, [*TRAIN, "--epochs", "1", "--runs-dir", str(runs)])
    assert r.exit_code == 0, r.output
    (run,) = list(runs.iterdir())
    return run


@pytest.fixture
def one_epoch_copy(one_epoch, tmp_path):
    import shutil

    return Path(shutil.copytree(one_epoch, tmp_path / "runs" / one_epoch.name))


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(one_epoch_copy):
    runner = CliRunner()
    run = one_epoch_copy
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "since": "now"}))
        before = (run / "checkpoints" / "last.pt").read_bytes()
        r = runner.invoke(app, ["--no-ui", "train", "--resume", str(run), "--epochs", "2"])
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert f"in use by process {sleeper.pid}" in r.output
        assert (run / "checkpoints" / "last.pt").read_bytes() == before  # nothing touched
    finally:
        sleeper.kill()
        sleeper.wait()
    r = runner.invoke(app, ["--no-ui", "train", "--resume", str(run), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "removed a stale lock" in r.output


def test_a_torn_metrics_line_is_skipped_and_not_glued_to_the_next(one_epoch_copy):
    runner = CliRunner()
    run = one_epoch_copy
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"event":"StepDone","epo')  # a writer killed mid-line
    events_before, _ = read_metrics(run / "metrics.jsonl")
    r = runner.invoke(app, ["--no-ui", "train", "--resume", str(run), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    events, bad = read_metrics(run / "metrics.jsonl")
    assert bad == 1
    assert [e["epoch"] for e in events if e["event"] == "EpochDone"] == [1, 2]
    assert len(events) > len(events_before)


def test_leftover_temporary_files_are_cleaned(one_epoch_copy):
    runner = CliRunner()
    run = one_epoch_copy
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    junk = run / "checkpoints" / f".last.pt.tmp-{dead.pid}"
    junk.write_bytes(b"half")
    r = runner.invoke(app, ["--no-ui", "train", "--resume", str(run), "--epochs", "2"])
    assert r.exit_code == 0 and not junk.exists() and "half-written" in r.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--data", "synthetic", "--val-size", "20000"], "--val-size"),
        (["--data", "synthetic", "--epochs", "-1"], "--epochs"),
    ],
)
def test_impossible_splits_and_settings(tmp_path, args, fragment):
    r = CliRunner().invoke(app, ["--no-ui", "train", "--preset", "tiny", *args, "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code in (1, 2) and fragment in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(app, [*TRAIN, "--epochs", "1", "--runs-dir", str(tmp_path / "file")])
    assert r.exit_code == 1 and "is a file" in r.output and "Traceback" not in r.output
    assert (tmp_path / "file").read_text() == "x"


def test_nan_loss_exits_1_with_advice_that_can_be_followed(tmp_path, monkeypatch):
    import engine.trainer as tr

    real = tr.F.cross_entropy
    monkeypatch.setattr(tr.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    r = CliRunner().invoke(app, [*TRAIN, "--epochs", "2", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "error:" in r.output and "NaN" in r.output
    # nothing was saved: resuming is impossible, so the advice is a new run
    assert "nothing was saved yet; start a new run with a lower --lr" in r.output


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: room for one small checkpoint, not for the temporary file of the next."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_keeps_the_previous_checkpoint(tiny_disk):
    r = CliRunner().invoke(app, [*TRAIN, "--epochs", "3", "--save-every-epochs", "1", "--runs-dir", str(tiny_disk)])
    (run,) = list(tiny_disk.iterdir())
    last = run / "checkpoints" / "last.pt"
    assert "No space left on device" in r.output and "the previous checkpoint is intact" in r.output
    assert r.exit_code == 1 and "last checkpoint was not written" in r.output and "Traceback" not in r.output
    ck = load_checkpoint(last)  # still the complete epoch-1 checkpoint
    assert ck["epoch"] == 1
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
