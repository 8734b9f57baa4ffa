"""Hostile and broken data: every bad input gives a one-line DataError or a skip note.

The files are built here, small and fast. What could crash or exhaust the
process (native decoders, memory bombs) runs in one subprocess, so a segfault
fails these tests instead of killing pytest.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    DataError,
    load_data,
    load_predict_inputs,
    match_classes,
    require_training_split,
)

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "frog"]


# ------------------------------------------------------------------ file builders


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def good_png(seed: int = 0) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, depth: int, colour: int, stream: bytes) -> bytes:
    """A PNG from an already compressed IDAT stream (CRCs correct)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def short_idat_png() -> bytes:
    """32x32 RGB declared, but the zlib stream holds 97 of the 3,104 bytes: 69 bytes in all."""
    return raw_png(32, 32, 8, 2, zlib.compress(b"\x00" * 97))


def zero_png(width: int, height: int, depth: int, colour: int, channels: int) -> bytes:
    """A valid all-black PNG of any size, built in milliseconds: after a full flush,
    deflate encodes the same block of zero rows to the same bytes, so one block is
    repeated; zlib's Adler-32 of n zero bytes is (n mod 65521) << 16 | 1."""
    row = 1 + (width * channels * depth + 7) // 8
    rows = 1
    while rows * 2 <= height and rows * row < 8 << 20 and height % (rows * 2) == 0:
        rows *= 2
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes(row * rows)) + deflate.flush(zlib.Z_FULL_FLUSH)
    total = row * height
    stream = b"\x78\xda" + block * (height // rows) + deflate.flush() + struct.pack(">I", (total % 65521) << 16 | 1)
    return raw_png(width, height, depth, colour, stream)


def huge_jpeg() -> bytes:
    """A small real JPEG whose SOF0 marker is patched to claim 65,000 x 65,000 pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "JPEG", optimize=False, progressive=False)
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    return bytes(raw)


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def good_images(prefix: str = "train", classes=("cat", "dog"), per_class: int = 2) -> dict[str, bytes]:
    return {f"{prefix}/{c}/{i}.png": good_png(10 * ci + i) for ci, c in enumerate(classes) for i in range(per_class)}


def write_batches(root: Path, labels=None, test_labels=None, names=None, n: int = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in (1, 2):
        lab = labels if labels is not None else [int(v) for v in rng.integers(0, 10, n)]
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": lab}, fh, protocol=2)
    with open(root / "test_batch", "wb") as fh:
        tl = test_labels if test_labels is not None else [1] * n
        pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": tl}, fh, protocol=2)
    if names is not None:
        with open(root / "batches.meta", "wb") as fh:
            pickle.dump({b"label_names": names}, fh, protocol=2)
    return root


def one_line_error(path, match: str) -> str:
    with pytest.raises(DataError) as err:
        load_data(str(path), use_cache=False)
    msg = str(err.value)
    assert match in msg and "\n" not in msg, msg
    return msg


# ------------------------------------------- native crashes and memory bombs (subprocess)

_PROBE = textwrap.dedent(
    """
    import json, sys, time
    import torch  # before measuring: engine.data imports it when images are first loaded
    from engine.data import DataError, load_data

    def kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the peak (VmHWM) restarts from the current RSS
            return True
        except OSError:
            return False

    results = {}
    for path in sys.argv[1:]:
        measured = reset_peak()
        before = kib("VmRSS") if measured else 0
        t = time.perf_counter()
        try:
            b = load_data(path, use_cache=False)
            out = {"train": len(b.train), "notes": b.notes}
        except DataError as e:
            out = {"error": str(e)}
        out["seconds"] = time.perf_counter() - t
        out["peak_growth_mb"] = (kib("VmHWM") - before) / 1024 if measured else None
        results[path] = out
    print(json.dumps(results))
    """
)


def memo_bomb_pickle() -> bytes:
    """9 bytes that make CPython's C unpickler allocate and clear 512 MB of memo table."""
    return b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 25) + b"."


def object_array_pickle() -> bytes:
    """{'data': array, 'labels': [0]} where the array is numpy's own pickle form of an
    object-dtype array whose state names 10**9 elements but holds one: numpy segfaults."""
    array = (b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"  # empty array
             b"(K\x01J\x00\xca\x9a;\x85"  # state: version 1, shape (10**9,)
             b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R"  # dtype('O8') ...
             b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"  # ... with its state
             b"\x89]K\x01atb")  # not Fortran, data [1]; BUILD
    return b"\x80\x02}(C\x04data" + array + b"C\x06labels]K\x00au."


