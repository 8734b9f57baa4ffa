"""Issue 25 through the command line: an output never replaces what the tool did not
write, a hostile run folder is one damaged run, names print escaped, a path too long is
one line."""

from __future__ import annotations

import json
import os

import pytest
from test_export_cli import error_line, invoke  # (tests/cli is on the path, as for conftest)

from engine.resolve import resolve_run
from engine.rundir import RunDir


def test_export_csv_never_replaces_a_checkpoint_a_run_file_a_device_or_a_link(run_copy, tmp_path):
    run = RunDir(run_copy)
    kept = {p: p.read_bytes() for p in (run.best_checkpoint, run.metrics_path, run.config_path)}
    for target in kept:
        line = error_line(invoke("export", run_copy, "--csv", target, "--force"), 2)
        assert "file of the run folder" in line or "a file this command reads" in line
    loose = tmp_path / "copy.pt"
    loose.write_bytes(run.best_checkpoint.read_bytes())
    assert "checkpoint" in error_line(invoke("export", run_copy, "--csv", loose, "--force"), 2)
    assert "not a regular file" in error_line(invoke("export", run_copy, "--csv", "/dev/full", "--force"), 2)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    link = tmp_path / "link.csv"
    link.symlink_to(notes)
    assert "symbolic link" in error_line(invoke("export", run_copy, "--csv", link, "--force"), 2)
    assert link.is_symlink()
    assert all(p.read_bytes() == b for p, b in kept.items()) and loose.stat().st_size > 0
    # a foreign regular file: only with --force; a CSV of export itself is replaced
    line = error_line(invoke("export", run_copy, "--csv", notes), 2)
    assert "--force" in line and notes.read_text() == "my notes\n"
    assert invoke("export", run_copy, "--csv", notes, "--force").exit_code == 0
    assert notes.read_text().startswith("epoch,train_loss")
    assert invoke("export", run_copy, "--csv", notes).exit_code == 0


def test_export_tensorboard_stays_inside_the_folder_named(run_copy, tmp_path):
    # RUN/checkpoints/.. is the run, by its real name (was "..": written beside the folder)
    assert resolve_run(f"{run_copy}/checkpoints/..").run_id == run_copy.name
    assert resolve_run(f"{run_copy}/.").run_id == run_copy.name
    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / run_copy.name).symlink_to(tmp_path)  # a link would lead the files elsewhere
    line = error_line(invoke("export", f"{run_copy}/checkpoints/..", "--tensorboard", tb), 2)
    assert "symbolic link" in line
    assert "run folder" in error_line(invoke("export", run_copy, "--tensorboard", run_copy), 2)
    assert "run folder" in error_line(invoke("export", run_copy, "--tensorboard", run_copy / "checkpoints"), 2)


def test_predict_output_into_a_run_folder_is_refused_even_with_force(run_copy, tmp_path):
    metrics = RunDir(run_copy).metrics_path
    before = metrics.read_bytes()
    pkl = tmp_path / "x.pkl"
    pkl.write_bytes(b"unused: refused before any input is read")
    line = error_line(invoke("predict", run_copy, pkl, "--output", metrics, "--force"), 2)
    assert "file of the run folder" in line and metrics.read_bytes() == before


def test_runs_lists_a_damaged_run_with_its_reason_and_the_others(run_copy):
    root = run_copy.parent
    bad = root / "20000101-000000-bad"
    (bad / "checkpoints").mkdir(parents=True)
    os.mkfifo(bad / "config.json")
    r = invoke("runs", root, "--json")
    assert r.exit_code == 0, r.output
    by_id = {d["run_id"]: d for d in json.loads(r.output)}
    assert by_id[run_copy.name]["status"] == "completed"
    assert by_id[bad.name]["status"] == "damaged" and "FIFO" in by_id[bad.name]["reason"]
    r = invoke("runs", root)
    assert r.exit_code == 0 and "damaged" in r.output and "config.json is not a regular file" in r.output


def test_a_run_id_with_a_newline_cannot_forge_an_error_line(tmp_path):
    r = invoke("export", "x\nerror: forged", "--csv", tmp_path / "h.csv")
    line = error_line(r, 2)  # exactly one error: line
    assert "x\\nerror: forged" in line


@pytest.mark.parametrize("command", [["watch"], ["train", "--resume"], ["export"]])
def test_a_path_too_long_is_one_line(command, tmp_path):
    long = str(tmp_path / ("d" * 5000))
    args = [*command, long] + (["--csv", tmp_path / "h.csv"] if command == ["export"] else [])
    r = invoke("--no-ui", *args) if command[0] == "train" else invoke(*args)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert len([x for x in r.output.splitlines() if x.startswith("error:")]) == 1, r.output


def test_predict_output_path_too_long_is_one_line(run_copy, tmp_path):
    pkl = tmp_path / "x.pkl"
    pkl.write_bytes(b"unused")
    line = error_line(invoke("predict", run_copy, pkl, "--output", tmp_path / ("o" * 5000)), 2)
    assert "cannot use this path" in line


def test_resume_through_a_checkpoint_link_writes_only_into_the_run_resumed(run_copy, tmp_path):
    """A/checkpoints/last.pt a link into run B: `train --resume A` trains on in A (the link
    is replaced by A's own file); B's metrics.jsonl, config.json and checkpoints are untouched."""
    import hashlib
    import shutil

    def snapshot(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    a = run_copy
    b = tmp_path / "other" / "20000101-000000-b"
    shutil.copytree(a, b)
    last = RunDir(a).last_checkpoint
    last.unlink()
    last.symlink_to(RunDir(b).last_checkpoint)
    before_b = snapshot(b)
    r = invoke("--no-ui", "train", "--resume", a, "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert snapshot(b) == before_b
    assert not last.is_symlink() and last.is_file()
    events = [json.loads(x) for x in RunDir(a).metrics_path.read_text().splitlines() if x.strip()]
    assert events[-1]["event"] == "RunFinished" and events[-1]["epochs_done"] == 3
