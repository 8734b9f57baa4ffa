"""`cifar-tui eval`, `predict` and `runs`, including their error paths."""

import csv
import json
import os
import pickle

import numpy as np
import pytest
import torch
from torchvision.io import encode_png

from engine.data import make_synthetic
from tests.procs import error_line, invoke


@pytest.fixture(scope="module")
def run_dir(finished_run, tmp_path_factory):
    """This module's own copy of the session's finished run (evaluations get stored in it)."""
    import shutil

    dst = tmp_path_factory.mktemp("eval-runs") / finished_run.name
    shutil.copytree(finished_run, dst)
    return dst


def test_eval_json_and_stored_result(run_dir):
    r = invoke("eval", run_dir, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["images"] == 2000 and res["data_source"] == "synthetic:test"
    cm = np.array(res["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 2000
    assert res["accuracy"] == pytest.approx(np.trace(cm) / 2000)
    assert res["per_class_accuracy"][3] == pytest.approx(cm[3, 3] / cm[3].sum())
    assert res["classes"][0] == "airplane" and res["checkpoint"].endswith("best.pt")
    stored = json.loads((run_dir / "checkpoints" / "best.eval.json").read_text())
    assert stored["synthetic:test"]["accuracy"] == res["accuracy"]
    table = invoke("runs", run_dir.parent)
    assert table.exit_code == 0 and run_dir.name in table.output
    assert f"{100 * res['accuracy']:.2f}%" in table.output  # test accuracy shown next time


def test_eval_table(run_dir):
    r = invoke("eval", run_dir / "checkpoints" / "last.pt")
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "confusion matrix" in r.output and "truck" in r.output


def test_eval_and_predict_agree(run_dir, tmp_path):
    test = make_synthetic().test
    pkl = tmp_path / "unlabelled.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump({b"data": test.x.numpy().reshape(len(test), 3072)}, fh)
    out = tmp_path / "pred.csv"
    r = invoke("predict", run_dir, pkl, "--output", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["ID", "Labels"] and len(rows) == 2001
    assert [int(row[0]) for row in rows[1:]] == list(range(2000))
    pred = torch.tensor([int(row[1]) for row in rows[1:]])
    acc = (pred == test.y).float().mean().item()
    res = json.loads(invoke("eval", run_dir, "--json").output)
    assert acc == pytest.approx(res["accuracy"], abs=1e-9)


def test_predict_images_folder_zip_with_table_and_resize(run_dir, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, size in enumerate((32, 32, 48)):
        img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        (folder / f"{i}.png").write_bytes(encode_png(img).numpy().tobytes())
    r = invoke("predict", run_dir, folder / "0.png", folder, "--top-k", "2")
    assert r.exit_code == 0, r.output
    assert "resized 1 image" in r.output and "#2" in r.output and "%" in r.output
    import zipfile

    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        zf.write(folder / "1.png", "a/1.png")
    out = tmp_path / "z.csv"
    assert invoke("predict", run_dir, tmp_path / "x.zip", "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 2


def test_eval_on_a_folder_with_other_classes_is_refused(run_dir, tmp_path):
    for c in ("a", "b"):
        (tmp_path / "d" / "test" / c).mkdir(parents=True)
        (tmp_path / "d" / "train" / c).mkdir(parents=True)
        for split in ("train", "test"):
            img = torch.zeros((3, 32, 32), dtype=torch.uint8)
            (tmp_path / "d" / split / c / "0.png").write_bytes(encode_png(img).numpy().tobytes())
    assert "differ from the checkpoint" in error_line(invoke("eval", run_dir, "--data", tmp_path / "d"))


def test_eval_on_a_training_only_zip_says_so(run_dir, tmp_path):
    import zipfile

    img = encode_png(torch.zeros((3, 32, 32), dtype=torch.uint8)).numpy().tobytes()
    with zipfile.ZipFile(tmp_path / "t.zip", "w") as zf:
        for c in ("cat", "dog"):
            zf.writestr(f"train/{c}/0.png", img)
    assert "no test split" in error_line(invoke("eval", run_dir, "--data", tmp_path / "t.zip"))


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Evil.marker}",))


def test_bad_checkpoints_give_one_line_errors(run_dir, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(2000))
    assert "not a readable checkpoint" in error_line(invoke("eval", junk))
    good = (run_dir / "checkpoints" / "best.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    assert "corrupt or truncated" in error_line(invoke("eval", tmp_path / "trunc.pt"))
    Evil.marker = tmp_path / "pwned"
    torch.save({"format": "cifar-tui-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    assert "could run code" in error_line(invoke("predict", tmp_path / "evil.pt", junk))
    assert not Evil.marker.exists()
    ck = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    ck["arch"] = {**ck["arch"], "name": "ResNet50"}
    torch.save(ck, tmp_path / "other_arch.pt")
    assert "architecture" in error_line(invoke("eval", tmp_path / "other_arch.pt"))
    ck = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    ck["arch"] = {**ck["arch"], "width": 0.25}
    torch.save(ck, tmp_path / "other_width.pt")
    assert "do not fit" in error_line(invoke("eval", tmp_path / "other_width.pt"))
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    assert "not a cifar-tui checkpoint" in error_line(invoke("eval", tmp_path / "foreign.pt"))
    assert "no such run folder or checkpoint" in error_line(invoke("eval", tmp_path / "missing.pt"), 2)


def test_predict_bad_inputs(run_dir, tmp_path):
    with open(tmp_path / "wrong.pkl", "wb") as fh:
        pickle.dump({"data": np.zeros((4, 100), dtype=np.uint8)}, fh)
    assert "shape" in error_line(invoke("predict", run_dir, tmp_path / "wrong.pkl"))
    assert "no such file" in error_line(invoke("predict", run_dir, tmp_path / "nothing.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    assert "cannot decode" in error_line(invoke("predict", run_dir, tmp_path / "broken.png"))
    assert "--top-k" in error_line(invoke("predict", run_dir, tmp_path / "wrong.pkl", "--top-k", "0"), 2)
    assert "is a folder" in error_line(invoke("predict", run_dir, tmp_path / "wrong.pkl", "-o", tmp_path), 2)


def test_runs_on_empty_and_bad_folders(tmp_path):
    r = invoke("runs", tmp_path)
    assert r.exit_code == 0 and "no runs" in r.output
    (tmp_path / "file").write_text("x")
    assert "not a runs folder" in error_line(invoke("runs", tmp_path / "file"))
    assert "no such folder" in error_line(invoke("runs", tmp_path / "nope"))