def nested_list_pickle(rows: int = 10) -> bytes:
    nested: list = [1]
    for _ in range(10):
        nested = [nested] * 10  # 10**10 elements for numpy; a few hundred bytes pickled
    data = np.zeros((rows, 3072), dtype=np.uint8)
    return pickle.dumps({b"data": data, b"labels": nested}, protocol=2)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    folder = write_folder(root / "images", {
        **good_images(),
        "train/cat/short.png": short_idat_png(),
        "train/cat/5000x5000.png": zero_png(5000, 5000, 8, 2, 3),  # over our limit, under Pillow's
        "train/dog/claims-65000.jpg": huge_jpeg(),
        "train/dog/50000x50000.png": zero_png(50000, 50000, 1, 0, 1),
    })
    sources = {"images": folder}
    for name, raw in (("memo", memo_bomb_pickle()), ("object", object_array_pickle()),
                      ("nested", nested_list_pickle())):
        d = write_batches(root / name)
        (d / "data_batch_1").write_bytes(raw)
        sources[name] = d
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *map(str, sources.values())], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"the loader process died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: results[str(path)] for name, path in sources.items()}


def test_files_sizes_are_what_the_issue_describes():
    assert len(short_idat_png()) == 69
    assert len(zero_png(50000, 50000, 1, 0, 1)) < 2_000_000


def test_hostile_images_are_skipped_not_crashed_and_nothing_big_is_allocated(probe):
    r = probe["images"]
    assert r.get("train") == 4, r  # the 4 good images survive
    notes = " | ".join(r["notes"])
    assert "skipped 1 unreadable image(s) in train/: cat/short.png" in notes
    # the 65,000^2 JPEG, the 5,000^2 and 50,000^2 PNGs: refused from their headers
    assert "skipped 3 oversized image(s) in train/: cat/5000x5000.png" in notes
    assert "over the limit of 16,777,216 (set CIFAR_TUI_MAX_IMAGE_PIXELS to raise it)" in notes
    assert r["seconds"] < 20
    if r["peak_growth_mb"] is not None:
        assert r["peak_growth_mb"] < 60, r  # decoding the 5000x5000 PNG alone takes 75 MB


@pytest.mark.parametrize("name, fragment", [
    ("memo", "found NoneType"),  # what the 9 bytes hold, once loaded without the 512 MB
    ("object", "not a plain data pickle"),
    ("nested", "a label is list"),
])
def test_pickle_bombs_are_refused_without_allocating(probe, name, fragment):
    r = probe[name]
    assert fragment in r.get("error", ""), r
    assert "\n" not in r["error"] and r["seconds"] < 10
    if r["peak_growth_mb"] is not None:
        assert r["peak_growth_mb"] < 60, r


# ------------------------------------------------------------- decoding details


def test_sixteen_bit_pngs_keep_their_brightness(tmp_path):
    grey16 = raw_png(32, 32, 16, 0, zlib.compress((b"\x00" + b"\x80\x80" * 32) * 32))
    rgb16 = raw_png(32, 32, 16, 2, zlib.compress((b"\x00" + b"\x80\x80" * 96) * 32))
    files = {"train/cat/grey16.png": grey16, "train/dog/rgb16.png": rgb16}
    b = load_data(str(write_folder(tmp_path / "d", files)), use_cache=False)
    assert len(b.train) == 2
    for img in b.train.x:
        assert abs(img.float().mean().item() - 128) < 2  # not clipped to white, not wrapped to black


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {**good_images(), "train/cat/anim.gif": buf.getvalue()}
    root = write_folder(tmp_path / "d", files)
    b = load_data(str(root), use_cache=False)
    assert b.train.x.shape == (5, 3, 32, 32) and not b.notes
    red = b.train.x[b.train.y == 0][2]  # cat/0.png, cat/1.png, cat/anim.gif
    assert red[0].float().mean() > 240 and red[1:].float().mean() < 15
    x, names, notes = load_predict_inputs([str(root / "train" / "cat" / "anim.gif")])
    assert x.shape == (1, 3, 32, 32) and names == [str(root / "train" / "cat" / "anim.gif")]


# ------------------------------------------------------------------- size limits


def test_zip_image_entry_over_the_limit_is_skipped_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUI_MAX_IMAGE_MB", "1")
    zpath = tmp_path / "d.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good_images().items():
            zf.writestr(name, data)
        zf.writestr("train/cat/zeros.png", bytes(2 << 20))  # 2 MiB unpacked, ~2 KB packed
    read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, n, *a: pytest.fail("unpacked") if "zeros" in str(getattr(n, "filename", n)) else read(self, n, *a))
    b = load_data(str(zpath), use_cache=False)
    assert len(b.train) == 4
    assert any("skipped 1 oversized image(s) in train/: cat/zeros.png" in n and "CIFAR_TUI_MAX_IMAGE_MB" in n for n in b.notes), b.notes


