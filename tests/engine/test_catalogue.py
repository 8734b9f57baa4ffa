"""The run folder (RunDir), the run catalogue with its statuses, RunFinished, stale evaluations."""

import json
import os
import shutil
import socket

import pytest

from engine import events as ev
from engine.rundir import RunDir, read_metrics, resume_target
from engine.runs import list_runs, read_evaluations, read_run


def last_event(run_dir) -> dict:
    events, bad = read_metrics(RunDir(run_dir).metrics_path)
    assert bad == 0
    return events[-1]


# ------------------------------------------------------------------ RunFinished


def test_run_finished_is_the_last_line_of_a_completed_run(finished_run):
    last = last_event(finished_run)
    assert last["event"] == "RunFinished" and last["outcome"] == "completed"
    assert last["last_checkpoint"].endswith("last.pt") and last["best_checkpoint"].endswith("best.pt")
    assert last["epochs_done"] == 2 and last["save_error"] is None
    assert read_run(finished_run).status == "completed"


def test_run_finished_is_the_last_line_of_a_stopped_run(small):
    from engine.trainer import Trainer

    seen = []

    def listen(e):
        seen.append(e)
        if isinstance(e, ev.StepDone) and e.step == 2:
            t.send(ev.Stop(save=True, reason="stopped by a test"))

    t = Trainer(small(epochs=3), listeners=[listen])
    assert t.run() == "stopped"
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].outcome == "stopped"
    last = last_event(t.run_dir)
    assert last["event"] == "RunFinished" and last["outcome"] == "stopped"
    assert last["reason"].startswith("stopped by a test")
    summary = read_run(t.run_dir)
    assert summary.status == "stopped" and summary.reason.startswith("stopped by a test")


def test_run_finished_is_the_last_line_of_a_failed_run(small, monkeypatch):
    import engine.trainer as tr
    from engine.trainer import Trainer

    def broken(*a, **k):
        raise RuntimeError("validation exploded")

    monkeypatch.setattr(tr, "validation_sums", broken)
    t = Trainer(small(epochs=2))
    assert t.run() == "failed"
    last = last_event(t.run_dir)
    assert last["event"] == "RunFinished" and last["outcome"] == "failed"
    assert "validation exploded" in last["reason"] and "error.log" in last["reason"]
    assert t.result.outcome == "failed"
    assert read_run(t.run_dir).status == "failed"
    assert RunDir(t.run_dir).error_log_path.is_file()


def test_a_failure_before_the_run_folder_still_ends_with_run_finished(small, tmp_path):
    from engine.trainer import Trainer

    seen = []
    assert Trainer(small(data=str(tmp_path / "nope")), listeners=[seen.append]).run() == "failed"
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].outcome == "failed"
    assert seen[-1].last_checkpoint is None


# ---------------------------------------------------------------------- status


def test_status_running_while_a_live_process_holds_the_lock(run_copy):
    lock = RunDir(run_copy).lock()
    lock.acquire()
    try:
        assert read_run(run_copy).status == "running"
    finally:
        lock.release()
    assert read_run(run_copy).status == "completed"


def test_a_run_without_a_final_event_and_no_live_writer_is_interrupted(run_copy):
    # what a kill -9 leaves: the lock of a dead process, metrics ending mid-run
    run = RunDir(run_copy)
    events, _ = run.read_metrics()
    cut = next(i for i, e in enumerate(events) if e["event"] == "EpochDone")
    run.metrics_path.write_text("".join(json.dumps(e) + "\n" for e in events[:cut]) + '{"event": "StepD')
    run.lock_path.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "since": "x"}))
    s = read_run(run_copy)
    assert s.status == "interrupted" and "ended without finishing" in s.reason


def test_runs_written_before_run_finished_existed_still_list(run_copy):
    run = RunDir(run_copy)
    events, _ = run.read_metrics()
    legacy = [e for e in events if e["event"] != "RunFinished"]  # ends on StateChanged(finished)
    run.metrics_path.write_text("".join(json.dumps(e) + "\n" for e in legacy))
    assert read_run(run_copy).status == "completed"  # 2 of 2 epochs
    info = run.read_config()
    info["config"]["epochs"] = 5
    run.config_path.write_text(json.dumps(info))
    assert read_run(run_copy).status == "stopped"  # 2 of 5: it was stopped
    legacy[-1] = {**legacy[-1], "state": "failed"}
    run.metrics_path.write_text("".join(json.dumps(e) + "\n" for e in legacy))
    assert read_run(run_copy).status == "failed"


