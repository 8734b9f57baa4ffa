"""The control channel and `cifar-tui ctl`, `train --detach`, and hang-ups, with real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import control
from engine import events as ev
from engine.rundir import RunDir
from engine.runs import run_status
from procs import (ROOT, TRAIN, assert_stopped_from_another_terminal, env_for, events_of,
                   hang_up_in_a_closed_terminal, start_trainer, wait_for)
from tui_trainer.cli import app

runner = CliRunner()


def ctl(run: Path, *words: str, timeout: float = 60):
    return runner.invoke(app, ["ctl", str(run), *words, "--timeout", str(timeout)])


# ------------------------------------------------------------------ the protocol


def test_messages_are_a_closed_set_of_data():
    for cmd in (ev.Pause(), ev.Resume(), ev.SaveCheckpoint(), ev.SetMixup(on=True), ev.SetMixup(on=False),
                ev.SetMixup(on=None), ev.SetLearningRate(peak=0.05), ev.SetLearningRate(factor=0.5)):
        assert control.decode(control.encode(cmd).strip()) == cmd
    stop = control.decode(control.encode(ev.Stop(save=False)).strip())
    assert stop == ev.Stop(save=True, reason=control.REMOTE_STOP_REASON)  # a remote stop always saves
    bad = [b"not json", b"[1, 2]", b'{"command": "jump"}', b'{"command": "pause", "path": "/etc/passwd"}',
           b'{"command": "mixup"}', b'{"command": "mixup", "on": "yes"}', b'{"command": "save", "on": true}',
           b'{"command": {"run": "rm -rf ~"}}', b'{"command": "pause"}' + b" " * 300, b"\xff\xfe"]
    for raw in bad:
        with pytest.raises(ValueError):
            control.decode(raw)


def _fake_live_run(tmp_path) -> RunDir:
    """A run folder whose lock this process holds (as a trainer would)."""
    run = RunDir(tmp_path / "runs" / "r1")
    run.ensure_layout()
    run.lock_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    return run


def test_channel_file_is_private_and_bad_messages_become_warnings(tmp_path):
    run = _fake_live_run(tmp_path)
    os.chmod(run.path, 0o777)  # a folder others could write in is closed first
    got: list = []
    ch = control.ControlChannel.open(run, got.append, poll_seconds=3600)  # polled by hand below
    try:
        assert stat.S_IMODE(os.stat(run.control_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(run.path).st_mode) & 0o022 == 0
        control.send_command(run.path, ev.Pause())
        control.send_command(run.path, ev.SetMixup(on=None))
        with open(run.control_path, "ab") as fh:
            fh.write(b'{"command": "jump"}\n' + b"x" * 5000 + b'\n{"command": "resume"}\n{"command": "stop"')
        assert ch.poll() == 5
        assert got[:2] == [ev.Pause(), ev.SetMixup(on=None)] and got[2] == ev.Resume()
        (notice,) = [c for c in got if isinstance(c, control.ChannelNotice)]
        assert "unknown command 'jump'" in notice.message and "1 more" in notice.message
        with open(run.control_path, "ab") as fh:
            fh.write(b"}\n")  # the end of a message written in two pieces
        ch.poll()
        assert got[-1] == ev.Stop(save=True, reason=control.REMOTE_STOP_REASON)
        assert control.channel_problem(run.path) is None
    finally:
        ch.close()
    assert not run.control_path.exists()  # removed when the run ends
    with pytest.raises(control.ControlError, match="not open yet"):
        control.send_command(run.path, ev.Pause())


def test_a_stale_or_foreign_channel_file_is_refused(tmp_path):
    run = _fake_live_run(tmp_path)
    # left over by a trainer killed with -9: its header names another process
    run.control_path.write_text(json.dumps({"channel": control.CHANNEL_NAME, "pid": 1, "host": "x"}) + "\n")
    os.chmod(run.control_path, 0o600)
    with pytest.raises(control.ControlError, match="left over"):
        control.send_command(run.path, ev.Pause())
    os.chmod(run.control_path, 0o644)  # readable by others: not a channel the trainer made
    with pytest.raises(control.ControlError, match="not a private control channel"):
        control.send_command(run.path, ev.Pause())
    run.control_path.unlink()
    (tmp_path / "elsewhere").write_text("")
    run.control_path.symlink_to(tmp_path / "elsewhere")  # never followed
    with pytest.raises(control.ControlError):
        control.send_command(run.path, ev.Pause())
    assert (tmp_path / "elsewhere").read_text() == ""
    run.lock_path.unlink()  # nobody trains it
    with pytest.raises(control.ControlError, match="no process is training"):
        control.send_command(run.path, ev.Pause())


def test_ctl_arguments_are_checked(tmp_path):
    r = runner.invoke(app, ["ctl", str(tmp_path / "nope"), "pause"])
    assert r.exit_code == 2 and "no such run folder" in r.output
    for words, fragment in ((["jump"], "unknown command"), (["mixup"], "on, off, auto"),
                            (["mixup", "maybe"], "on, off, auto"), (["pause", "now"], "takes no value"),
                            (["lr", "nan"], "finite"), (["lr", "x0"], "positive"), (["lr"], "peak learning rate")):
        r = runner.invoke(app, ["ctl", str(tmp_path), *words])
        assert r.exit_code == 2 and fragment in r.output, r.output


def test_ctl_refuses_a_finished_run_without_importing_torch(finished_run, tmp_path):
    fake = tmp_path / "no-torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "tui_trainer", "ctl", str(finished_run), "stop"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "ImportError" not in r.stderr
    assert r.stderr.strip() == f"error: {finished_run.name} is not training: it is completed (completed 2 epochs)"


# --------------------------------------------------------------- real processes


def test_ctl_steers_a_headless_run_in_another_process(tmp_path):
    """pause, resume, save, mixup, a malformed message, stop: each confirmed by the run's
    own events, seen alike by a second viewer; the viewer never takes the lock."""
    from tui_trainer.bridge import WatchSource

    p, run = start_trainer(tmp_path, "--no-ui", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        viewer = WatchSource(run)
        seen = viewer.poll()
        assert stat.S_IMODE(os.stat(RunDir(run).control_path).st_mode) == 0o600
        r = ctl(run, "pause")
        assert r.exit_code == 0 and f"paused {run.name}" in r.output, r.output
        assert [d for d in events_of(run) if d["event"] == "StateChanged"][-1]["state"] == "paused"
        steps_paused = sum(d["event"] == "StepDone" for d in events_of(run))
        r = ctl(run, "pause")
        assert r.exit_code == 0 and "already paused" in r.output
        r = ctl(run, "mixup", "on")
        assert r.exit_code == 0 and "mixup on" in r.output, r.output
        r = ctl(run, "save")
        assert r.exit_code == 0 and "saved " in r.output, r.output
        manual = Path(r.output.split("saved ", 1)[1].strip())
        assert manual.is_file() and manual.name.startswith("manual-")
        assert sum(d["event"] == "StepDone" for d in events_of(run)) == steps_paused  # paused: no steps
        r = ctl(run, "resume")
        assert r.exit_code == 0 and "resumed" in r.output, r.output
        _lr_from_another_terminal(run)
        with open(RunDir(run).control_path, "ab") as fh:  # a malformed message: a warning, training goes on
            fh.write(b'{"command": "explode"}\n')
        wait_for(lambda: any(d["event"] == "Warning" and "explode" in d["message"] for d in events_of(run)),
                 "the warning")
        n = sum(d["event"] == "StepDone" for d in events_of(run))
        wait_for(lambda: sum(d["event"] == "StepDone" for d in events_of(run)) > n + 2, "more steps")
        assert RunDir(run).lock_owner().pid == p.pid  # the viewer and ctl never took the lock
        r = ctl(run, "stop")
        assert r.exit_code == 0 and control.REMOTE_STOP_REASON in r.output, r.output
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert_stopped_from_another_terminal(run)
    mixups = [d for d in events_of(run) if d["event"] == "MixupChanged" and d["source"] == "user"]
    assert mixups and mixups[0]["on"] is True
    # a second viewer saw every change, in order
    seen += viewer.poll()
    assert [e.state for e in seen if isinstance(e, ev.StateChanged)] == ["running", "paused", "running", "stopping",
                                                                         "finished"]
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].outcome == "stopped"
    r = ctl(run, "pause")
    assert r.exit_code == 1 and "not training: it is stopped" in r.output


def _lr_from_another_terminal(run: Path) -> None:
    """`ctl RUN lr x0.5`: confirmed by LrChanged in metrics.jsonl; the next steps report
    the schedule's learning rate times 0.5."""
    from engine.config import TrainConfig
    from engine.schedule import lr_at

    r = ctl(run, "lr", "x0.5")
    assert r.exit_code == 0 and "learning rate of" in r.output and "x0.5" in r.output, r.output
    (change,) = [d for d in events_of(run) if d["event"] == "LrChanged"]
    assert change["scale"] == 0.5 and change["source"] == "user" and change["step"] > 0
    wait_for(lambda: any(d["event"] == "StepDone" and d["step"] > change["step"] for d in events_of(run)), "a step")
    started = [d for d in events_of(run) if d["event"] == "RunStarted"][-1]
    cfg, spe = TrainConfig.from_dict(started["config"]), started["steps_per_epoch"]
    after = next(d for d in events_of(run) if d["event"] == "StepDone" and d["step"] > change["step"])
    assert after["lr"] == lr_at(cfg, after["step"] - 1, spe * cfg.epochs, spe) * 0.5
    assert change["peak_lr"] == cfg.lr * 0.5


