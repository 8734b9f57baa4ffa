import time

import pytest
import torch

from engine import events as ev
from engine.checkpoint import CheckpointError, load_checkpoint
from engine.rundir import read_metrics
from engine.config import ConfigError
from engine.trainer import Trainer, check_resume_overrides


def collect():
    seen: list[ev.Event] = []
    return seen, seen.append


def of(seen, cls):
    return [e for e in seen if isinstance(e, cls)]


def scripted(config=None, at=None, **kw):
    """A Trainer that records its events and sends ``at[step]`` when StepDone reports that global step."""
    seen: list[ev.Event] = []
    box: dict = {}

    def on_event(e):
        seen.append(e)
        if isinstance(e, ev.StepDone) and e.step in (at or {}):
            box["trainer"].send(at[e.step])

    box["trainer"] = Trainer(config, listeners=[on_event], **kw)
    return box["trainer"], seen


def test_tiny_model_learns_synthetic(small):
    seen, listen = collect()
    cfg = small(subset=2000, val_size=1000, epochs=3, batch_size=128, log_every=10, lr=0.05)
    assert Trainer(cfg, listeners=[listen]).run() == "completed"
    accs = [e.val_acc for e in of(seen, ev.EpochDone)]
    assert len(accs) == 3
    assert accs[-1] > 0.35, accs  # chance is 0.10


def test_run_directory_and_events(small, tmp_path):
    seen, listen = collect()
    t = Trainer(small(save_every=1), listeners=[listen])
    assert t.run() == "completed"
    run = t.run_dir
    assert run.parent == tmp_path / "runs"
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt", "epoch-001.pt", "epoch-002.pt", "last.json", "best.json"} <= names
    import json

    info = json.loads((run / "config.json").read_text())
    assert info["config"]["data"] == "synthetic" and info["model"]["params"] > 0
    assert {"torch", "python"} <= set(info["versions"]) and info["device"] == "cpu"
    logged, bad = read_metrics(run / "metrics.jsonl")
    assert bad == 0
    assert [d["event"] for d in logged] == [type(e).__name__ for e in seen]
    assert isinstance(seen[0], ev.RunStarted) and of(seen, ev.StateChanged)[-1].state == "finished"
    # metrics are read every log_every steps: with log_every=1 every step reports
    steps = of(seen, ev.StepDone)
    assert len(steps) == 2 * 5 and steps[-1].step == 10


def test_metrics_are_read_every_k_steps_only(small):
    seen, listen = collect()
    Trainer(small(subset=640, batch_size=32, log_every=7, log_seconds=0, epochs=1), listeners=[listen]).run()
    in_epoch = [e.step_in_epoch for e in of(seen, ev.StepDone)]
    assert in_epoch == [7, 14, 20]  # every 7th step, plus the epoch's last


def test_the_first_step_reports_at_once_then_by_time(small):
    seen, listen = collect()
    Trainer(small(subset=640, batch_size=32, log_every=7, log_seconds=3600, epochs=1), listeners=[listen]).run()
    assert [e.step_in_epoch for e in of(seen, ev.StepDone)] == [1, 7, 14, 20]  # step 1: feedback at once
    seen, listen = collect()
    Trainer(small(subset=640, batch_size=32, log_every=7, log_seconds=1e-9, epochs=1), listeners=[listen]).run()
    assert [e.step_in_epoch for e in of(seen, ev.StepDone)] == list(range(1, 21))  # every step is "due" by time


def test_pause_really_stops_steps_and_resume_continues(small):
    trainer, seen = scripted(small(epochs=3), at={2: ev.Pause()})
    trainer.start()
    deadline = time.time() + 30
    while not any(isinstance(e, ev.StateChanged) and e.state == "paused" for e in seen):
        assert time.time() < deadline
        time.sleep(0.02)
    n = len(of(seen, ev.StepDone))
    time.sleep(1.0)
    assert len(of(seen, ev.StepDone)) == n  # nothing trains while paused
    assert trainer.alive
    trainer.send(ev.Resume())
    trainer.join(60)
    assert trainer.result.outcome == "completed"
    assert len(of(seen, ev.StepDone)) == 15
    states = [e.state for e in of(seen, ev.StateChanged)]
    assert states == ["running", "paused", "running", "finished"]


