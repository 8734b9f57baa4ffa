#!/usr/bin/env python
"""Run every hostile or broken input of docs/reliability.md through the real command line
and print the table: the case, the command, what the command printed, its exit code.

    python scripts/hostile_inputs.py > /tmp/table.md

It builds the files in a temporary folder (the builders of
tests/engine/test_hostile_data.py), trains one tiny run there (synthetic data, a
few seconds), and runs each command in its own process, from that folder, so the
paths in the table are short: ``R`` is the run folder. The printed line is the
``error:`` line of a refused command, else its first ``warning:`` or ``note:``
line, else the line the case names. Takes a few minutes on a laptop.

    python scripts/hostile_inputs.py --check docs/reliability.md > /tmp/table.md

also compares each case with the document's row of the same name: exit 1, the cases
named on stderr, where a command's exit code is not the documented one (a printed
line that differs is named there too, as a note: run folders carry the time).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "engine")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from test_hostile_data import (  # noqa: E402
    good_images, huge_jpeg, nested_list_pickle, raw_png, short_idat_png, write_batches, write_folder, zero_png,
)

Case = tuple[str, list[str], Optional[str]]  # what, the command's arguments, the line to show (a marker)


def sh(work: Path, args: list[str], env: dict) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "tui_trainer", *args], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr


def pick(out: str, code: int, marker: Optional[str]) -> str:
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    for prefix in (("error:",) if code else ()) + ("warning:", "note:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found and (marker is None or prefix == "error:"):
            return found[0]
    if marker is not None:
        found = [line for line in lines if marker in line]
        if found:
            return found[0]
    return "(nothing printed besides the result)" if code == 0 else (lines[-1] if lines else "")


def checkpoint_variant(src: Path, dst: Path, change: Callable[[dict], None]) -> str:
    ck = torch.load(src, weights_only=True)
    change(ck)
    torch.save(ck, dst)
    return dst.name


def _nan(ck: dict) -> None:
    name = next(k for k, v in ck["model"].items() if v.is_floating_point())
    ck["model"][name] = ck["model"][name].clone().fill_(float("nan"))


def gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def zeros_zip(path: Path, gib: int = 2) -> None:
    """A zip whose member train/cat/zeros.png unpacks to ``gib`` GiB of zeros (about 2 MB packed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in good_images().items():
            zf.writestr(name, data)
        with zf.open("train/cat/zeros.png", "w", force_zip64=True) as fh:
            block = bytes(64 << 20)
            for _ in range(gib * 16):
                fh.write(block)


def build_files(d: Path) -> dict[str, str]:
    """The data files, in ``d``; returns the paths (relative to ``d``) the cases name."""
    batches = lambda name, **kw: str(write_batches(d / name / "cifar-10-batches-py", **kw).relative_to(d))  # noqa: E731
    folder_batch = batches("batchdir")
    (d / folder_batch / "data_batch_2").unlink()
    (d / folder_batch / "data_batch_2").mkdir()
    strings = batches("strings", labels=["a", "b"] * 5)
    meta_int = batches("metaint", names=7)
    meta_short = batches("metashort", labels=[9] + [0] * 9, names=[b"a", b"b", b"c"])
    test_55 = batches("test55", test_labels=[55] * 10)
    nested = batches("nested")
    (d / nested / "data_batch_1").write_bytes(nested_list_pickle())
    rows = batches("rows")
    raw = pickle.dumps({b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [0]}, protocol=2)
    (d / rows / "data_batch_1").write_bytes(raw.replace(b"K\x01M\x00\x0c\x86", b"J@B\x0f\x00M\x00\x0c\x86"))
    write_folder(d / "gif", {**good_images(), "train/cat/anim.gif": gif(), **good_images("test")})
    write_folder(d / "bad-images", {**good_images(), "train/cat/short.png": short_idat_png(),
                                    "train/dog/claims-65000.jpg": huge_jpeg(),
                                    "train/dog/50000x50000.png": zero_png(50000, 50000, 1, 0, 1)})
    (d / "short.png").write_bytes(short_idat_png())
    (d / "50000x50000.png").write_bytes(zero_png(50000, 50000, 1, 0, 1))
    grey16 = raw_png(32, 32, 16, 0, zlib.compress((b"\x00" + b"\x80\x80" * 32) * 32))
    write_folder(d / "png16", {"grey16.png": grey16})
    zeros_zip(d / "zeros.zip")
    os.mkfifo(d / "pipe")
    from engine.data import make_synthetic

    classes = list(make_synthetic(20, 10).classes)
    write_folder(d / "test-only", good_images("test", classes, 1))
    reordered = batches("reordered", names=[c.encode() for c in classes[::-1]])
    write_folder(d / "missing", good_images("test", classes[:9], 1) | good_images("train", classes[:9], 1))
    write_folder(d / "extra", good_images("test", classes + ["zebra"], 1) | good_images("train", classes + ["zebra"], 1))
    write_folder(d / "imgs", {"a.png": good_images()["train/cat/0.png"]})
    (d / "notes.csv").write_text("name,phone\nann,555\n")
    with open(d / "x.pkl", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), dtype=np.uint8)}, fh)
    markup = "markup[/blue]/cifar-10-batches-py"  # a folder "markup[" holding "blue]": "[/blue]" in the path
    write_batches(d / markup, n=40, names=[b"[/bold]", b"[red]b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"])
    return {"folder_batch": folder_batch, "strings": strings, "meta_int": meta_int, "meta_short": meta_short,
            "test_55": test_55, "nested": nested, "rows": rows, "reordered": reordered, "markup": markup}


