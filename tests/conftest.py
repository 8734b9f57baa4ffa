"""Shared fixtures: every test gets its own cache, runs and config folders, and small fast configs."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    _share_synthetic_data()


def _share_synthetic_data() -> None:
    """``synthetic`` data is seeded, so the same arguments always make the same images, and
    making the full set (12,000 images: what ``--data synthetic`` loads) takes seconds on a
    2-core CPU: in this test process it is made once, and every caller gets its own copy of
    the tensors (what one test does to them never reaches another). Other sizes (the tests
    of the generator itself use them) are made each time; processes a test starts make their own."""
    import dataclasses

    from engine import data
    from engine.data import synthetic

    real, made = synthetic.make_synthetic, {}

    def make_synthetic(n_train: int = 10_000, n_test: int = 2_000, seed: int = synthetic.SYNTHETIC_SEED):
        key = (n_train, n_test, seed)
        if key != (10_000, 2_000, synthetic.SYNTHETIC_SEED):
            return real(n_train, n_test, seed)
        if key not in made:
            made[key] = real(n_train, n_test, seed)
        b = made[key]
        copy = lambda s: None if s is None else synthetic.ImageSet(s.x.clone(), s.y.clone())  # noqa: E731
        return dataclasses.replace(b, train=copy(b.train), test=copy(b.test), notes=list(b.notes))

    make_synthetic.__doc__ = real.__doc__
    synthetic.make_synthetic = data.make_synthetic = make_synthetic


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CIFAR_TUI_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_TUI_CONFIG_DIR", str(tmp_path / "config"))  # the remembered theme
    yield


def small_config(tmp_path, **kw):
    """A config that trains in about a second per epoch on a 2-core CPU."""
    from engine.config import make_config

    base = dict(data="synthetic", width=0.125, subset=320, val_size=100, epochs=2, batch_size=64,
                log_every=1, runs_dir=str(tmp_path / "runs"))
    base.update(kw)
    preset = base.pop("preset", "tiny")
    return make_config(preset, **base)


@pytest.fixture
def small(tmp_path):
    return lambda **kw: small_config(tmp_path, **kw)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A tiny completed run (synthetic data, 2 epochs, epoch-NNN.pt kept), trained once per
    test session for the tests that only need a finished run. Do not change it: use
    ``run_copy`` for a run a test may modify."""
    from engine.config import make_config
    from engine.trainer import Trainer

    root = tmp_path_factory.mktemp("finished-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_TUI_CACHE_DIR", str(root / "cache"))
        cfg = make_config("tiny", data="synthetic", width=0.125, subset=600, val_size=200, epochs=2, save_every=1,
                          log_every=1, runs_dir=str(root / "runs"))
        t = Trainer(cfg)
        assert t.run() == "completed"
    return t.run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of ``finished_run`` under ``tmp_path/runs`` (checkpoints' mtimes kept)."""
    import shutil

    dst = tmp_path / "runs" / finished_run.name
    shutil.copytree(finished_run, dst)
    return dst


# Strings that rich or Textual would parse as markup if a file's text reached them unescaped:
# a closing tag without an opener (a MarkupError), a Textual action, a style.
MARKUP_CLASSES = ["[/bold]", "[@click=app.quit]x", "[red]c", "d"]
MARKUP_DIR = "data[/blue]"  # a folder "data[" holding "blue]": the path contains "[/blue]"


def write_cifar_batches(root, names, n_train=64, n_test=40, seed=0):
    """A small cifar-10-batches-py folder (2 training batches, a test batch, batches.meta)."""
    import pickle
    from pathlib import Path

    import numpy as np

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = len(names)
    for name, n in (("data_batch_1", n_train), ("data_batch_2", n_train), ("test_batch", n_test)):
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [i % k for i in range(n)]}, fh, protocol=2)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": list(names)}, fh, protocol=2)
    return root


@pytest.fixture(scope="session")
def markup_run(tmp_path_factory):
    """A completed tiny run whose class names (``MARKUP_CLASSES``) and data and run paths
    hold markup. Do not change it; copy it."""
    from engine.config import make_config
    from engine.trainer import Trainer

    root = tmp_path_factory.mktemp("markup")
    data = write_cifar_batches(root / MARKUP_DIR / "cifar-10-batches-py", MARKUP_CLASSES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_TUI_CACHE_DIR", str(root / "cache"))
        cfg = make_config("tiny", data=str(data), width=0.125, val_size=16, epochs=1, batch_size=32, log_every=1,
                          runs_dir=str(root / "runs[/blue]"))
        t = Trainer(cfg)
        assert t.run() == "completed"
    return t.run_dir