def test_stop_saves_a_loadable_checkpoint_mid_epoch(small):
    trainer, seen = scripted(small(epochs=5), at={3: ev.Stop(save=True)})
    assert trainer.run() == "stopped"
    saved = of(seen, ev.CheckpointSaved)
    assert saved and saved[-1].kind == "stop"
    ck = load_checkpoint(saved[-1].path)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (0, 3, 3)
    assert [e.state for e in of(seen, ev.StateChanged)][-2:] == ["stopping", "finished"]


def test_save_checkpoint_command_writes_a_file(small):
    trainer, seen = scripted(small(epochs=1), at={2: ev.SaveCheckpoint()})
    trainer.run()
    manual = [e for e in of(seen, ev.CheckpointSaved) if e.kind == "manual"]
    assert len(manual) == 1
    assert load_checkpoint(manual[0].path)["global_step"] == 2


def test_mixup_toggle_changes_the_loss_path(small, monkeypatch):
    import engine.trainer as tr

    calls = []
    real = tr.mixup_permutation
    monkeypatch.setattr(tr, "mixup_permutation", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    trainer, seen = scripted(small(epochs=1, mixup=False), at={2: ev.SetMixup(True)})
    trainer.run()
    assert of(seen, ev.MixupChanged)[0].on is True and of(seen, ev.MixupChanged)[0].source == "user"
    assert calls == [2, 3, 4]  # steps after the command mix images; the first two did not
    assert of(seen, ev.EpochDone)[0].mixup is True


def test_mixup_schedule_is_off_for_the_last_epochs(small):
    seen, listen = collect()
    Trainer(small(epochs=4, mixup=True, preset="paper", mixup_prob=1.0, mixup_off_epochs=2), listeners=[listen]).run()
    assert [e.mixup for e in of(seen, ev.EpochStarted)] == [True, True, False, False]


def _weights(path):
    return load_checkpoint(path)["model"]


def test_exact_resume_gives_bitwise_equal_weights(small, tmp_path):
    straight = Trainer(small(epochs=2, preset="paper", mixup_prob=1.0, mixup_off_epochs=0, runs_dir=str(tmp_path / "a")))
    assert straight.run() == "completed"
    # a 2-epoch run stopped after epoch 1 (its schedule spans 2 epochs), then resumed
    # (5 steps an epoch: a Stop at step 5 is applied before epoch 2's first step)
    trainer, _ = scripted(small(epochs=2, preset="paper", mixup_prob=1.0, mixup_off_epochs=0, runs_dir=str(tmp_path / "c")),
                          at={5: ev.Stop(save=True)})
    assert trainer.run() == "stopped"
    last = trainer.run_dir / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    resumed = Trainer(resume=str(last))
    assert resumed.run() == "completed"
    assert resumed.run_dir == trainer.run_dir  # continues in its own run folder
    a, b = _weights(straight.run_dir / "checkpoints" / "last.pt"), _weights(last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "tta_flip": True, "label_smoothing": 0.1}])
def test_mid_epoch_resume_is_exact_too(small, tmp_path, extra):
    straight = Trainer(small(epochs=2, runs_dir=str(tmp_path / "a"), **extra))
    straight.run()
    # global step 7 is epoch 2, step 2
    trainer, _ = scripted(small(epochs=2, runs_dir=str(tmp_path / "b"), **extra), at={7: ev.Stop(save=True)})
    assert trainer.run() == "stopped"
    last = trainer.run_dir / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step_in_epoch"] == 2
    assert Trainer(resume=str(last)).run() == "completed"
    a, b = _weights(straight.run_dir / "checkpoints" / "last.pt"), _weights(last)
    assert all(torch.equal(a[k], b[k]) for k in a)
    if extra:
        ea, eb = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["ema"], load_checkpoint(last)["ema"]
        assert all(torch.equal(ea[k], eb[k]) for k in ea)
        assert not torch.equal(ea["head.weight"], a["head.weight"])  # the average is not the weights


def test_resume_extends_and_refuses_contradictions(small):
    t = Trainer(small(epochs=1))
    t.run()
    last = t.run_dir / "checkpoints" / "last.pt"
    seen, listen = collect()
    with pytest.raises(ConfigError, match="--width"):
        check_resume_overrides(t.config, {"width": 0.5})
    assert check_resume_overrides(t.config, {"width": t.config.width, "epochs": 3}).epochs == 3
    r = Trainer(resume=str(last), resume_overrides={"epochs": 2}, listeners=[listen])
    assert r.run() == "completed"
    assert [e.epoch for e in of(seen, ev.EpochDone)] == [2]
    again = Trainer(resume=str(last), listeners=[listen])
    assert again.run() == "failed"
    assert "--epochs" in of(seen, ev.Failed)[-1].message


