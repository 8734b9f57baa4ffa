"""Shared fixtures: every test gets its own cache and runs folder, and small fast configs."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CIFAR_TUI_RUNS_DIR", str(tmp_path / "runs"))
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
