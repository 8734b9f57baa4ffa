import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torchvision.io import encode_png

from engine.config import make_config
from engine.data import (
    Augmenter,
    DataError,
    load_data,
    make_epoch_plan,
    make_synthetic,
    split_indices,
)

CLASSES = ["cat", "dog", "frog"]


def write_image_folder(root, per_class=4, splits=("train", "test"), size=32):
    g = torch.Generator().manual_seed(0)
    for split in splits:
        for c in CLASSES:
            d = root / split / c if split else root / c
            d.mkdir(parents=True)
            for i in range(per_class):
                img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
                (d / f"{i}.png").write_bytes(encode_png(img).numpy().tobytes())
    return root


def write_batches(root, n=20, shape=3072, labels=None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, 3):
        data = rng.integers(0, 256, (n, shape), dtype=np.uint8)
        lab = labels if labels is not None else list(rng.integers(0, 10, n))
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": data, b"labels": [int(v) for v in lab]}, fh, protocol=2)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"data": rng.integers(0, 256, (n, shape), dtype=np.uint8), b"labels": [1] * n}, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return root


def test_synthetic_is_seeded_and_balanced():
    a, b = make_synthetic(500, 100), make_synthetic(500, 100)
    assert a.train.x.shape == (500, 3, 32, 32) and a.train.x.dtype == torch.uint8
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert a.test is not None and len(a.test) == 100
    assert torch.bincount(a.train.y).tolist() == [50] * 10
    default = load_data("synthetic")
    assert (len(default.train), len(default.test)) == (10_000, 2_000)


def test_batches_folder(tmp_path):
    root = write_batches(tmp_path / "cifar-10-batches-py")
    for path in (root, tmp_path):  # the folder itself, or the one holding it
        b = load_data(str(path))
        assert b.kind == "batches" and b.train.x.shape == (40, 3, 32, 32)
        assert len(b.test) == 20 and b.classes[3] == "c3"


def test_batches_with_wrong_shape_are_refused(tmp_path):
    root = write_batches(tmp_path / "b", shape=1000)
    with pytest.raises(DataError, match="3072"):
        load_data(str(root))


class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + str(Boom.marker),))


