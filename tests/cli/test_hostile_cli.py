"""Hostile and broken inputs through the command line: each a one-line error with an exit
code, no traceback, nothing written and nothing of a run destroyed.

Data files (broken batches, image bombs, FIFOs, test-only sources, class mismatch)
are in tests/engine/test_hostile_data.py; settings in test_config_limits.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MARKUP_CLASSES, MARKUP_DIR, write_cifar_batches

from engine.rundir import RunDir
from tests.procs import error_line, invoke

ROOT = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes (to show nothing changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def record(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def save_record(ck: dict, path: Path) -> Path:
    torch.save({k: v for k, v in ck.items() if k != "path"}, path)
    return path


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    pkl = tmp_path / "unlabelled.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 3072), dtype=np.uint8)}, fh)
    return pkl


# ------------------------------------------------------------------ device names


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_refuse_an_unknown_device_first(command, finished_run, unlabelled):
    args = [command, finished_run, *([unlabelled] if command == "predict" else []), "--device", "nonsense"]
    assert "unknown --device 'nonsense'" in error_line(invoke(*args), 2)
    assert not RunDir.eval_path(RunDir(finished_run).best_checkpoint).exists()


# ------------------------------------------------------- malformed checkpoint records


def _set(path: tuple, value):
    def mutate(ck):
        d = ck
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return mutate


MALFORMED = [
    ("arch-not-a-dict", _set(("arch",), "SEResNet"), "'arch' record is not a mapping"),
    ("config-a-list", _set(("config",), ["lr", 0.1]), "'config' record is not a mapping"),
    ("width-100", _set(("arch", "width"), 100.0), "network width is 100.0"),
    ("width-a-string", _set(("arch", "width"), "wide"), "network width is 'wide'"),
    ("classes-1e9", _set(("arch", "num_classes"), 10**9), "declares 1000000000 classes"),
    ("classes-not-its-list", _set(("arch", "num_classes"), 5), "declares 5 classes but names 10"),
    ("class-names-not-names", _set(("classes",), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), "class names are not a list"),
    ("epoch-five", _set(("epoch",), "five"), "epoch is 'five', not a count"),
    ("negative-step", _set(("global_step",), -1), "global_step is -1, not a count"),
    ("version-a-string", _set(("version",), "1"), "unknown checkpoint format version '1'"),
]


@pytest.mark.parametrize("name, mutate, fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_checkpoint_records_are_refused_by_eval_predict_and_resume(name, mutate, fragment, finished_run,
                                                                             tmp_path, unlabelled):
    ck = record(RunDir(finished_run).best_checkpoint)
    mutate(ck)
    bad = save_record(ck, tmp_path / f"{name}.pt")
    for args, code in (
        (["eval", bad], 1),
        (["predict", bad, unlabelled, "-o", tmp_path / "p.csv"], 1),
        (["--no-ui", "train", "--resume", bad, "--epochs", "5", "--runs-dir", tmp_path / "runs"], 1),
    ):
        assert fragment in error_line(invoke(*args), code), args
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "runs").exists()
    assert not RunDir.eval_path(bad).exists()


# ------------------------------------------------------------- non-finite weights


def test_a_checkpoint_with_nan_weights_is_refused_and_nothing_is_stored(finished_run, tmp_path, unlabelled):
    ck = record(RunDir(finished_run).best_checkpoint)
    for state in ("model", "ema"):
        if isinstance(ck.get(state), dict):
            first = next(k for k, v in ck[state].items() if v.is_floating_point())
            ck[state][first] = ck[state][first].clone().fill_(float("nan"))
    bad = save_record(ck, tmp_path / "nan.pt")
    assert "holds non-finite weights" in error_line(invoke("eval", bad))
    assert not RunDir.eval_path(bad).exists()
    assert "holds non-finite weights" in error_line(invoke("predict", bad, unlabelled, "-o", tmp_path / "p.csv"))
    assert not (tmp_path / "p.csv").exists()
    r = invoke("--no-ui", "train", "--resume", bad, "--epochs", "5", "--runs-dir", tmp_path / "runs")
    assert "holds non-finite weights" in error_line(r)


def test_infinite_weights_in_the_weight_average_are_refused_too(finished_run, tmp_path, unlabelled):
    """Inference uses the weight average when a run kept one: that is checked, not just the model."""
    ck = record(RunDir(finished_run).best_checkpoint)
    ck["ema"] = {k: v.clone() for k, v in ck["model"].items()}
    assert invoke("predict", save_record(ck, tmp_path / "ok.pt"), unlabelled).exit_code == 0
    name = next(k for k, v in ck["ema"].items() if v.is_floating_point())
    ck["ema"][name].view(-1)[0] = float("inf")
    bad = save_record(ck, tmp_path / "inf.pt")
    assert "non-finite weights" in error_line(invoke("eval", bad))


# --------------------------------------------------------------------- resume


def _resume(run: Path, *extra):
    return invoke("--no-ui", "train", "--resume", run, "--epochs", "4", *extra)


def _damage_last(run: Path, mutate) -> None:
    last = RunDir(run).last_checkpoint
    ck = record(last)
    mutate(ck)
    save_record(ck, last)


RESUME_DAMAGE = [
    ("rng-a-string", _set(("rng", "torch"), "not a state"), "random-number state is damaged"),
    ("rng-wrong-size", _set(("rng", "torch"), torch.zeros(7, dtype=torch.uint8)), "random-number state is damaged"),
    ("optimizer-empty", _set(("optimizer",), {"state": {}, "param_groups": []}), "optimizer state does not fit"),
    ("optimizer-a-list", _set(("optimizer",), [1, 2]), "optimizer state does not fit"),
    ("lr-fast", _set(("config", "lr"), "fast"), "the stored settings are not usable"),
    ("width-a-list", _set(("config", "width"), []), "the stored settings are not usable"),
    ("epochs-negative", _set(("config", "epochs"), -3), "the stored settings are not usable"),
]


@pytest.mark.parametrize("name, mutate, fragment", RESUME_DAMAGE, ids=[m[0] for m in RESUME_DAMAGE])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_destroys_nothing(name, mutate, fragment, run_copy):
    _damage_last(run_copy, mutate)
    before = snapshot(run_copy)
    assert fragment in error_line(_resume(run_copy))
    assert snapshot(run_copy) == before


def test_resume_rewrites_a_config_json_that_is_a_list(run_copy):
    run = RunDir(run_copy)
    run.config_path.write_text('["not", "an", "object"]')
    r = _resume(run_copy, "--epochs", "3")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "config.json was unreadable" in r.output
    info = run.read_config()
    assert info["config"]["epochs"] == 3 and len(info["resumes"]) == 1


# -------------------------------------------------------------- predict --output


@pytest.fixture
def images(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 10, 200)).save(folder / f"{i}.png")
    return folder


def test_predict_never_writes_over_a_checkpoint(run_copy, images):
    last = RunDir(run_copy).last_checkpoint
    before = last.read_bytes()
    best = RunDir(run_copy).best_checkpoint
    msg = error_line(invoke("predict", best, images, "--output", last), 2)
    assert "is a checkpoint" in msg
    assert "is a checkpoint" in error_line(invoke("predict", best, images, "--output", last, "--force"), 2)
    assert "reads" in error_line(invoke("predict", best, images, "--output", best, "--force"), 2)
    assert last.read_bytes() == before
    load = record(last)
    assert load["epoch"] == 2


def test_predict_never_writes_over_its_input(run_copy, tmp_path, unlabelled):
    before = unlabelled.read_bytes()
    assert "reads" in error_line(invoke("predict", run_copy, unlabelled, "-o", unlabelled, "--force"), 2)
    link = tmp_path / "link.csv"
    link.symlink_to(unlabelled)
    assert "reads" in error_line(invoke("predict", run_copy, unlabelled, "-o", link, "--force"), 2)
    assert unlabelled.read_bytes() == before and link.is_symlink()


def test_predict_replaces_only_its_own_csv_unless_forced(run_copy, tmp_path, images):
    notes = tmp_path / "notes.csv"
    notes.write_text("name,phone\nann,555\n")
    msg = error_line(invoke("predict", run_copy, images, "-o", notes), 2)
    assert "not a predictions CSV written by cifar-tui" in msg and "--force" in msg
    assert notes.read_text() == "name,phone\nann,555\n"
    summary = RunDir.summary_path(RunDir(run_copy).last_checkpoint)
    before = summary.read_bytes()
    # a file of a run folder (here a checkpoint's sidecar) is never replaced, even with --force
    assert "file of the run folder" in error_line(invoke("predict", run_copy, images, "-o", summary, "--force"), 2)
    assert summary.read_bytes() == before
    r = invoke("predict", run_copy, images, "-o", notes, "--force")
    assert r.exit_code == 0, r.output
    assert list(csv.reader(notes.open()))[0] == ["ID", "Labels"]
    for header in ("ID,Labels\n0,3\n", "ID,Labels,airplane,automobile\n0,1,0.5,0.5\n", ""):
        ours = tmp_path / "ours.csv"
        ours.write_text(header)
        r = invoke("predict", run_copy, images, "-o", ours)
        assert r.exit_code == 0, (header, r.output)
        assert len(list(csv.reader(ours.open()))) == 3
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_predict_output_to_a_fifo_is_refused_without_blocking(run_copy, tmp_path, images):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert "not a regular file" in error_line(invoke("predict", run_copy, images, "-o", fifo, "--force"), 2)


def test_a_csv_half_written_by_a_killed_predict_is_removed_by_the_next(run_copy, tmp_path, images):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "pred.csv"
    out.write_text("ID,Labels\n0,7\n")
    half = tmp_path / f".pred.csv.tmp-{dead.pid}"
    half.write_text("ID,Labels\n0,")
    live = tmp_path / f".pred.csv.tmp-{os.getppid()}"  # a running process's write: kept
    live.write_text("x")
    r = invoke("predict", run_copy, images, "-o", out)
    assert r.exit_code == 0, r.output
    assert not half.exists() and live.exists() and len(out.read_text().splitlines()) == 3


def test_a_failed_csv_write_leaves_the_previous_csv(run_copy, tmp_path, images, monkeypatch):
    import engine.files as files

    out = tmp_path / "pred.csv"
    out.write_text("ID,Labels\n0,7\n")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    assert "cannot write" in error_line(invoke("predict", run_copy, images, "-o", out))
    assert out.read_text() == "ID,Labels\n0,7\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------ damaged run JSON


def test_runs_lists_runs_with_damaged_json(run_copy):
    run = RunDir(run_copy)
    run.config_path.write_text(json.dumps({"config": "a string", "data": ["x"], "model": 5, "created": 7}))
    best = run.best_checkpoint
    run.summary_path(best).write_text(json.dumps({"epoch": "five", "val_acc": "high", "kind": 3}))
    st = best.stat()
    RunDir.eval_path(best).write_text(json.dumps({"x": {"accuracy": "high", "fingerprint": {
        "size": st.st_size, "mtime_ns": st.st_mtime_ns}}}))
    r = invoke("runs", run_copy.parent)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert run_copy.name in r.output and "best.pt" in r.output
    r = invoke("runs", run_copy.parent, "--json")
    assert r.exit_code == 0, r.output
    (listed,) = json.loads(r.output)
    row = {c["name"]: c for c in listed["checkpoints"]}["best.pt"]
    assert row["val_acc"] is None and row["epoch"] is None and row["test_acc"] is None
    assert listed["preset"] is None and listed["params"] is None


# ---------------------------------------------------- markup in names and paths


def _cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "tui_trainer", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


def _clean(r: subprocess.CompletedProcess) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out and "MarkupError" not in out and "terminate called" not in out, out
    return out


def test_headless_commands_print_names_and_paths_as_text(markup_run, tmp_path):
    """Real processes with real consoles (the old failure: a MarkupError, then an abort)."""
    env = dict(os.environ, CIFAR_TUI_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", COLUMNS="200")
    data = write_cifar_batches(tmp_path / MARKUP_DIR / "cifar-10-batches-py", MARKUP_CLASSES, n_train=32, n_test=8)
    out = _clean(_cli("--no-ui", "train", "--data", data, "--preset", "tiny", "--width", "0.125", "--epochs", "1",
                      "--val-size", "8", "--runs-dir", tmp_path / "runs[/blue]", env=env))
    assert str(data) in out and "runs[/blue]" in out
    out = _clean(_cli("eval", markup_run, env=env))
    assert all(name[:5] in out for name in MARKUP_CLASSES) and "[/bold]" in out and "data[/blue]" in out
    pkl = tmp_path / "[" / "bold].pkl"  # the path ends in "[/bold].pkl"
    pkl.parent.mkdir()
    with open(pkl, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), dtype=np.uint8)}, fh)
    out = _clean(_cli("predict", markup_run, pkl, env=env))
    assert "[/bold].pkl" in out and any(name in out for name in MARKUP_CLASSES)
    out = _clean(_cli("runs", Path(markup_run).parent, env=env))
    assert "runs[/blue]" in out and "data[/blue]" in out
