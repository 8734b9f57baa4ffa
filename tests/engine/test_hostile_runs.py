"""Hostile run folders (issue 25): a FIFO, /dev/zero or deep JSON as any file of a run
folder marks that one run ``damaged`` with the reason, never blocks, never raises, and
never stops the other runs from listing. Hand-made run folders: no training here."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from engine import events as ev
from engine.files import pid_alive
from engine.metrics import MetricsFollower, read_metrics, tail_events
from engine.rundir import RunDir, RunLock
from engine.runs import complete_result, list_runs, read_run

DEEP = "[" * 2000 + "]" * 2000  # 4 KB: within every size limit, deeper than any
FINISHED = {"event": "RunFinished", "time": 1.0, "outcome": "completed", "reason": "done"}


def make_run(root, name="20260101-000000-tiny", events=(FINISHED,)):
    d = root / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"created": "2026-01-01T00:00:00", "config": {"epochs": 1}}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (d / "checkpoints" / "last.pt").write_bytes(b"not read here")
    (d / "checkpoints" / "last.json").write_text(json.dumps({"epoch": 1, "kind": "last"}))
    return d


def within(seconds, fn):
    """``fn()``'s result, failing the test if it takes longer (a FIFO would block for ever)."""
    box = {}

    def go():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for more than {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _fifo(p):
    p.unlink(missing_ok=True)
    os.mkfifo(p)


def _devzero(p):
    p.unlink(missing_ok=True)
    p.symlink_to("/dev/zero")


def _deep(p):
    p.write_text(DEEP)


FILES = [".lock", "config.json", "checkpoints/last.json", "checkpoints/last.eval.json", "metrics.jsonl"]
KINDS = {"fifo": (_fifo, "not a regular file (a FIFO)"), "devzero": (_devzero, "symbolic link"),
         "deep": (_deep, "nested deeper than")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FILES)
def test_one_hostile_file_marks_that_run_damaged_and_the_others_list(tmp_path, name, kind):
    good = make_run(tmp_path, "20260101-000000-good")
    bad = make_run(tmp_path, "20260102-000000-bad")
    make, reason = KINDS[kind]
    make(bad / name)
    runs = within(10, lambda: list_runs(tmp_path))
    by_id = {r.run_id: r for r in runs}
    assert by_id[good.name].status == "completed"
    hostile = by_id[bad.name]
    if kind == "deep" and name == "metrics.jsonl":
        # a line that is not an event is skipped and counted, like a torn one: no final event
        assert hostile.status == "interrupted"
        return
    assert hostile.status == "damaged", hostile
    assert reason in hostile.reason and name.split("/")[-1] in hostile.reason
    assert json.loads(json.dumps(hostile.to_dict()))["status"] == "damaged"


def test_a_lock_naming_no_single_process_is_not_running(tmp_path):
    d = make_run(tmp_path, events=())
    for pid in (-1, 0, 10**20, 2**31):
        (d / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "x"}))
        assert not pid_alive(pid)
        assert read_run(d).status == "interrupted"
        lock = RunLock(d)
        lock.acquire()  # a resume takes it over as stale
        assert any("stale lock" in n for n in lock.notes)
        lock.release()
    # and on another host, where liveness cannot be asked: still nobody
    (d / ".lock").write_text(json.dumps({"pid": -1, "host": "elsewhere", "since": "x"}))
    assert read_run(d).status == "interrupted"


def test_metrics_readers_are_bounded_and_find_the_final_event(tmp_path):
    d = make_run(tmp_path)
    m = d / "metrics.jsonl"
    with open(m, "wb") as fh:
        fh.write(b'{"event": "Warning", "time": 1.0, "message": "' + b"x" * (300 << 10) + b'"}\n')
        fh.write(b"[" * 5000 + b"\n")
        fh.write(json.dumps(FINISHED).encode() + b"\n")
    events, bad = read_metrics(m)
    assert [e["event"] for e in events] == ["RunFinished"] and bad == 2
    assert tail_events(m)[-1]["event"] == "RunFinished"
    assert read_run(d).status == "completed"  # a long line before the final event hides nothing
    f = MetricsFollower(m)
    assert [type(e).__name__ for e in f.poll()] == ["RunFinished"] and f.bad_lines == 2


def test_a_follower_holds_no_more_than_a_line_of_a_zero_tail(tmp_path):
    d = make_run(tmp_path)
    m = d / "metrics.jsonl"
    with open(m, "ab") as fh:
        fh.truncate(m.stat().st_size + (32 << 20))
    f = MetricsFollower(m, chunk=1 << 20)
    seen = []
    for _ in range(40):
        seen += f.poll()
        assert f.pending_bytes <= (64 << 10)
    assert [type(e).__name__ for e in seen] == ["RunFinished"] and f.bad_lines == 1
    with open(m, "ab") as fh:  # a resumed writer closes the torn line and goes on
        fh.write(b"\n" + json.dumps({**FINISHED, "reason": "again"}).encode() + b"\n")
    assert [e.reason for e in f.poll()] == ["again"]


