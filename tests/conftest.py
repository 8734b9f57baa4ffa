"""Shared fixtures: every test gets its own cache, runs and config folders, and small fast configs."""

from __future__ import annotations

import pytest


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
