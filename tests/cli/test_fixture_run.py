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