def test_sighup_in_a_closed_terminal_saves_and_stops(tmp_path):
    """A foreground headless run whose terminal closes: the writes to it fail, SIGHUP
    arrives; the run saves last.pt and finishes as stopped, exit code 129."""
    run, events = hang_up_in_a_closed_terminal(tmp_path, "--no-ui")
    final = events[-1]
    assert final["event"] == "RunFinished" and final["outcome"] == "stopped"
    assert "terminal closed (SIGHUP)" in final["reason"]
    assert RunDir(run).last_checkpoint.is_file() and not RunDir(run).lock_path.exists()
    assert run_status(RunDir(run))[0] == "stopped"


def test_detach_survives_in_its_own_session_and_a_kill_gives_interrupted(tmp_path):
    from tui_trainer.bridge import AttachSource

    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "tui_trainer", "--no-ui", *TRAIN, "--epochs", "500", "--detach",
                        "--runs-dir", str(runs)], cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    (run,) = list(runs.iterdir())
    assert f"cifar-tui watch {run}" in r.stdout and f"cifar-tui ctl {run}" in r.stdout
    pid = RunDir(run).lock_owner().pid
    try:
        assert os.getsid(pid) == pid != os.getsid(0)  # a session of its own: no terminal's SIGHUP reaches it
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())  # what `ps` shows every user
        assert "tui_trainer.detached_run" in cmdline and "{" not in cmdline and "synthetic" not in cmdline
        assert not RunDir(run).spec_path.exists()  # the settings' file is removed once read
        assert RunDir(run).log_path.is_file()
        attached = AttachSource(run)
        assert attached.can_command
        r = ctl(run, "mixup", "off")
        assert r.exit_code == 0 and "mixup off" in r.output, r.output
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: run_status(RunDir(run))[0] == "interrupted", "interrupted", timeout=10)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert RunDir(run).control_path.exists()  # left behind by kill -9 ...
    r = ctl(run, "pause")
    assert r.exit_code == 1 and "interrupted" in r.output and "--resume" in r.output  # ... and not used
    attached._checked_at = None
    assert not attached.can_command and attached.liveness() == "interrupted"
    listed = json.loads(runner.invoke(app, ["runs", str(runs), "--json"]).output)
    assert listed[0]["status"] == "interrupted"


