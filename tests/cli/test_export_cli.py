"""`cifar-tui export`, `predict` on damaged images, a changed --lr on resume, the root --runs-dir."""

import csv
import io
import json

import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from tests.procs import TRAIN, error_line, invoke

SMALL = TRAIN[1:]  # the small run's options, without the command


# ------------------------------------------------------------------------------ export


def test_export_csv_reads_back_one_row_per_epoch(finished_run, tmp_path):
    out = tmp_path / "history.csv"
    r = invoke("export", finished_run, "--csv", out)
    assert r.exit_code == 0, r.output
    assert "wrote 2 epoch(s)" in r.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "mixup", "seconds",
                            "markers"]  # the steering actions of each epoch (none in this run)
    assert all(row["markers"] == "" for row in rows)
    events = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    done = [e for e in events if e["event"] == "EpochDone"]
    for row, e in zip(rows, done):  # the numbers are the run's own, as floats
        assert float(row["val_acc"]) == pytest.approx(e["val_acc"])
        assert float(row["train_loss"]) == pytest.approx(e["train_loss"])
        assert float(row["seconds"]) > 0 and row["mixup"] in ("0", "1")
    # to stdout, and the run named by its id in --runs-dir (the root option too)
    r = invoke("export", finished_run.name, "--csv", "-", "--runs-dir", finished_run.parent)
    assert r.exit_code == 0, r.output
    assert list(csv.reader(io.StringIO(r.stdout)))[1][0] == "1"
    r = invoke("--runs-dir", finished_run.parent, "export", finished_run.name, "--csv", "-")
    assert r.exit_code == 0 and r.stdout.count("\n") == 3


def test_export_refusals(finished_run, tmp_path):
    assert "nothing to export" in error_line(invoke("export", finished_run), 2)
    assert "no run with that id" in error_line(invoke("export", "no-such-run", "--csv", "-", "--runs-dir", tmp_path), 2)
    assert "no such run folder" in error_line(invoke("export", tmp_path / "nope", "--csv", "-"), 2)
    assert "not a run folder" in error_line(invoke("export", tmp_path, "--csv", "-"))


def test_export_tensorboard(finished_run, tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # the optional extra is not installed: one line that says how to get it
        line = error_line(invoke("export", finished_run, "--tensorboard", tmp_path / "tb"))
        assert "pip install 'cifar-tui[tensorboard]'" in line
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = invoke("export", finished_run, "--tensorboard", tmp_path / "tb")
    assert r.exit_code == 0, r.output
    acc = EventAccumulator(str(tmp_path / "tb" / finished_run.name))
    acc.Reload()
    assert [s.step for s in acc.Scalars("accuracy/val")] == [1, 2]


# ----------------------------------------------------------------------------- predict


def test_predict_skips_a_corrupt_jpeg_and_keeps_the_ids(finished_run, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ("a.png", "b.jpg", "d.png"):
        img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
        data = encode_jpeg(img) if name.endswith(".jpg") else encode_png(img)
        (folder / name).write_bytes(data.numpy().tobytes())
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG was cut short")
    out = tmp_path / "pred.csv"
    r = invoke("predict", finished_run, folder, "-o", out)
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable image(s)" in r.output and "c.jpg" in r.output
    assert "1 of 4 image(s) skipped; IDs without a prediction: 2" in r.output
    assert "wrote 3 predictions" in r.output and "(1 skipped)" in r.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["ID", "Labels"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "3"]  # the input positions: c.jpg (2) has no row
    # --full: the file and class name too (and the same predictions)
    r = invoke("predict", finished_run, folder, "-o", out, "--full")
    assert r.exit_code == 0, r.output
    full = list(csv.DictReader(out.read_text().splitlines()))
    assert [row["File"].rsplit("/", 1)[-1] for row in full] == ["a.png", "b.jpg", "d.png"]
    classes = json.loads((finished_run / "config.json").read_text())["data"]["classes"]
    assert all(row["Class"] == classes[int(row["Labels"])] for row in full)
    assert [row["Labels"] for row in full] == [row[1] for row in rows[1:]]
    r = invoke("predict", finished_run, folder, "-o", out, "--columns", "id,class")
    assert r.exit_code == 0 and out.read_text().splitlines()[0] == "ID,Class"
    assert "--columns" in error_line(invoke("predict", finished_run, folder, "-o", out, "--columns", "ID,Nope"), 2)


# ------------------------------------------------------------------------------ resume


def test_lr_changed_on_resume_is_recorded(tmp_path):
    r = invoke("--no-ui", "train", *SMALL, "--epochs", "1", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (run,) = list((tmp_path / "r").iterdir())
    r = invoke("--no-ui", "train", "--resume", run, "--epochs", "2", "--lr", "0.01")
    assert r.exit_code == 0, r.output
    # the run had finished its epochs: --lr is the peak of the added epochs' new schedule
    assert "extending the run: epochs 2-2 (1 added): a new cosine from 0.01 to 0; the next epoch starts at " \
           "lr 0.01" in " ".join(r.output.split())
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["restart_lr"] == 0.01 and info["config"]["lr"] == 0.05
    assert info["resumes"][-1]["changed"] == {"epochs": [1, 2], "restart_epoch": [None, 1], "restart_lr": [None, 0.01]}
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [e["lr"] for e in events if e["event"] == "StepDone" and e["epoch"] == 2]
    assert lrs and all(lr <= 0.01 for lr in lrs) and lrs[0] > 0.005  # the new peak is used
    # the old schedule, exactly, on request: --lr then replaces its peak
    r = invoke("--no-ui", "train", "--resume", run, "--epochs", "3", "--lr", "0.02", "--extend-schedule", "keep")
    assert r.exit_code == 0, r.output
    info = json.loads((run / "config.json").read_text())
    assert info["resumes"][-1]["changed"]["lr"] == [0.05, 0.02] and info["config"]["restart_epoch"] == 1
    # a setting that may not change is still refused, in one line (once the checkpoint is read: exit 1)
    line = error_line(invoke("--no-ui", "train", "--resume", run, "--epochs", "4", "--width", "0.5"), 1)
    assert "--width 0.5 contradicts" in line
    # --extend-schedule: one of two words, and only with --resume
    assert "restart or keep" in error_line(invoke("--no-ui", "train", "--resume", run, "--epochs", "4",
                                                  "--extend-schedule", "stretch"), 2)
    assert "goes with --resume" in error_line(invoke("--no-ui", "train", *SMALL, "--extend-schedule", "keep"), 2)


# ---------------------------------------------------------------------------- runs dir


def test_root_runs_dir_reaches_the_start_screen_and_the_commands(tmp_path, monkeypatch):
    import tui_trainer.app as app_module

    seen = []
    monkeypatch.setattr(app_module, "run_start_app", lambda runs_dir=None: seen.append(runs_dir) or 0)
    assert invoke("--runs-dir", tmp_path / "mine").exit_code == 0
    assert seen == [str(tmp_path / "mine")]
    (tmp_path / "afile").write_text("x")
    assert "is a file" in error_line(invoke("--runs-dir", tmp_path / "afile"), 2)
    (tmp_path / "mine").mkdir()
    r = invoke("--runs-dir", tmp_path / "mine", "runs")
    assert r.exit_code == 0 and "no runs in" in r.output and "mine" in r.output
