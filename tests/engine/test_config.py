import pytest

from engine.config import PRESETS, ConfigError, TrainConfig, default_val_size, make_config


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(epochs=0), "--epochs"),
        (dict(epochs=-3), "--epochs"),
        (dict(lr=-1.0), "--lr"),
        (dict(lr=0.0), "--lr"),
        (dict(lr=float("nan")), "--lr"),
        (dict(batch_size=0), "--batch-size"),
        (dict(width=0.0), "--width"),
        (dict(width=-1.0), "--width"),
        (dict(subset=0), "--subset"),
        (dict(val_size=-1), "--val-size"),
        (dict(device="tpu"), "--device"),
        (dict(data="  "), "--data"),
    ],
)
def test_impossible_settings_are_refused_with_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        make_config("paper", **overrides)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown --preset"):
        make_config("nope")


def test_presets_and_overrides():
    paper = make_config("paper")
    assert (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (128, 0.1, 0.9, 5e-4)
    assert paper.grad_clip_value == 0.1 and paper.mixup and paper.mixup_prob == 0.9 and paper.width == 1.0
    tiny = make_config("tiny", epochs=7)
    assert tiny.epochs == 7 and tiny.width == PRESETS["tiny"]["width"] and tiny.preset == "tiny"
    assert make_config("tiny", mixup=None).mixup == PRESETS["tiny"]["mixup"]  # None keeps the preset


def test_config_is_frozen_and_round_trips():
    cfg = make_config("tiny")
    with pytest.raises(Exception):
        cfg.epochs = 3  # type: ignore[misc]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_default_val_size():
    assert default_val_size(50_000) == 5000
    assert default_val_size(10_000) == 1000