def test_zip_batch_entry_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUI_MAX_PICKLE_MB", "1")
    src = write_batches(tmp_path / "b", n=400)  # 1.2 MB per batch
    zpath = tmp_path / "b.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.iterdir()):
            zf.write(p, f"cifar-10-batches-py/{p.name}")
    msg = one_line_error(zpath, "CIFAR_TUI_MAX_PICKLE_MB")
    assert "data_batch_1" in msg and "limit" in msg
    one_line_error(src, "CIFAR_TUI_MAX_PICKLE_MB")  # the same folder, unzipped
    monkeypatch.setenv("CIFAR_TUI_MAX_PICKLE_MB", "lots")
    one_line_error(src, "CIFAR_TUI_MAX_PICKLE_MB='lots' is not a positive whole number")


def test_array_shape_bigger_than_its_data_is_refused(tmp_path):
    root = write_batches(tmp_path / "b")
    raw = pickle.dumps({b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [0]}, protocol=2)
    # claim 10**6 rows for the 3,072 bytes that follow
    raw = raw.replace(b"K\x01M\x00\x0c\x86", b"J@B\x0f\x00M\x00\x0c\x86")
    (root / "data_batch_1").write_bytes(raw)
    one_line_error(root, "needs 3,072,000,000 bytes but the pickle holds 3,072")


def test_pickles_from_other_pythons_and_protocols_still_load(tmp_path):
    root = write_batches(tmp_path / "b")
    with open(root / "data_batch_2", "wb") as fh:
        pickle.dump({"data": np.full((3, 3072), 7, dtype=np.uint8), "labels": np.array([1, 2, 3])}, fh, protocol=5)
    # What Python 2 wrote for a CIFAR batch (protocol 0, str keys, numpy.core names).
    py2 = (b"(dp0\nS'data'\np1\ncnumpy.core.multiarray\n_reconstruct\np2\n(cnumpy\nndarray\np3\n(I0\ntp4\nS'b'\np5\n"
           b"tp6\nRp7\n(I1\n(I2\nI3072\ntp8\ncnumpy\ndtype\np9\n(S'u1'\np10\nI0\nI1\ntp11\nRp12\n(I3\nS'|'\np13\n"
           b"NNNI-1\nI-1\nI0\ntp14\nbI00\nS'" + b"\\x05" * 6144 + b"'\np15\ntp16\nbsS'labels'\np17\n(lp18\nI4\naI5\nas.")
    (root / "data_batch_1").write_bytes(py2)
    b = load_data(str(root), use_cache=False)
    assert b.train.y.tolist() == [4, 5, 1, 2, 3]
    assert int(b.train.x[0].max()) == 5 and int(b.train.x[2].min()) == 7


# ------------------------------------------------------ broken cifar-10-batches-py folders


def _labels(kind):
    return {
        "strings": ["a", "b"] * 5,
        "floats": [1.0] * 10,
        "bools": [True] * 10,
        "negative": [-1] + [0] * 9,
        "nested": [[0]] * 10,
        "too many": [0] * 11,
    }[kind]


@pytest.mark.parametrize("kind, fragment", [
    ("strings", "a label is str 'a'"),
    ("floats", "a label is float 1.0"),
    ("bools", "a label is bool True"),
    ("negative", "label -1 is not a class index"),
    ("nested", "a label is list"),
    ("too many", "11 labels for 10 images"),
])
def test_bad_labels_are_refused(tmp_path, kind, fragment):
    one_line_error(write_batches(tmp_path / "b", labels=_labels(kind)), fragment)


def test_batch_that_is_a_folder_is_refused(tmp_path):
    root = write_batches(tmp_path / "b")
    (root / "data_batch_2").unlink()
    (root / "data_batch_2").mkdir()
    one_line_error(root, "data_batch_2: a folder, not a regular file")


@pytest.mark.parametrize("names, fragment", [
    (7, "'label_names' is int 7, not a list of class names"),
    ([b"only"], "names 1 class(es)"),
    ([b"a", b"b", b"a"], "names a more than once"),
    ([b"a", b"b", b"c"], "label 9 is outside 0..2 (batches.meta names 3 classes)"),
])
def test_bad_batches_meta_is_refused(tmp_path, names, fragment):
    one_line_error(write_batches(tmp_path / "b", labels=[9] + [0] * 9, names=names), fragment)


@pytest.mark.parametrize("zipped", [False, True])
def test_test_batch_labels_outside_the_classes_are_refused(tmp_path, zipped):
    root = write_batches(tmp_path / "b", test_labels=[10] * 10)
    src = root
    if zipped:
        src = tmp_path / "b.zip"
        with zipfile.ZipFile(src, "w") as zf:
            for p in sorted(root.iterdir()):
                zf.write(p, p.name)
    one_line_error(src, "test_batch: label 10 is outside 0..9")


