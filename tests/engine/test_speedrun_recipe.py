"""The speedrun's settings from public fast CIFAR-10 training: a lookahead weight average
folded into the weights every few steps (its slow copy in checkpoints: exact resume),
BatchNorm momentum as a setting, a warm-up from a fraction of the peak lr."""

from __future__ import annotations

import pytest
import torch

from engine import events as ev
from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, make_config
from engine.model import SEResNet, count_parameters
from engine.optim import Lookahead, lookahead_decay_at
from engine.schedule import lr_at
from engine.trainer import Trainer

NEW = dict(lookahead_every=2, lookahead_decay=0.9, bn_momentum=0.4, warmup_start=0.2, warmup_epochs=1.0)


def test_the_settings_are_checked_and_named_on_the_command_line():
    for bad, flag in (({"bn_momentum": 0.0}, "--bn-momentum"), ({"bn_momentum": 1.5}, "--bn-momentum"),
                      ({"warmup_start": -0.1}, "--warmup-start"), ({"lookahead_decay": 1.0}, "--lookahead-decay"),
                      ({"lookahead_every": -1}, "--lookahead-every"), ({"lookahead_every": 2.5}, "--lookahead-every")):
        with pytest.raises(ConfigError, match=flag):
            make_config("tiny", **bad)
    from typer.testing import CliRunner

    from tui_trainer.cli import app

    r = CliRunner().invoke(app, ["--no-ui", "train", "--data", "synthetic", "--bn-momentum", "2"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert [line for line in r.output.splitlines() if line.startswith("error:")] == [
        "error: --bn-momentum must be in (0, 1] (got 2.0; PyTorch's default is 0.1)"]


def test_the_warm_up_starts_from_a_fraction_of_the_peak():
    lifted = make_config("speedrun", warmup_epochs=2.0)
    assert lifted.warmup_start == 0.2 and lifted.bn_momentum == 0.4 and lifted.lookahead_every == 0  # the preset's
    base = lifted.replace(warmup_start=0.0)
    assert lr_at(base, 0, 100, 10) == pytest.approx(0.8 / 20)  # from about zero, as before
    assert lr_at(lifted, 0, 100, 10) == pytest.approx(0.8 * (0.2 + 0.8 / 20))
    assert lr_at(lifted, 19, 100, 10) == pytest.approx(0.8) == lr_at(base, 19, 100, 10)  # the peak, as before
    assert lr_at(lifted, 50, 100, 10) == lr_at(base, 50, 100, 10)  # the decay is untouched


def test_the_lookahead_folds_its_average_into_the_weights():
    model = SEResNet(width=0.0625)
    la = Lookahead(model, every=2, decay=0.9)
    w = model.head.weight
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    la.after_step(1, 10)  # not a fold step: nothing happens
    assert torch.equal(w, start + 1.0)
    la.after_step(2, 10)
    d = lookahead_decay_at(2, 10, 2, 0.9)
    assert d == pytest.approx(0.81 * 0.2 ** 3)
    assert torch.allclose(w, start + (1 - d)) and torch.equal(la.state_dict()["head.weight"], w)
    with torch.no_grad():
        w.add_(5.0)
    la.after_step(10, 10)  # the run's end: the weights become the slow copy
    assert torch.allclose(w, start + (1 - d))
    assert "stem.1.running_mean" in la.state_dict() and "stem.1.num_batches_tracked" not in la.state_dict()


def _scripted(cfg, stop_at):
    box = {}

    def listen(e):
        if isinstance(e, ev.StepDone) and e.step == stop_at:
            box["t"].send(ev.Stop(save=True))

    box["t"] = Trainer(cfg, listeners=[listen])
    return box["t"]


def test_a_mid_epoch_resume_with_the_new_settings_is_exact(small, tmp_path):
    """The slow copy travels in the checkpoint: resumed from step 7 of 10 (two folds still to
    come, one the final one), the weights are bit for bit those of a run that never stopped."""
    kw = dict(width=0.0625, subset=160, batch_size=32, epochs=2, val_size=16, **NEW)
    straight = Trainer(small(runs_dir=str(tmp_path / "a"), **kw))
    assert straight.run() == "completed"
    assert all(m.momentum == 0.4 for m in straight.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stopped = _scripted(small(runs_dir=str(tmp_path / "b"), **kw), stop_at=7)
    assert stopped.run() == "stopped"
    last = stopped.run_dir / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    assert ck["global_step"] == 7 and not torch.equal(ck["lookahead"]["head.weight"], ck["model"]["head.weight"])
    assert Trainer(resume=str(last)).run() == "completed"
    a, b = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt"), load_checkpoint(last)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["lookahead"][k], b["lookahead"][k]) for k in a["lookahead"])


def test_the_speedrun_network_keeps_its_parameters():
    cfg = make_config("speedrun")
    assert count_parameters(SEResNet(num_classes=10, shape=cfg.net_shape())) == 4_993_166