def test_hostile_pickle_runs_no_code(tmp_path):
    root = write_batches(tmp_path / "b")
    Boom.marker = tmp_path / "pwned"
    with open(root / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": Boom(), b"labels": [0]}, fh)
    with pytest.raises(DataError, match="not a plain data pickle"):
        load_data(str(root))
    assert not Boom.marker.exists()


def test_image_folder_with_train_and_test(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    b = load_data(str(root))
    assert b.kind == "folder" and b.classes == tuple(CLASSES)
    assert b.train.x.shape == (12, 3, 32, 32) and len(b.test) == 12
    assert torch.bincount(b.train.y).tolist() == [4, 4, 4]


def test_image_folder_with_classes_at_top_and_resizing(tmp_path):
    root = write_image_folder(tmp_path / "imgs", splits=("",), size=40)
    b = load_data(str(root))
    assert b.test is None and len(b.train) == 12
    assert any("resized 12" in n for n in b.notes)


def test_zip_of_image_folder_matches_the_folder(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, "data/" + str(p.relative_to(root)))
    z = load_data(str(zpath))
    f = load_data(str(root), use_cache=False)
    assert z.kind == "zip"
    assert torch.equal(z.train.x, f.train.x) and torch.equal(z.train.y, f.train.y)
    assert torch.equal(z.test.x, f.test.x)


def test_decoded_images_are_cached(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs")
    first = load_data(str(root))
    cached = list((tmp_path / "cache" / "decoded").glob("*.pt"))
    assert len(cached) == 1
    import engine.data.images as images

    monkeypatch.setattr(images, "decode_many", lambda *a, **k: pytest.fail("decoded again"))
    second = load_data(str(root))
    assert torch.equal(first.train.x, second.train.x)


def test_corrupt_image_is_skipped_with_a_count(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    (root / "train" / "cat" / "bad.png").write_bytes(b"not an image")
    b = load_data(str(root))
    assert len(b.train) == 12
    assert any("skipped 1 unreadable" in n for n in b.notes)


def _mk(tmp, kind):
    if kind == "missing":
        return tmp / "missing"
    if kind == "empty":
        (tmp / "empty").mkdir()
        return tmp / "empty"
    if kind == "flat":
        (tmp / "flat").mkdir()
        (tmp / "flat" / "a.png").write_bytes(b"x")
        return tmp / "flat"
    if kind == "fakezip":
        (tmp / "fake.zip").write_bytes(b"PK not really")
        return tmp / "fake.zip"
    (tmp / "notes.txt").write_text("hi")
    return tmp / "notes.txt"


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("missing", "no such file or folder"),
        ("empty", "no class sub-folders"),
        ("flat", "no class sub-folders"),
        ("fakezip", "not a readable zip"),
        ("text", "not a zip"),
    ],
)
def test_bad_sources_give_one_line_errors(tmp_path, kind, fragment):
    with pytest.raises(DataError) as err:
        load_data(str(_mk(tmp_path, kind)))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_split_is_stratified_seeded_and_disjoint():
    y = torch.arange(1000) % 10
    tr, va, notes = split_indices(y, None, None, seed=1)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    assert np.bincount(y[va].numpy()).tolist() == [10] * 10
    tr2, va2, _ = split_indices(y, None, None, seed=1)
    assert np.array_equal(va, va2)
    _, va3, _ = split_indices(y, None, None, seed=2)
    assert not np.array_equal(va, va3)
    tr4, va4, _ = split_indices(y, 200, 300, seed=1)
    assert len(va4) == 200 and len(tr4) == 300
    assert np.bincount(y[tr4].numpy()).tolist() == [30] * 10
    with pytest.raises(DataError, match="--val-size"):
        split_indices(y, 1000, None, seed=1)


def test_augmentation_shapes_and_determinism():
    cfg = make_config("paper")
    dev = torch.device("cpu")
    x = make_synthetic(64, 8).train.x
    aug = Augmenter(cfg.crop_padding, dev)

    def run(epoch):
        plan = make_epoch_plan(64, 32, 0, epoch, cfg, dev)
        sl = slice(0, 32)
        return aug(x[plan.order[sl]], plan.offsets[sl], plan.flips[sl], plan.gray[sl], plan.autocontrast[sl])

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (32, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_and_flip_move_pixels_as_expected():
    dev = torch.device("cpu")
    aug = Augmenter(4, dev, mean=(0, 0, 0), std=(1, 1, 1), use_gray=False, use_autocontrast=False)
    x = torch.arange(32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8).view(1, 1, 32, 32).expand(1, 3, 32, 32).contiguous()
    no = torch.zeros(1, dtype=torch.bool)
    centre = aug(x, torch.tensor([[4, 4]]), no, no, no)
    assert torch.allclose(centre, x.float() / 255)
    shifted = aug(x, torch.tensor([[0, 0]]), no, no, no)  # window starts 4 px up-left: zero padding enters
    assert torch.all(shifted[..., :4, :] == 0) and torch.allclose(shifted[..., 4:, 4:], x[..., :28, :28].float() / 255)
    flipped = aug(x, torch.tensor([[4, 4]]), torch.ones(1, dtype=torch.bool), no, no)
    assert torch.allclose(flipped, x.flip(3).float() / 255)


def test_cifar10_through_torchvision_and_offline_message(monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    class Fake:
        def __init__(self, root, train=True, download=True):
            n = 50 if train else 10
            self.data = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = list(CIFAR10_CLASSES)

    from engine.data import CIFAR10_CLASSES

    monkeypatch.setattr(tvd, "CIFAR10", Fake)
    b = load_data("cifar10")
    assert b.kind == "cifar10" and b.train.x.shape == (50, 3, 32, 32) and len(b.test) == 10
    assert torch.equal(b.train.x[0].permute(1, 2, 0), torch.from_numpy(Fake("x").data[0]))

    class Offline:
        def __init__(self, *a, **k):
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DataError) as err:
        load_data("cifar10")
    assert "--data" in str(err.value) and "could not be downloaded" in str(err.value) and "\n" not in str(err.value)


def test_a_new_source_format_is_one_registry_entry(tmp_path, monkeypatch):
    """check_source, load_data and prediction all dispatch through engine.data.FORMATS."""
    from engine.data import FORMATS, DataBundle, ImageSet, SourceFormat, check_source, read_predict_inputs
    from engine.data.format import Unlabelled

    def load(req):
        x = np.zeros((4, 3, 32, 32), dtype=np.uint8)
        return DataBundle(ImageSet.from_numpy(x, np.array([0, 1, 0, 1])), None, ("a", "b"), str(req.path), "npy")

    def unlabelled(path, arg):
        return Unlabelled(np.full((2, 3, 32, 32), 7, dtype=np.uint8), [f"{arg}#0", f"{arg}#1"], [], 0, [0, 1], 2)

    (tmp_path / "images.npy").write_bytes(b"whatever")
    assert "not a zip" in check_source(str(tmp_path / "images.npy"))
    npy = SourceFormat("npy", recognise=lambda p: p.suffix == ".npy", load=load, unlabelled=unlabelled)
    monkeypatch.setattr("engine.data.sources.FORMATS", [npy, *FORMATS])
    assert check_source(str(tmp_path / "images.npy")) is None
    bundle = load_data(str(tmp_path / "images.npy"))
    assert (bundle.kind, len(bundle.train), bundle.classes) == ("npy", 4, ("a", "b"))
    got = read_predict_inputs([str(tmp_path / "images.npy")])
    assert got.names == [f"{tmp_path / 'images.npy'}#0", f"{tmp_path / 'images.npy'}#1"] and int(got.x[0, 0, 0, 0]) == 7


def test_predict_inputs_decode_through_the_training_decoder(tmp_path, monkeypatch):
    """A zip of images for predict is decoded by the same code as training's images (one
    decode_many call for all its members, not one per image)."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    import engine.data.images as images
    from engine.data.predict import read_predict_inputs

    path = tmp_path / "many.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for i in range(50):
            b = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(b, "PNG")
            z.writestr(f"img/{i:03d}.png", b.getvalue())
    calls = []
    real = images.decode_many

    def counted(items, read, progress=None):
        calls.append(len(items))
        return real(items, read, progress)

    monkeypatch.setattr(images, "decode_many", counted)
    r = read_predict_inputs([str(path)])
    assert r.x.shape == (50, 3, 32, 32) and calls == [50]
