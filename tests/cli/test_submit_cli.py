"""A submission that scores: `predict` keeps a pickle's own IDs, `check-submission` checks a CSV."""

import csv
import pickle

import numpy as np
import pytest

from tests.procs import error_line, invoke

IDS = [907, 12, 5000, 3, 44, 123456, 8]  # shuffled, not contiguous, as competition files are


def write_pickle(path, n, ids=None, key=b"ids"):
    obj = {b"data": np.random.default_rng(0).integers(0, 256, (n, 3072), dtype=np.uint8)}
    if ids is not None:
        obj[key] = ids
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_predict_writes_the_pickles_own_ids_and_checks_them(finished_run, tmp_path):
    pkl = write_pickle(tmp_path / "test.pkl", len(IDS), np.array(IDS))
    out = tmp_path / "sub.csv"
    r = invoke("predict", finished_run, pkl, "--output", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["ID", "Labels"] and [int(row[0]) for row in rows[1:]] == IDS  # row for row
    assert f"ok: 7 rows match the IDs of {pkl}" in r.output
    r = invoke("predict", finished_run, write_pickle(tmp_path / "s.pkl", 3, [5, 1, 9], key="ids"), "-o", out,
               "--full")
    assert r.exit_code == 0, r.output
    assert [int(row[0]) for row in list(csv.reader(out.open()))[1:]] == [5, 1, 9]
    assert "check-submission SUBMISSION.csv --against" in r.output  # not a submission: the command offered


def test_predict_without_ids_keeps_positions(finished_run, tmp_path):
    out = tmp_path / "p.csv"
    r = invoke("predict", finished_run, write_pickle(tmp_path / "p.pkl", 3), "-o", out)
    assert r.exit_code == 0, r.output
    assert [row[0] for row in list(csv.reader(out.open()))[1:]] == ["0", "1", "2"]
    assert "ok:" not in r.output and "check-submission" not in r.output


@pytest.mark.parametrize("ids, words", [([4, 7, 4], "ID 4 appears more than once"),
                                        ([1, 2], "2 IDs for 3 images"),
                                        ([1, "x", 3], "not all whole numbers")])
def test_predict_refuses_bad_ids(finished_run, tmp_path, ids, words):
    out = tmp_path / "bad.csv"
    r = invoke("predict", finished_run, write_pickle(tmp_path / "bad.pkl", 3, ids), "-o", out)
    assert words in error_line(r, 2) and not out.exists()


@pytest.fixture
def pkl(tmp_path):
    return write_pickle(tmp_path / "test.pkl", 5, IDS[:5])


def sub(tmp_path, pairs, header="ID,Labels"):
    p = tmp_path / "sub.csv"
    p.write_text(header + "\n" + "".join(f"{i},{lab}\n" for i, lab in pairs))
    return p


@pytest.mark.parametrize("pairs, header, words", [
    ([(i, 1) for i in IDS[:4]], "ID,Labels", ["ID 44 of the pickle is missing"]),
    ([(i, 1) for i in IDS[:5]] + [(12, 2)], "ID,Labels", ["ID 12 appears twice (lines 3 and 7)"]),
    ([(i, 1) for i in IDS[:5]] + [(77, 2)], "ID,Labels", ["ID 77 (line 7) is not an ID of the pickle"]),
    ([(i, 1) for i in IDS[:5]], "id,label", ["the header is 'id,label'; it must be exactly ID,Labels"]),
    ([(i, 10 if i == 12 else 1) for i in IDS[:5]], "ID,Labels", ["line 3: label '10' is not a class index 0-9"]),
])
def test_check_submission_names_each_problem(tmp_path, pkl, pairs, header, words):
    r = invoke("check-submission", sub(tmp_path, pairs, header), "--against", pkl)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.splitlines() == words


def test_check_submission_ok_and_bad_pickles(tmp_path, pkl):
    r = invoke("check-submission", sub(tmp_path, [(i, 2) for i in reversed(IDS[:5])]), "--against", pkl)
    assert r.exit_code == 0 and r.output.strip() == f"ok: 5 rows match the IDs of {pkl}"
    assert "no such file" in error_line(invoke("check-submission", pkl, "--against", tmp_path / "none.pkl"), 2)
    dup = write_pickle(tmp_path / "dup.pkl", 2, [3, 3])
    assert "appears more than once" in error_line(invoke("check-submission", pkl, "--against", dup), 2)


def test_eval_on_the_runs_validation_split(run_copy):
    import json

    finished_run = run_copy
    r = invoke("eval", finished_run, "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["images"] == 200 and res["data_source"] == "synthetic:val"  # the run's --val-size 200
    # stored under its own split, never as the checkpoint's test accuracy
    from engine.runs import latest_evaluation, read_run

    assert latest_evaluation(finished_run / "checkpoints" / "best.pt", split="val").source == "synthetic:val"
    assert latest_evaluation(finished_run / "checkpoints" / "best.pt", split="test") is None
    best = next(c for c in read_run(finished_run).checkpoints if c.name == "best.pt")
    assert best.test_acc is None and not best.test_stale
    assert "choose test or val" in error_line(invoke("eval", finished_run, "--split", "train"), 2)


def test_val_split_is_the_runs_own_split(tmp_path):
    import torch
    from torchvision.io import encode_png

    from engine.data import make_synthetic, split_indices
    from engine.evaluate import eval_images

    train = make_synthetic().train
    cfg = {"data": "synthetic", "val_size": 200, "subset": 600, "seed": 0}
    images, described, _ = eval_images(None, {"config": cfg}, "val")
    train_idx, val_idx, _ = split_indices(train.y, 200, 600, 0)
    assert described == "synthetic:val" and torch.equal(images.x, train.x[torch.as_tensor(val_idx)])
    assert not set(val_idx) & set(train_idx)  # none of the images it trained on
    for i in range(12):  # a training-only folder (no test/): its own seeded split
        d = tmp_path / "only" / "train" / ("cat", "dog")[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:02d}.png").write_bytes(encode_png(train.x[i]).numpy().tobytes())
    cfg = {"data": str(tmp_path / "only"), "val_size": 4, "seed": 3}
    images, described, bundle = eval_images(None, {"config": cfg}, "val")
    assert described.endswith(":val") and len(images) == 4 and bundle.test is None
    with pytest.raises(Exception, match="no test split"):
        eval_images(None, {"config": cfg})


def test_eval_val_split_of_a_run_without_one():
    from engine.data import DataError
    from engine.evaluate import eval_images

    with pytest.raises(DataError, match="without a validation split"):
        eval_images("synthetic", {"config": {"data": "synthetic", "val_size": 0, "seed": 0}}, "val")


@pytest.mark.parametrize("ids, words", [("abc", "'ids' is str"), (np.zeros((3, 2), dtype=np.int64), "shape (3, 2)"),
                                        (np.array([1.0, 2.0, 3.0]), "float64 array")])
def test_check_submission_refuses_ids_that_are_not_a_list(tmp_path, ids, words):
    bad = write_pickle(tmp_path / "bad.pkl", 3, ids)
    assert words in error_line(invoke("check-submission", bad, "--against", bad), 2)