def build_checkpoints(d: Path, run: Path) -> None:
    """Damaged variants of the run's best.pt, in ``d``."""
    best = run / "checkpoints" / "best.pt"
    variants = {
        "arch.pt": lambda ck: ck.__setitem__("arch", "SEResNet"),
        "width100.pt": lambda ck: ck["arch"].__setitem__("width", 100.0),
        "classes1e9.pt": lambda ck: ck["arch"].__setitem__("num_classes", 10**9),
        "epoch-five.pt": lambda ck: ck.__setitem__("epoch", "five"),
        "rng.pt": lambda ck: ck.__setitem__("rng", {"torch": torch.zeros(7, dtype=torch.uint8)}),
        "optimizer.pt": lambda ck: ck.__setitem__("optimizer", {"state": {}, "param_groups": []}),
        "lr-fast.pt": lambda ck: ck["config"].__setitem__("lr", "fast"),
        "width-list.pt": lambda ck: ck["config"].__setitem__("width", []),
        "nan.pt": _nan,
        "downloaded.pt": lambda ck: ck["config"].__setitem__("runs_dir", "/tmp/planted"),
    }
    for name, change in variants.items():
        checkpoint_variant(best, d / name, change)


def cases(f: dict[str, str]) -> list[Case]:
    """What each case runs (``R``: the run folder; ``f``: the paths of :func:`build_files`)."""
    R = "R"
    folder_batch, strings, meta_int, meta_short, test_55, nested, rows, reordered, markup = (
        f[k] for k in ("folder_batch", "strings", "meta_int", "meta_short", "test_55", "nested", "rows", "reordered",
                       "markup"))
    return [
        ("a `data_batch_2` that is a folder (train)", ["--no-ui", "train", "--data", folder_batch], None),
        ("a `data_batch_2` that is a folder (eval)", ["eval", R, "--data", folder_batch], None),
        ("string labels in a batch", ["--no-ui", "train", "--data", strings], None),
        ("`label_names` an int", ["--no-ui", "train", "--data", meta_int], None),
        ("`label_names` shorter than the labels used", ["--no-ui", "train", "--data", meta_short], None),
        ("test labels outside the classes", ["eval", R, "--data", test_55], None),
        ("`eval --device nonsense`", ["eval", R, "--device", "nonsense"], None),
        ("`predict --device nonsense`", ["predict", R, "x.pkl", "--device", "nonsense"], None),
        ("`--seed -1`", ["--no-ui", "train", "--preset", "tiny", "--data", "synthetic", "--seed", "-1"], None),
        ("`--seed 2**70`", ["--no-ui", "train", "--preset", "tiny", "--data", "synthetic", "--seed", str(2**70)], None),
        ("`--lr 1e308`", ["--no-ui", "train", "--preset", "tiny", "--data", "synthetic", "--lr", "1e308"], None),
        ("a checkpoint with `epoch: \"five\"` (resume)", ["--no-ui", "train", "--resume", "epoch-five.pt"], None),
        ("a damaged RNG state (resume)", ["--no-ui", "train", "--resume", "rng.pt", "--epochs", "5"], None),
        ("an optimizer state that does not fit (resume)", ["--no-ui", "train", "--resume", "optimizer.pt", "--epochs", "5"], None),
        ("stored config `\"lr\": \"fast\"` (resume)", ["--no-ui", "train", "--resume", "lr-fast.pt", "--epochs", "5"], None),
        ("stored config `\"width\": []` (resume)", ["--no-ui", "train", "--resume", "width-list.pt", "--epochs", "5"], None),
        ("an animated GIF in a folder (train: its first frame)",
         ["--no-ui", "train", "--preset", "tiny", "--width", "0.125", "--epochs", "1", "--val-size", "2", "--data", "gif"],
         "best checkpoint"),
        ("an animated GIF (predict: its first frame)", ["predict", R, "gif/train/cat/anim.gif"], "anim.gif"),
        ("`arch` not a mapping (eval)", ["eval", "arch.pt"], None),
        ("`arch` not a mapping (predict)", ["predict", "arch.pt", "x.pkl"], None),
        ("`arch` not a mapping (resume)", ["--no-ui", "train", "--resume", "arch.pt"], None),
        ("`--data` with `[/blue]` in its path, classes `[/bold]`, `[red]b` (train)",
         ["--no-ui", "train", "--preset", "tiny", "--width", "0.125", "--epochs", "1", "--val-size", "8", "--data", markup],
         "training"),
        ("the same classes against another checkpoint (eval)", ["eval", R, "--data", markup], None),
        ("a 69-byte PNG with short image data (predict)", ["predict", R, "short.png"], None),
        ("the same PNG, a 65,000² JPEG and a 50,000² PNG in a training folder",
         ["--no-ui", "train", "--preset", "tiny", "--width", "0.125", "--epochs", "1", "--val-size", "2", "--data",
          "bad-images"], None),
        ("a valid 50,000 x 50,000 PNG (predict)", ["predict", R, "50000x50000.png"], None),
        ("a zip member of 2 GiB of zeros", ["--no-ui", "train", "--preset", "tiny", "--width", "0.125", "--epochs", "1",
                                           "--val-size", "2", "--data", "zeros.zip"], None),
        ("a pickle of nested lists as labels", ["--no-ui", "train", "--data", nested], None),
        ("a pickle asking for 10^6 rows", ["--no-ui", "train", "--data", rows], None),
        ("a checkpoint declaring width 100", ["predict", "width100.pt", "x.pkl"], None),
        ("a checkpoint declaring 10^9 classes", ["eval", "classes1e9.pt"], None),
        ("a 16-bit PNG (predict: scaled to 8 bits)", ["predict", R, "png16/grey16.png"], "grey16.png"),
        ("a FIFO as `--data`", ["--no-ui", "train", "--data", "pipe"], None),
        ("a FIFO given to `predict`", ["predict", R, "pipe"], None),
        ("`predict --output` a checkpoint", ["predict", f"{R}/checkpoints/best.pt", "imgs", "--output",
                                             f"{R}/checkpoints/last.pt"], None),
        ("`predict --output` another checkpoint, with `--force`", ["predict", R, "imgs", "--output", "nan.pt",
                                                                  "--force"], None),
        ("`predict --output` its own input", ["predict", R, "x.pkl", "--output", "x.pkl", "--force"], None),
        ("`predict --output` a file that is not our CSV", ["predict", R, "imgs", "--output", "notes.csv"], None),
        ("`predict --output` a FIFO", ["predict", R, "imgs", "--output", "pipe", "--force"], None),
        ("a checkpoint whose stored `runs_dir` is elsewhere (resume)",
         ["--no-ui", "train", "--resume", "downloaded.pt", "--epochs", "3", "--runs-dir", "runs"], "continuing in"),
        ("a checkpoint with NaN weights (eval)", ["eval", "nan.pt"], None),
        ("a checkpoint with NaN weights (predict)", ["predict", "nan.pt", "x.pkl"], None),
        ("`eval --data` a folder holding only `test/<class>/`", ["eval", R, "--data", "test-only"], "accuracy"),
        ("`train --data` that folder", ["--no-ui", "train", "--data", "test-only"], None),
        ("class folders in another order (eval)", ["eval", R, "--data", reordered], None),
        ("a class missing (eval)", ["eval", R, "--data", "missing"], None),
        ("an extra class (eval)", ["eval", R, "--data", "extra"], None),
    ]


