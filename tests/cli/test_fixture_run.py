"""A run folder written by the format of December 2026 (tests/fixtures/runs, made by that day's
code: synthetic data, width 0.03, 2 epochs) still lists, evaluates, exports and resumes."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tui_trainer.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs-2026-12"
RUN_ID = "20261206-202658-tiny"
runner = CliRunner()


@pytest.fixture
def runs(tmp_path):
    """A private copy of the fixture's runs folder (resuming writes into it)."""
    dst = tmp_path / "runs"
    shutil.copytree(FIXTURE, dst)
    return dst


def ok(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_an_old_run_folder_lists(runs):
    (run,) = json.loads(ok("runs", runs, "--json").stdout)
    assert run["run_id"] == RUN_ID and run["status"] == "completed"
    assert run["epochs_done"] == run["epochs"] == 2
    assert {c["name"] for c in run["checkpoints"]} == {"last.pt", "best.pt"}


def test_an_old_run_folder_evaluates(runs):
    result = json.loads(ok("eval", runs / RUN_ID, "--json", "--device", "cpu").stdout)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["images"] > 0


def test_an_old_run_folder_exports(runs):
    rows = list(csv.reader(io.StringIO(ok("export", runs / RUN_ID, "--csv", "-").stdout)))
    assert rows[0][:3] == ["epoch", "train_loss", "train_acc"] and [r[0] for r in rows[1:]] == ["1", "2"]


def test_an_old_run_folder_resumes(runs):
    ok("--no-ui", "train", "--resume", runs / RUN_ID, "--epochs", "3", "--device", "cpu")
    (run,) = json.loads(ok("runs", runs, "--json").stdout)
    assert run["status"] == "completed" and run["epochs_done"] == 3
    rows = list(csv.reader(io.StringIO(ok("export", runs / RUN_ID, "--csv", "-").stdout)))
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]


# ---------------------------------------------------------------- one resolver for every command
# eval, predict, train --resume, export, watch and ctl accept the same forms (a run folder, a
# run id in --runs-dir, a checkpoint path) and say the same line, with the same code, for an id
# that names nothing.


def _predict_input(tmp_path):
    import pickle

    import numpy as np

    path = tmp_path / "images.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3072), dtype=np.uint8)}, fh)
    return path


def _command(name, tmp_path, runs, monkeypatch, target):
    """The argument list of command ``name`` given ``target`` as its RUN / CHECKPOINT."""
    if name == "watch":  # the dashboard itself is tested elsewhere: record what it was given
        import tui_trainer.app

        monkeypatch.setattr(tui_trainer.app, "run_watch_app", lambda path: print(f"watching {path}") or 0)
    return {
        "eval": ["eval", target, "--json", "--device", "cpu", "--runs-dir", runs],
        "predict": ["predict", target, _predict_input(tmp_path), "--device", "cpu", "--runs-dir", runs],
        "train --resume": ["--no-ui", "train", "--resume", target, "--epochs", "3", "--device", "cpu",
                           "--runs-dir", runs],
        "export": ["export", target, "--csv", "-", "--runs-dir", runs],
        "watch": ["watch", target, "--runs-dir", runs],
        "ctl": ["ctl", target, "pause", "--runs-dir", runs],
    }[name]


COMMANDS = ("eval", "predict", "train --resume", "export", "watch", "ctl")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_a_run_id(name, runs, tmp_path, monkeypatch):
    # (a run folder and a checkpoint path: each command's own tests, and ctl/watch/export below)
    monkeypatch.chdir(tmp_path)  # a run id is looked up in --runs-dir, not in the working folder
    r = runner.invoke(app, [str(a) for a in _command(name, tmp_path, runs, monkeypatch, RUN_ID)])
    if name == "ctl":  # the fixture's run is finished: ctl found it and says it is not training
        assert r.exit_code == 1 and f"{RUN_ID} is not training: it is completed" in r.output, r.output
        return
    assert r.exit_code == 0, r.output
    if name == "watch":
        assert f"watching {runs / RUN_ID}" in r.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_says_the_same_line_for_an_unknown_run_id(name, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, [str(a) for a in _command(name, tmp_path, runs, monkeypatch, "no-such-run")])
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no-such-run: no such run folder or checkpoint, and no run with that id in {runs}; "
                      "list runs with: cifar-tui runs"], r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("name", ("export", "watch", "ctl"))
def test_run_commands_take_a_checkpoint_of_the_run(name, runs, tmp_path, monkeypatch):
    checkpoint = runs / RUN_ID / "checkpoints" / "best.pt"
    r = runner.invoke(app, [str(a) for a in _command(name, tmp_path, runs, monkeypatch, checkpoint)])
    assert r.exit_code == (1 if name == "ctl" else 0), r.output
    assert (r.stdout.count("\n") == 3) if name == "export" else (RUN_ID in r.output)