def test_atomic_save_survives_a_crash_mid_write(small, monkeypatch):
    t = Trainer(small(epochs=1))
    t.run()
    last = t.run_dir / "checkpoints" / "last.pt"
    before = last.read_bytes()

    import engine.checkpoint as ck

    def crashing_save(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", crashing_save)
    seen, listen = collect()
    r = Trainer(resume=str(last), resume_overrides={"epochs": 2}, listeners=[listen])
    assert r.run() == "completed"  # training goes on; the save failure is reported
    assert any("could not save last.pt" in w.message for w in of(seen, ev.Warning))
    assert last.read_bytes() == before
    load_checkpoint(last)
    assert not [p for p in last.parent.iterdir() if ".tmp" in p.name]


def test_nan_loss_fails_and_keeps_the_last_good_checkpoint(small, monkeypatch):
    import engine.trainer as tr

    real_ce = tr.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **k):  # finite for the first epoch's 5 steps, NaN from epoch 2 on
        calls["n"] += 1
        loss = real_ce(*a, **k)
        return loss * float("nan") if calls["n"] > 5 and loss.requires_grad else loss

    monkeypatch.setattr(tr.F, "cross_entropy", poisoned)
    seen, listen = collect()
    t = Trainer(small(epochs=3, save_every_epochs=1), listeners=[listen])
    assert t.run() == "failed"
    msg = of(seen, ev.Failed)[0].message
    assert "NaN" in msg and "epoch 2" in msg and "--lr" in msg
    assert of(seen, ev.StateChanged)[-1].state == "failed"
    assert [e.epoch for e in of(seen, ev.CheckpointSaved) if e.kind == "last"] == [1]
    ck = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_absurd_learning_rate_fails_with_a_reason(small):
    seen, listen = collect()
    assert Trainer(small(epochs=2, lr=100.0, weight_decay=1.0), listeners=[listen]).run() == "failed"
    msg = of(seen, ev.Failed)[0].message
    assert ("NaN" in msg or "infinite" in msg) and "--lr" in msg


def test_bad_checkpoints_are_refused(tmp_path, small):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a cifar-tui checkpoint"):
        load_checkpoint(other)
    t = Trainer(small(epochs=1))
    t.run()
    good = t.run_dir / "checkpoints" / "last.pt"
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(trunc)
    ck = load_checkpoint(good)
    ck["version"] = 99
    torch.save({k: v for k, v in ck.items() if k != "path"}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "cifar-tui-checkpoint", "model": Evil()}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_other_width_checkpoint_does_not_load(small):
    from engine.checkpoint import load_weights
    from engine.model import SEResNet

    t = Trainer(small(epochs=1))
    t.run()
    ck = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(SEResNet(width=0.25), ck)


def test_bad_data_fails_cleanly_and_writes_nothing(tmp_path, small):
    seen, listen = collect()
    t = Trainer(small(data=str(tmp_path / "nope")), listeners=[listen])
    assert t.run() == "failed"
    assert "no such file" in of(seen, ev.Failed)[0].message
    assert not (tmp_path / "runs").exists()


def test_ema_weights_are_what_evaluation_uses(small):
    from engine.checkpoint import build_model_from_checkpoint

    t = Trainer(small(epochs=1, ema_decay=0.5))
    t.run()
    ck = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    model = build_model_from_checkpoint(ck)
    assert torch.equal(model.state_dict()["head.weight"], ck["ema"]["head.weight"])
    assert not torch.equal(ck["ema"]["head.weight"], ck["model"]["head.weight"])


def test_flip_tta_averages_an_image_and_its_mirror():
    from engine.evaluate import predict_logits
    from engine.model import SEResNet

    torch.manual_seed(0)
    model = SEResNet(width=0.125).eval()
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    dev = torch.device("cpu")
    plain = predict_logits(model, x, dev)
    mirrored = predict_logits(model, x.flip(3), dev)
    both = predict_logits(model, x, dev, tta_flip=True)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(both, plain)


def test_fast_preset_is_the_same_network():
    from engine.config import make_config
    from engine.model import SEResNet, count_parameters

    cfg = make_config("fast")
    assert count_parameters(SEResNet(cfg.width)) == 4_993_166
    assert cfg.batch_size > 128 and cfg.ema_decay and cfg.tta_flip