def test_a_follower_never_opens_a_fifo(tmp_path):
    d = make_run(tmp_path)
    _fifo(d / "metrics.jsonl")
    assert within(5, MetricsFollower(d / "metrics.jsonl").poll) == []


ABSURD = [
    {"event": "Warning", "time": 1e300, "message": "m"},
    {"event": "Warning", "time": float("nan"), "message": "m"},
    {"event": "Warning", "time": -5.0, "message": "m"},
    {"event": "EpochDone", "time": 1.0, "epoch": 10**13, "train_loss": 1.0, "train_acc": 0.5, "val_loss": None,
     "val_acc": None, "seconds": 1.0},
    {"event": "StepDone", "time": 1.0, "epoch": 1, "step": -3, "loss": 1.0, "lr": 0.1, "images_per_s": 1.0},
    {"event": "EpochDone", "time": 1.0, "epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": None,
     "val_acc": None, "seconds": float("inf")},
    {"event": "RunStarted", "time": 1.0, "config": {"epochs": "many"}, "run_dir": "r", "device": "cpu", "params": 1},
    {"event": "RunStarted", "time": 1.0, "config": {"lr": 1e400}, "run_dir": "r", "device": "cpu", "params": 1},
    {"event": "EpochDone", "time": 1.0, "epoch": 10**400, "train_loss": 1.0, "train_acc": 0.5, "val_loss": None,
     "val_acc": None, "seconds": 1.0},
]


@pytest.mark.parametrize("d", ABSURD, ids=range(len(ABSURD)))
def test_absurd_events_are_refused_where_they_are_read(d):
    with pytest.raises(ValueError):
        ev.event_from_dict(d)


def test_values_a_diverged_run_writes_pass():
    e = ev.event_from_dict({"event": "EpochDone", "time": 1.0, "epoch": 2, "train_loss": float("nan"),
                            "train_acc": 0.1, "val_loss": 1e308, "val_acc": -1e308, "seconds": 1.0})
    assert e.val_loss == 1e308


def test_a_huge_stored_confusion_matrix_is_not_shown():
    def result(n):
        return {"accuracy": 0.5, "loss": 1.0, "images": n, "data_source": "x",
                "confusion_matrix": [[0] * n for _ in range(n)], "per_class_accuracy": [0.0] * n}
    assert complete_result(result(10))
    assert not complete_result(result(1000))


def test_storing_an_evaluation_beside_a_deep_eval_json_keeps_the_result(tmp_path):
    from engine.runs import read_evaluations, store_evaluation

    d = make_run(tmp_path)
    ck = d / "checkpoints" / "last.pt"
    (d / "checkpoints" / "last.eval.json").write_text(DEEP)
    store_evaluation(ck, "test", {"accuracy": 0.5}, {"size": ck.stat().st_size, "mtime_ns": ck.stat().st_mtime_ns})
    assert [e.accuracy for e in read_evaluations(ck)] == [0.5]


MEASURE = """
import resource, sys
from pathlib import Path
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run = Path(sys.argv[1])
if sys.argv[2] == "export":
    from engine.export import read_history
    h = read_history(run)
    assert [e.epoch for e in h.epochs] == [1], h.epochs
else:
    from engine.metrics import MetricsFollower
    f = MetricsFollower(run / "metrics.jsonl")
    seen = []
    while f.offset < (run / "metrics.jsonl").stat().st_size:
        seen += f.poll()
    assert [type(e).__name__ for e in seen] == ["EpochDone", "RunFinished"], seen
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) // 1024)
"""


@pytest.mark.parametrize("reader", ["export", "watch"])
def test_a_1_gib_zero_tail_costs_little_memory(tmp_path, reader):
    """``truncate -s +1G metrics.jsonl`` (what a crash leaves on some file systems): export and
    watch's follower read past it holding at most a line (was: 3 GiB and 1 GiB)."""
    import subprocess
    import sys

    epoch = {"event": "EpochDone", "time": 1.0, "epoch": 1, "train_loss": 1.0, "train_acc": 0.5,
             "val_loss": None, "val_acc": None, "seconds": 1.0}
    d = make_run(tmp_path, events=(epoch,))
    m = d / "metrics.jsonl"
    with open(m, "ab") as fh:
        fh.truncate(m.stat().st_size + (1 << 30))  # sparse: no disk used
    with open(m, "ab") as fh:
        fh.write(b"\n" + json.dumps(FINISHED).encode() + b"\n")
    r = subprocess.run([sys.executable, "-c", MEASURE, str(d), reader], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stderr
    grown_mib = int(r.stdout.split()[-1])
    assert grown_mib < 100, f"{reader} grew by {grown_mib} MiB reading a 1 GiB zero tail"


def test_settings_json_deep_or_a_fifo_means_the_defaults(tmp_path, monkeypatch):
    from tui_trainer import settings

    monkeypatch.setenv("CIFAR_TUI_CONFIG_DIR", str(tmp_path))
    (tmp_path / "settings.json").write_text(DEEP)
    assert settings.load_settings() == {}
    assert settings.save_setting("theme", "x") and settings.load_settings() == {"theme": "x"}
    _fifo(tmp_path / "settings.json")
    assert within(5, settings.load_settings) == {}