def test_detach_reports_a_run_that_fails_at_once(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "notes.txt").write_text("no images here")
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "tui_trainer", "--no-ui", "train", "--detach", "--data",
                        str(tmp_path / "bad"), "--preset", "tiny", "--runs-dir", str(runs)],
                       cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("error: --data") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not any(runs.iterdir())  # no run folder left behind


def test_torchrun_rank0_takes_commands_and_a_stop_reaches_every_rank(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "tui_trainer",
           "--no-ui", *TRAIN, "--epochs", "500", "--runs-dir", str(runs)]
    env = dict(env_for(tmp_path), CIFAR_TUI_DIST_TIMEOUT="120")
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: runs.exists() and any(runs.iterdir()) or p.poll() is not None, "the run folder", 120)
        (run,) = list(runs.iterdir())
        wait_for(lambda: any(d["event"] == "StepDone" for d in events_of(run)) or p.poll() is not None, "steps", 120)
        assert p.poll() is None
        r = ctl(run, "pause")
        assert r.exit_code == 1 and "not available under torchrun" in r.output
        with open(RunDir(run).control_path, "ab") as fh:  # sent anyway: the engine refuses too, and trains on
            fh.write(b'{"command": "pause"}\n{"command": "mixup", "on": true}\n')
        wait_for(lambda: sorted(d["command"] for d in events_of(run) if d["event"] == "CommandRefused"
                                and d["code"] == "torchrun") == ["mixup", "pause"], "two refusals")
        r = ctl(run, "save")
        assert r.exit_code == 0 and "saved " in r.output, r.output
        r = ctl(run, "stop", timeout=120)
        assert r.exit_code == 0 and control.REMOTE_STOP_REASON in r.output, r.output
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out  # every rank stopped cleanly
    finally:
        if p.poll() is None:
            p.kill()
    assert not any(d["event"] == "StateChanged" and d["state"] == "paused" for d in events_of(run))
    final = events_of(run)[-1]
    assert final["event"] == "RunFinished" and final["outcome"] == "stopped" and RunDir(run).last_checkpoint.is_file()


def test_the_trainer_stops_obeying_a_channel_made_writable_by_others(tmp_path):
    """ctl refuses a channel whose mode changed; the trainer's end rechecks too (issue 25)."""
    run = _fake_live_run(tmp_path)
    got: list = []
    ch = control.ControlChannel.open(run, got.append, poll_seconds=3600)  # polled by hand
    try:
        control.send_command(run.path, ev.Pause())
        assert ch.poll() == 1 and got == [ev.Pause()]
        os.chmod(run.control_path, 0o666)
        with open(run.control_path, "ab") as fh:  # anyone could have written this
            fh.write(b'{"command": "stop"}\n')
        assert ch.poll() == 0 and ch.poll() == 0
        assert [type(c).__name__ for c in got] == ["Pause", "ChannelNotice"]
        assert "mode 666" in got[1].message and "no longer taken" in got[1].message
    finally:
        ch.close()