def documented(doc: Path) -> dict[str, tuple[str, str]]:
    """The document's table rows: case -> (printed, exit), as written."""
    rows = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) >= 4 and line.startswith("| ") and cells[3].isdigit():
            rows[cells[0]] = (cells[2], cells[3])
    return rows


def drift(doc: dict[str, tuple[str, str]], what: str, line: str, code: int) -> tuple[str, bool]:
    """How a case differs from its documented row ('' if it does not), and whether that is a failure."""
    if what not in doc:
        return f"{what}: not in the document", False
    printed, exit_code = doc[what]
    if exit_code != str(code):
        return f"{what}: exit {code}, documented {exit_code} ({line})", True
    if printed.startswith("`") and printed != f"`{line}`":
        return f"note: {what}: printed {line!r}, documented {printed}", False
    return "", False


def main() -> int:
    ap = argparse.ArgumentParser(description="Print the table of hostile inputs from real runs.")
    ap.add_argument("--check", type=Path, metavar="DOC", help="compare with this document's rows (exit 1 on a changed exit code)")
    args = ap.parse_args()
    doc = documented(args.check) if args.check else None
    failed = 0
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    env = dict(os.environ, CIFAR_TUI_CACHE_DIR=str(work / "cache"), CIFAR_TUI_RUNS_DIR=str(work / "runs"),
               PYTHONPATH=str(ROOT), COLUMNS="200", OMP_NUM_THREADS="1")
    code, out = sh(work, ["--no-ui", "train", "--data", "synthetic", "--preset", "tiny", "--width", "0.125",
                          "--epochs", "1", "--subset", "200", "--val-size", "50"], env)
    assert code == 0, out
    run = next((work / "runs").iterdir())
    (work / "R").symlink_to(run)
    files = build_files(work)
    build_checkpoints(work, run)
    print("| case | command | printed | exit |\n|---|---|---|---|")
    for what, args, marker in cases(files):
        code, out = sh(work, args, env)
        line = pick(out, code, marker).replace(str(run), "R").replace(str(work) + "/", "").replace("|", "\\|")
        command = "cifar-tui " + " ".join(args)
        print(f"| {what} | `{command}` | `{line}` | {code} |", flush=True)
        if doc is not None:
            said, bad = drift(doc, what, line, code)
            failed += bad
            if said:
                print(said, file=sys.stderr)
    print(json.dumps({"workdir": str(work), "changed_exit_codes": failed}), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