def test_damaged_run_files_are_listed_not_raised(tmp_path):
    d = tmp_path / "20240101-000000-odd"
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.json").write_text('["a list, not an object"]')
    (d / "checkpoints" / "last.pt").write_bytes(b"x")
    (d / "checkpoints" / "last.json").write_text(json.dumps({"epoch": "five", "val_acc": "high"}))
    (run,) = list_runs(tmp_path)
    assert run.problems == ("config.json is unreadable",)
    assert run.checkpoints[0].epoch is None and run.checkpoints[0].val_acc is None
    assert run.status == "interrupted"


# --------------------------------------------------------------- evaluations


def test_a_stored_evaluation_is_not_shown_for_a_file_that_changed_since(run_copy):
    """Evaluate last.pt, let training overwrite it: the stored result is stale, not its accuracy."""
    from engine.evaluate import evaluate_checkpoint
    from engine.trainer import Trainer

    last = RunDir(run_copy).last_checkpoint
    acc = evaluate_checkpoint(str(last)).result.accuracy
    row = {c.name: c for c in read_run(run_copy).checkpoints}["last.pt"]
    assert row.test_acc == acc and not row.test_stale
    assert Trainer(resume=str(run_copy), resume_overrides={"epochs": 3}).run() == "completed"
    row = {c.name: c for c in read_run(run_copy).checkpoints}["last.pt"]
    assert row.epoch == 3 and row.test_acc is None and row.test_stale
    (stored,) = read_evaluations(last)
    assert stored.stale and stored.epoch == 2 and stored.accuracy == acc


def test_a_copied_run_keeps_its_evaluations(run_copy, tmp_path):
    from engine.evaluate import evaluate_checkpoint

    best = RunDir(run_copy).best_checkpoint
    acc = evaluate_checkpoint(str(best)).result.accuracy
    moved = tmp_path / "elsewhere" / run_copy.name
    shutil.copytree(run_copy, moved, copy_function=shutil.copyfile)  # new mtimes; same bytes
    row = {c.name: c for c in read_run(moved).checkpoints}["best.pt"]
    assert row.test_acc == acc and not row.test_stale  # tied by the save id written into the file


# ------------------------------------------------------------------- RunDir


def test_run_dir_spells_the_layout(tmp_path):
    run = RunDir.create(tmp_path, "tiny")
    assert run.path.parent == tmp_path and run.run_id.endswith("-tiny") and run.checkpoints_dir.is_dir()
    assert run.checkpoint_path("stop") == run.last_checkpoint
    assert run.checkpoint_path("epoch", epoch=7).name == "epoch-007.pt"
    assert run.checkpoint_path("manual", epoch=2, global_step=31, step_in_epoch=3).name == "manual-e003-s0000031.pt"
    assert RunDir.eval_path(run.best_checkpoint).name == "best.eval.json"
    assert run.checkpoint_for("resume") is None
    run.best_checkpoint.write_bytes(b"b")
    assert run.checkpoint_for("resume") == run.best_checkpoint  # the only one there
    run.last_checkpoint.write_bytes(b"l")
    assert run.checkpoint_for("resume") == run.last_checkpoint
    assert run.checkpoint_for("inference") == run.best_checkpoint


def test_a_fork_goes_beside_the_run_or_where_this_invocation_says_never_where_a_file_says(run_copy, tmp_path):
    epoch1 = RunDir(run_copy).checkpoint_path("epoch", epoch=1)
    step1 = RunDir.read_summary(epoch1)["global_step"]
    target = resume_target(epoch1, step1, None, "tiny")
    assert target.run.path.parent == run_copy.parent and target.note
    mine = tmp_path / "mine"
    assert resume_target(epoch1, step1, str(mine), "tiny").run.path.parent == mine
    loose = tmp_path / "loose.pt"
    shutil.copyfile(epoch1, loose)
    assert resume_target(loose, step1, str(mine), "tiny").run.path.parent == mine