def test_resuming_an_older_checkpoint_forks_a_new_run(small):
    t = Trainer(small(epochs=2, save_every=1))
    t.run()
    first = t.run_dir / "checkpoints" / "epoch-001.pt"
    last_before = (t.run_dir / "checkpoints" / "last.pt").read_bytes()
    seen, listen = collect()
    r = Trainer(resume=str(first), resume_overrides={"epochs": 2}, listeners=[listen])
    assert r.run() == "completed"
    assert r.run_dir != t.run_dir and r.run_dir.parent == t.run_dir.parent
    assert any("new run folder" in w.message for w in of(seen, ev.Warning))
    assert (t.run_dir / "checkpoints" / "last.pt").read_bytes() == last_before  # the original is untouched
    assert load_checkpoint(r.run_dir / "checkpoints" / "last.pt")["epoch"] == 2


def test_set_mixup_none_hands_control_back_to_the_schedule(small):
    trainer, seen = scripted(small(epochs=1, mixup=False), at={1: ev.SetMixup(True), 3: ev.SetMixup(None)})
    trainer.run()
    changes = [(c.on, c.source) for c in of(seen, ev.MixupChanged)]
    assert changes == [(True, "user"), (False, "schedule")]


def test_a_stop_during_data_loading_ends_before_anything_is_written(small, tmp_path):
    t = Trainer(small())
    t.send(ev.Stop())
    assert t.run() == "stopped"
    assert not (tmp_path / "runs").exists()


def test_learning_rate_schedules():
    from engine.config import make_config
    from engine.schedule import lr_at

    cos = make_config("tiny", lr=0.1)  # a per-step cosine over the run (paper's is per epoch: tests/engine/test_paper_fidelity.py)
    assert lr_at(cos, 0, 100, 10) == pytest.approx(0.1)
    assert lr_at(cos, 50, 100, 10) == pytest.approx(0.05)
    assert lr_at(cos, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    fast = make_config("fast")  # 2 warm-up epochs then linear decay
    assert lr_at(fast, 0, 300, 10) == pytest.approx(fast.lr / 20)
    assert lr_at(fast, 19, 300, 10) == pytest.approx(fast.lr)
    assert lr_at(fast, 160, 300, 10) == pytest.approx(fast.lr * 0.5)


def test_ema_decay_warms_up():
    from engine.trainer import ema_decay_at

    assert ema_decay_at(0, 0.99) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.99) == pytest.approx(11 / 20)
    assert ema_decay_at(10_000, 0.99) == 0.99


# ------------------------------------------------------------------ steering: lr, refusals, markers


def test_lr_command_scales_the_schedule_from_the_next_step_and_is_marked(small):
    from engine.export import epochs_csv, read_history
    from engine.schedule import lr_at

    cfg = small(epochs=2)
    trainer, seen = scripted(cfg, at={2: ev.SetLearningRate(factor=0.5), 3: ev.SaveCheckpoint(),
                                      7: ev.SetMixup(on=True)})
    assert trainer.run() == "completed"
    (change,) = of(seen, ev.LrChanged)
    assert (change.epoch, change.step, change.scale, change.peak_lr) == (1, 2, 0.5, cfg.lr * 0.5)
    lrs = {e.step: e.lr for e in of(seen, ev.StepDone)}
    assert lrs[2] == lr_at(cfg, 1, 10, 5) and lrs[3] == lr_at(cfg, 2, 10, 5) * 0.5 == change.lr
    assert lrs[10] == lr_at(cfg, 9, 10, 5) * 0.5
    logged = [d for d in read_metrics(trainer.run_dir / "metrics.jsonl")[0] if d["event"] == "LrChanged"]
    assert logged and logged[0]["scale"] == 0.5
    assert load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")["lr_scale"] == 0.5
    (mix,) = of(seen, ev.MixupChanged)
    assert (mix.epoch, mix.step) == (2, 7)
    rows = epochs_csv(read_history(trainer.run_dir)).splitlines()
    assert rows[0].endswith(",markers")
    assert rows[1].endswith(",lr 0.025@2; save@3") and rows[2].endswith(",mixup on@7"), rows


def test_pause_and_stop_are_placed_at_their_step(small):
    trainer, seen = scripted(small(epochs=3), at={2: ev.Pause(), 4: ev.Stop(save=True)})
    trainer.start()
    deadline = time.time() + 30
    while trainer.state != "paused":
        assert time.time() < deadline
        time.sleep(0.02)
    trainer.send(ev.Resume())
    trainer.join(60)
    marks = [(e.state, e.epoch, e.step) for e in of(seen, ev.StateChanged)]
    assert marks == [("running", 0, 0), ("paused", 1, 2), ("running", 1, 2), ("stopping", 1, 4), ("finished", 1, 4)]


