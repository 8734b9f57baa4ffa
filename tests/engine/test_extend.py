"""Extending a run that finished its schedule (issue 26, item 1): by default a new schedule
over the added epochs from a peak LR, the old one exactly on request, and what the next
epoch gets said before it trains."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine import events as ev
from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, make_config
from engine.schedule import EXTEND_PEAK_FRACTION, describe_extension, lr_at, plan_extension
from engine.trainer import Trainer


def extended(preset: str, done: int, epochs: int, mode=None, lr=None, **kw):
    stored = make_config(preset, epochs=done, data="synthetic", **kw)
    return stored, stored.replace(**plan_extension(stored, done, epochs, mode, lr)).validate()


def test_a_finished_cosine_restarts_from_a_tenth_of_its_peak():
    stored, cfg = extended("paper", 2, 4)  # a cosine stepped per epoch, ended at lr 0
    spe = 10
    assert lr_at(stored.replace(epochs=4), 2 * spe, 4 * spe, spe) == pytest.approx(0.0, abs=1e-12)  # kept: lr 0
    assert (cfg.restart_epoch, cfg.restart_lr) == (2, pytest.approx(0.1 * EXTEND_PEAK_FRACTION))
    lrs = [lr_at(cfg, s, 4 * spe, spe) for s in range(4 * spe)]
    assert lrs[:2 * spe] == [lr_at(stored, s, 2 * spe, spe) for s in range(2 * spe)]  # the trained part unchanged
    assert lrs[2 * spe] == pytest.approx(0.01) and lrs[3 * spe] == pytest.approx(0.005)  # a new cosine, per epoch
    assert all(a >= b for a, b in zip(lrs[2 * spe:], lrs[2 * spe + 1:]))


def test_the_new_schedule_has_the_runs_kind_and_a_chosen_peak():
    _, lin = extended("fast", 3, 5, lr=0.2)  # linear, per step
    assert lr_at(lin, 30, 50, 10) == pytest.approx(0.2) and lr_at(lin, 40, 50, 10) == pytest.approx(0.1)
    _, const = extended("tiny", 2, 3, schedule="constant")
    assert const.restart_lr == 0.05 and lr_at(const, 25, 30, 10) == 0.05  # a constant lr stays
    _, keep = extended("tiny", 2, 4, mode="keep", lr=0.02)  # the old schedule, its peak replaced
    assert keep.restart_epoch is None and keep.lr == 0.02
    assert lr_at(keep, 20, 40, 10) == pytest.approx(0.02 * (1 + math.cos(math.pi / 2)) / 2)
    # a run that had not finished its schedule just goes on (the mode does not apply)
    stored = make_config("tiny", epochs=5, data="synthetic")
    assert plan_extension(stored, 3, 8, "restart") == {"epochs": 8}
    with pytest.raises(ConfigError, match="--extend-schedule"):
        plan_extension(stored, 5, 8, "stretch")
    with pytest.raises(ConfigError, match="go together"):
        stored.replace(restart_epoch=2).validate()
    with pytest.raises(ConfigError, match="below --epochs"):
        stored.replace(restart_epoch=5, restart_lr=0.01).validate()


def test_the_description_says_the_next_lr_and_mixup():
    _, cfg = extended("paper", 2, 3)
    text = describe_extension(cfg, 2)
    assert "epochs 3-3 (1 added)" in text and "a new cosine from 0.01 to 0" in text
    assert "the next epoch starts at lr 0.01" in text and "mixup off" in text
    _, keep = extended("paper", 2, 3, mode="keep")
    assert "the next epoch starts at lr 0;" in describe_extension(keep, 2)  # what "keep" would do: say it
    # mixup on the added epochs when the run's rules allow it: off for the recipe's last epochs
    _, mix = extended("tiny", 2, 12, mixup=True, mixup_off_epochs=3)
    assert "mixup on epochs 3-9 (p 0.9), off after" in describe_extension(mix, 2)


def test_extending_a_finished_run_trains_and_a_plain_resume_of_it_is_exact(run_copy, tmp_path):
    """The session's tiny run (2 epochs, cosine) extended to 3: epoch 3 trains at a new
    cosine's lr (not 0), said first; stopped mid-way and resumed, it ends bit for bit as the
    extension that never stopped."""
    import shutil

    last = run_copy / "checkpoints" / "last.pt"
    twin = tmp_path / "twin"
    shutil.copytree(run_copy, twin)
    seen: list[ev.Event] = []
    t = Trainer(resume=str(last), resume_overrides={"epochs": 3}, listeners=[seen.append])
    assert t.run() == "completed"
    said = [w.message for w in seen if isinstance(w, ev.Warning) and w.message.startswith("extending the run")]
    assert said and "the next epoch starts at lr 0.005" in said[0]
    first_warning = next(i for i, e in enumerate(seen) if isinstance(e, ev.Warning) and e.message in said)
    assert first_warning < next(i for i, e in enumerate(seen) if isinstance(e, ev.StepDone))  # before training
    lrs = [e.lr for e in seen if isinstance(e, ev.StepDone) and e.epoch == 3]
    assert lrs[0] == pytest.approx(0.005, rel=0.1) and all(lr > 0 for lr in lrs[:-1])
    info = json.loads((run_copy / "config.json").read_text())
    assert info["resumes"][-1]["changed"]["restart_epoch"] == [None, 2]
    # the same extension, stopped after its first steps, then resumed with no new settings
    box = {}

    def stop(e):
        if isinstance(e, ev.StepDone) and e.epoch == 3 and e.step_in_epoch == 2:
            box["t"].send(ev.Stop(save=True))

    box["t"] = Trainer(resume=str(twin / "checkpoints" / "last.pt"), resume_overrides={"epochs": 3}, listeners=[stop])
    assert box["t"].run() == "stopped"
    assert Trainer(resume=str(twin / "checkpoints" / "last.pt")).run() == "completed"
    a = load_checkpoint(last)["model"]
    b = load_checkpoint(twin / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_follows_the_old_schedule(run_copy):
    seen: list[ev.Event] = []
    t = Trainer(resume=str(run_copy / "checkpoints" / "last.pt"),
                resume_overrides={"epochs": 3, "extend_schedule": "keep"}, listeners=[seen.append])
    assert t.run() == "completed"
    steps = [e for e in seen if isinstance(e, ev.StepDone) and e.epoch == 3]
    spe = steps[0].steps_per_epoch
    assert steps[0].lr == pytest.approx(lr_at(t.config, 2 * spe + steps[0].step_in_epoch - 1, 3 * spe, spe))
    assert t.config.restart_epoch is None


def test_extend_schedule_is_taken_out_of_the_overrides_and_said_where_it_does_not_apply():
    from engine.schedule import extension_overrides

    stored = make_config("tiny", epochs=5, data="synthetic")
    out, said = extension_overrides(stored, 3, 0, {"epochs": 8, "extend_schedule": "keep"})
    assert out == {"epochs": 8} and "applies only when extending a run that finished its 5 epochs" in said
    out, said = extension_overrides(stored, 5, 0, {"epochs": 6, "lr": 0.02, "runs_dir": None})
    assert out == {"epochs": 6, "runs_dir": None, "restart_epoch": 5, "restart_lr": 0.02}
    assert said.startswith("extending the run: epochs 6-6 (1 added): a new cosine from 0.02 to 0")
    assert extension_overrides(stored, 2, 4, {"epochs": 5}) == ({"epochs": 5}, None)  # a plain resume