def test_a_stored_runs_dir_is_never_a_destination(run_copy, tmp_path, monkeypatch):
    import torch

    from engine.checkpoint import load_checkpoint
    from engine.trainer import Trainer

    ck = load_checkpoint(RunDir(run_copy).checkpoint_path("epoch", epoch=1))
    evil = tmp_path / "planted"
    ck["config"]["runs_dir"] = str(evil)
    loose = tmp_path / "downloaded.pt"
    torch.save({k: v for k, v in ck.items() if k != "path"}, loose)
    monkeypatch.setenv("CIFAR_TUI_RUNS_DIR", str(tmp_path / "default-runs"))
    t = Trainer(resume=str(loose), resume_overrides={"epochs": 2})
    assert t.run() == "completed"
    assert not evil.exists() and t.run_dir.parent == tmp_path / "default-runs"


def test_metrics_writer_closes_a_torn_line_and_counts_write_errors(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "StepDone", "ep')
    w = RunDir(tmp_path).metrics_writer()
    w(ev.Warning(message="hello"))
    w.close()
    events, bad = read_metrics(path)
    assert bad == 1 and events[-1]["message"] == "hello"
    w(ev.Warning(message="after close"))  # ignored, never raised
    assert w.errors == 0


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_the_lock_file_is_owner_only(tmp_path):
    run = RunDir.create(tmp_path, "tiny")
    lock = run.lock()
    lock.acquire()
    assert (run.lock_path.stat().st_mode & 0o777) == 0o600
    lock.release()
    assert not run.lock_path.exists()


# ------------------------------------------------------- note, rename, delete


def _fake_run(root, name="20240101-000000-tiny"):
    d = root / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"preset": "tiny", "epochs": 2}}))
    (d / "checkpoints" / "last.pt").write_bytes(b"x")
    return d


def _hold_lock(d):
    """A lock of a live process (this one) on this host: the run is running."""
    (d / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))


def test_a_note_is_one_line_stored_in_the_run_and_listed(tmp_path):
    d = _fake_run(tmp_path)
    run = RunDir(d)
    assert run.read_note() == "" and read_run(d).note == ""
    assert run.write_note("  lr 0.05\nwith\tmixup \x1b[31m ") == "lr 0.05 with mixup [31m"
    assert read_run(d).note == "lr 0.05 with mixup [31m" and read_run(d).to_dict()["note"] == read_run(d).note
    assert run.write_note("x" * 2000) == "x" * 500
    run.write_note("   ")
    assert not run.note_path.exists()
    # hostile: a link or a FIFO at the note's name is not read (and never blocks)
    (tmp_path / "secret").write_text("secret")
    run.note_path.symlink_to(tmp_path / "secret")
    assert run.read_note() == ""
    run.note_path.unlink()
    os.mkfifo(run.note_path)
    assert run.read_note() == ""


def test_rename_a_run_beside_itself_and_refuse_what_would_lose_something(tmp_path):
    from engine.rundir import RunDirError
    from engine.runs import rename_run

    d = _fake_run(tmp_path)
    other = _fake_run(tmp_path, "other")
    for bad in ("", "../x", ".hidden", "a b", "x" * 101, "other"):
        with pytest.raises(RunDirError):
            rename_run(d, bad)
    assert d.is_dir()
    new = rename_run(d, "baseline-lr0.1")
    assert new.path == tmp_path / "baseline-lr0.1" and not d.exists() and (new.path / "checkpoints/last.pt").is_file()
    assert not new.lock_path.exists() and [r.run_id for r in list_runs(tmp_path)].count("baseline-lr0.1") == 1
    _hold_lock(other)
    with pytest.raises(RunDirError, match="is running"):
        rename_run(other, "renamed")
    assert other.is_dir()


def test_delete_a_run_but_never_a_running_one(tmp_path):
    from engine.rundir import RunDirError
    from engine.runs import delete_run

    d = _fake_run(tmp_path)
    _hold_lock(d)
    with pytest.raises(RunDirError, match="is running.*stop it before you delete it"):
        delete_run(d)
    assert (d / "checkpoints/last.pt").is_file()
    (d / ".lock").write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "since": "then"}))
    delete_run(d)  # a stale lock (its process is gone): deleted
    assert not d.exists()
    with pytest.raises(RunDirError, match="not a run folder"):
        delete_run(tmp_path / "nothing")