# ------------------------------------------------------------------- special files

fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


@fifo_only
@pytest.mark.timeout(30)
def test_named_pipes_are_refused_or_skipped_never_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.zip")
    one_line_error(tmp_path / "pipe.zip", "a named pipe (FIFO), not a file or folder")
    root = write_folder(tmp_path / "d", good_images())
    os.mkfifo(root / "train" / "cat" / "x.png")
    b = load_data(str(root), use_cache=False)
    assert len(b.train) == 4
    assert any("skipped 1 unreadable image(s) in train/: cat/x.png (a named pipe (FIFO)" in n for n in b.notes), b.notes
    with pytest.raises(DataError, match="a named pipe"):
        load_predict_inputs([str(tmp_path / "pipe.zip")])
    x, names, notes = load_predict_inputs([str(root / "train" / "cat")])
    assert x.shape[0] == 2 and len(names) == 2 and "skipped 1 unreadable" in notes[0]


# ---------------------------------------------------------------- test-only sources


@pytest.mark.parametrize("zipped", [False, True])
def test_test_only_source_can_be_evaluated_not_trained_on(tmp_path, zipped):
    from engine.evaluate import eval_images

    root = write_folder(tmp_path / "d", good_images("cifar10/test", CLASSES))
    src = root
    if zipped:
        src = tmp_path / "d.zip"
        with zipfile.ZipFile(src, "w") as zf:
            for p in sorted(root.rglob("*.png")):
                zf.write(p, str(p.relative_to(root)))
    for use_cache in (True, True):  # the second load comes from the decoded-image cache
        b = load_data(str(src), use_cache=use_cache)
        assert b.test_only and len(b.train) == 0 and len(b.test) == 6 and b.classes == tuple(CLASSES)
    with pytest.raises(DataError, match="has only a test split .* cannot be used for training"):
        require_training_split(b)
    images, described, _ = eval_images(str(src), {"classes": CLASSES})
    assert len(images) == 6 and described.endswith(":test")


def test_require_training_split_passes_a_normal_source():
    from engine.data import make_synthetic

    require_training_split(make_synthetic(20, 10))


# ------------------------------------------------------------------ class matching


def test_match_classes_by_name():
    remap, note = match_classes(["a", "b", "c"], ["a", "b", "c"], "d")
    assert remap.tolist() == [0, 1, 2] and note is None
    remap, note = match_classes(["c", "a", "b"], ["a", "b", "c"], "d")
    assert remap.tolist() == [2, 0, 1] and "mapped 3 classes by name" in note
    remap, note = match_classes(["a", "c"], ["a", "b", "c"], "d")
    assert remap.tolist() == [0, 2] and "not b" in note and "mapped 2 classes by name" in note
    with pytest.raises(DataError, match="differ from the checkpoint's: it has no class zebra"):
        match_classes(["a", "zebra"], ["a", "b", "c"], "d")


def test_eval_images_remaps_labels_to_the_checkpoint(tmp_path):
    from engine.evaluate import eval_images

    root = write_folder(tmp_path / "d", good_images("test", ("dog", "cat")) | good_images("train", ("dog", "cat")))
    images, _, bundle = eval_images(str(root), {"classes": ["frog", "dog", "cat"]})
    assert bundle.classes == ("cat", "dog")  # the data's own order (sorted folders)
    assert sorted(images.y.tolist()) == [1, 1, 2, 2]  # dog -> 1, cat -> 2 in the checkpoint
    assert any("mapped 2 classes by name" in n for n in bundle.notes)
    with pytest.raises(DataError, match="it has no class dog"):
        eval_images(str(root), {"classes": ["cat", "frog"]})


# ------------------------------------------------------------------ predict inputs


def test_predict_skips_an_undecodable_image_and_names_only_the_decoded(tmp_path):
    root = write_folder(tmp_path / "d", {"a.png": good_png(1), "b.png": b"not an image", "c.png": good_png(2)})
    x, names, notes = load_predict_inputs([str(root)])
    assert x.shape == (2, 3, 32, 32) and names == [str(root / "a.png"), str(root / "c.png")]
    assert notes[0].startswith(f"skipped 1 unreadable image(s): {root / 'b.png'}")
    with pytest.raises(DataError, match="cannot decode any of the 1 image"):
        load_predict_inputs([str(root / "b.png")])


def test_predict_says_what_a_non_pickle_file_is_not(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        load_predict_inputs([str(tmp_path / "notes.txt")])
    assert "not an image, folder, zip or CIFAR-style pickle" in str(err.value)
    assert "invalid load key" not in str(err.value) and "\n" not in str(err.value)
