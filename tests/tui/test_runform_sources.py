"""The run form asks the engine whether a data source is usable (one set of rules), and
reads its preset choices and notes from the engine's presets (one entry per preset)."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image
from textual.app import App, ComposeResult
from textual.widgets import Input, Select

from engine import config
from engine.data import DataError, check_source, load_data
from tui_trainer.widgets.runform import FormError, RunForm, in_form_words, parse_form
from ui_support import form_values as values


def image_folder(root):
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
        Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "train" / c / "0.png")
    return root


def accepted_sources(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    data = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}
    (batches / "data_batch_1").write_bytes(pickle.dumps(data))
    folder = image_folder(tmp_path / "images")
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.write(p, p.relative_to(folder).as_posix())
    return {"batches folder": str(batches), "folder holding the batches": str(tmp_path),
            "image folder": str(folder), "zip": str(tmp_path / "images.zip"), "synthetic": "synthetic",
            "cifar10": "cifar10", "CIFAR-10": " CIFAR-10 "}


def refused_sources(tmp_path):
    (tmp_path / "notes.txt").write_text("not a zip")
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    out = {"missing": str(tmp_path / "nope.zip"), "text file": str(tmp_path / "notes.txt"),
           "corrupt zip": str(tmp_path / "broken.zip"), "empty": "  "}
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        out["named pipe"] = str(tmp_path / "pipe")
    return out


def test_the_form_accepts_every_source_the_engine_accepts(tmp_path):
    for what, src in accepted_sources(tmp_path).items():
        assert check_source(src) is None, what
        assert parse_form(values(data=src), None).data == src.strip(), what


def test_the_form_refuses_what_the_engine_refuses_in_its_words(tmp_path):
    for what, src in refused_sources(tmp_path).items():
        problem = check_source(src)
        assert problem is not None and "\n" not in problem, what
        with pytest.raises(FormError) as err:
            parse_form(values(data=src), None)
        assert (str(err.value), err.value.field) == (in_form_words(problem)[0], "Data"), what
        assert "--" not in str(err.value)
        if src.strip():  # loading says the same (an empty --data is refused by the config first)
            with pytest.raises(DataError) as loaded:
                load_data(src, use_cache=False)
            assert str(loaded.value) == problem, what
    # the engine's words, not a copy of its rules: a corrupt .zip is "not a readable zip" there
    assert "not a readable zip file (corrupt or truncated?)" in check_source(str(tmp_path / "broken.zip"))


# ----------------------------------------------------------------------- presets


@pytest.fixture
def demo_preset(monkeypatch):
    demo = config.Preset("demo", "a preset added in one entry", dict(config.PRESETS["tiny"].settings, epochs=2))
    monkeypatch.setitem(config.PRESETS, "demo", demo)
    return demo


def test_a_new_preset_is_one_entry_for_the_form(demo_preset):
    assert parse_form(values(preset="demo", epochs="2"), None).preset == "demo"

    class Host(App):
        def compose(self) -> ComposeResult:
            yield RunForm()

    async def main():
        async with Host().run_test(size=(100, 30)) as pilot:
            form = pilot.app.query_one(RunForm)
            select = form.query_one("#f-preset", Select)
            assert "demo" in [value for _, value in select._options]
            select.value = "demo"
            await pilot.pause(0.1)
            assert "demo: a preset added in one entry" in str(form.query_one("#f-preset-note").render())
            assert form.query_one("#f-epochs", Input).value == "2"

    import asyncio

    asyncio.run(main())