def test_a_failed_manual_save_is_a_refusal_with_a_code(small, monkeypatch):
    import engine.checkpoint as ck

    def crashing_save(obj, fh, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", crashing_save)
    trainer, seen = scripted(small(epochs=1), at={2: ev.SaveCheckpoint()})
    assert trainer.run() == "completed"
    (refused,) = of(seen, ev.CommandRefused)
    assert (refused.command, refused.code) == ("save", "save_failed")
    assert not [e for e in of(seen, ev.CheckpointSaved) if e.kind == "manual"]
    logged = [d for d in read_metrics(trainer.run_dir / "metrics.jsonl")[0] if d["event"] == "CommandRefused"]
    assert logged and logged[0]["code"] == "save_failed"


def test_a_steered_lr_survives_a_resume_bit_for_bit(small, tmp_path):
    import json

    straight, before = scripted(small(epochs=2, save_every=1), at={2: ev.SetLearningRate(peak=0.03)})
    assert straight.run() == "completed"
    first = straight.run_dir / "checkpoints" / "epoch-001.pt"
    assert load_checkpoint(first)["lr_scale"] == pytest.approx(0.03 / straight.config.lr)
    seen, listen = collect()
    resumed = Trainer(resume=str(first), resume_overrides={"epochs": 2}, listeners=[listen])
    assert resumed.run() == "completed"
    end = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    ref = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    assert end["model"].keys() == ref["model"].keys()
    assert all(torch.equal(end["model"][k], ref["model"][k]) for k in ref["model"])
    assert [(e.step, e.lr) for e in of(seen, ev.StepDone)] == [(e.step, e.lr) for e in of(before, ev.StepDone)
                                                               if e.step > 5]  # the scaled schedule goes on
    info = json.loads((resumed.run_dir / "config.json").read_text())
    assert info["resumes"][-1]["lr_scale"] == pytest.approx(0.03 / straight.config.lr)


def test_larger_share_accuracy_equals_plain_accuracy_without_mixup_and_is_recorded_with_it(small):
    seen, listen = collect()
    assert Trainer(small(epochs=1, mixup=False), listeners=[listen]).run() == "completed"
    steps, (epoch,) = of(seen, ev.StepDone), of(seen, ev.EpochDone)
    assert steps and all(s.train_acc_major == pytest.approx(s.train_acc) for s in steps)
    assert epoch.train_acc_major == pytest.approx(epoch.train_acc)
    trainer, seen = scripted(small(epochs=1, mixup=False), at={1: ev.SetMixup(True)})
    assert trainer.run() == "completed"
    (epoch,) = of(seen, ev.EpochDone)
    assert epoch.mixup and epoch.train_acc_major is not None and 0.0 <= epoch.train_acc_major <= 1.0
    # a record written before the field reads back with None
    old = {k: v for k, v in ev.epoch_record_to_dict(epoch).items() if k != "train_acc_major"}
    assert ev.epoch_record_from_dict(old).train_acc_major is None


def test_a_gpu_recipe_on_a_cpu_warns_with_the_measured_time_and_trains_on(small, monkeypatch):
    from engine import cpupace

    monkeypatch.setattr(cpupace, "GPU_RECIPES", ("tiny",))
    monkeypatch.setattr(cpupace, "GPU_WIDTH", 0.1)  # the tiny test network looks like a GPU recipe
    seen, listen = collect()
    assert Trainer(small(epochs=2), listeners=[listen]).run() == "completed"
    (w,) = [e.message for e in of(seen, ev.Warning) if "meant for a GPU" in e.message]
    assert "the tiny recipe at width 0.125 is meant for a GPU and runs on the CPU here: about " in w
    assert "an epoch and " in w and "for the 2 epochs (measured on the first 5 steps)" in w
    assert "--width 0.25 or --preset tiny" in w
    said = next(i for i, e in enumerate(seen) if isinstance(e, ev.Warning) and "meant for a GPU" in e.message)
    assert said < next(i for i, e in enumerate(seen) if isinstance(e, ev.EpochDone))  # during the first epoch
    monkeypatch.setattr(cpupace, "GPU_WIDTH", 0.5)
    seen, listen = collect()
    assert Trainer(small(epochs=1), listeners=[listen]).run() == "completed"  # width under the threshold
    assert not [e for e in of(seen, ev.Warning) if "meant for a GPU" in e.message]
