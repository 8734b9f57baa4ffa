"""Settings that pass a naive check and then overflow or crash later are refused up front."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import ConfigError, TrainConfig, make_config


@pytest.mark.parametrize("overrides, fragment", [
    (dict(seed=-1), "--seed must be a whole number from 0 to 2**32-1"),
    (dict(seed=2**70), "--seed must be a whole number from 0 to 2**32-1"),
    (dict(seed=1.5), "--seed must be a whole number"),
    (dict(lr=1e308), "--lr 1e+308 is far too large"),
    (dict(lr=10**400), "--lr must be a finite number"),
    (dict(lr=True), "--lr must be a finite number"),
    (dict(lr="0.1"), "--lr must be a finite number"),
    (dict(weight_decay=5.0), "weight decay must be in [0, 1]"),
    (dict(batch_size=10**9), "--batch-size must be a whole number from 1 to 65,536"),
    (dict(epochs=10**9), "--epochs must be a whole number from 1 to 100,000"),
    (dict(epochs=2.5), "--epochs must be a whole number"),
    (dict(epochs=2.0), "--epochs must be a whole number"),
    (dict(epochs=True), "--epochs must be a whole number"),
    (dict(subset=True), "--subset must be a whole number"),
    (dict(val_size=0.5), "--val-size must be a whole number"),
    (dict(crop_padding=10**6), "crop padding must be a whole number from 0 to 32"),
    (dict(warmup_epochs=1e308), "warm-up epochs must be from 0 to 100,000"),
    (dict(mixup_alpha=1e308), "mixup alpha must be in (0, 1000]"),
    (dict(nesterov="no"), "nesterov must be true or false"),
    (dict(device=3), "--device must be text"),
    (dict(label_smoothing=float("nan")), "label_smoothing must be a finite number"),
])
def test_out_of_range_and_wrongly_typed_settings_are_refused(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        make_config("paper", **overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_edges_and_numpy_numbers_are_accepted():
    cfg = make_config("paper", seed=2**32 - 1, lr=100, weight_decay=1, batch_size=65_536, epochs=100_000,
                      subset=np.int64(5), val_size=0)
    assert cfg.seed == 2**32 - 1
    assert TrainConfig.from_dict(make_config("fast").to_dict()).validate().preset == "fast"
