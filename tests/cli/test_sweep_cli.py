"""`cifar-tui --no-ui sweep` in real processes: two processes on one study, a killed sweep
resumed, --status --json, and bad specs or storages refused with one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.procs import ROOT, env_for, events_of, tiny_spec, wait_for
from tui_trainer.cli import app

def write_spec(tmp_path, name="s", subset=200, batch=32, more="") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(tiny_spec(name, subset=subset, batch=batch, more=more))
    return p


def sweep_cmd(tmp_path, spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tui_trainer", "--no-ui", "sweep", str(spec), "--runs-dir", str(tmp_path / "runs"),
            "--device", "cpu", *extra]


def status(tmp_path, name: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tui_trainer", "sweep", "--name", name, "--status", "--json",
                          "--runs-dir", str(tmp_path / "runs"), *extra], cwd=ROOT, env=env_for(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def run_folders(tmp_path) -> list[Path]:
    return sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p.name != "sweeps")


def assert_finished(run: Path) -> dict:
    final = events_of(run)[-1]
    assert final["event"] == "RunFinished", (run, final)
    return final


@pytest.mark.timeout(600)
@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_two_processes_share_one_study(tmp_path, journal):
    spec = write_spec(tmp_path)
    extra = ["--storage", str(tmp_path / "study.log")] if journal else []
    procs = [subprocess.Popen(sweep_cmd(tmp_path, spec, "--trials", "4", *extra), cwd=ROOT, env=env_for(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "Traceback" not in "".join(outs)
    doc = status(tmp_path, "s", *extra)  # (c) the trials with their states and values
    rows = doc["trials"]
    counted = [r for r in rows if r["state"] == "complete"]
    assert len(counted) == 4, rows
    assert all(0 < r["value"] <= 1 and r["epochs"] == 2 and r["run_dir"] for r in counted)
    assert all(r["state"] in ("complete", "failed") for r in rows)  # at most surplus asks, never trained
    # no trial trained twice: one run folder per counted trial, each tagged with its own number
    folders = run_folders(tmp_path)
    assert sorted(str(f) for f in folders) == sorted(r["run_dir"] for r in counted)
    tags = sorted(json.loads((f / "config.json").read_text())["config"]["sweep"] for f in folders)
    assert tags == sorted(f"s#{r['number']}" for r in counted)
    for f in folders:
        assert assert_finished(f)["outcome"] == "completed"


@pytest.mark.timeout(600)
def test_a_killed_sweep_resumes_its_trial(tmp_path):
    # long enough a trial to kill it in the middle, with a checkpoint after each epoch
    spec = write_spec(tmp_path, subset=1000, batch=8, more="save_every_epochs = 1")
    cmd = sweep_cmd(tmp_path, spec, "--trials", "2")
    p = subprocess.Popen(cmd, cwd=ROOT, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def saved() -> bool:  # the first epoch's checkpoint, in the middle of the second epoch
            folders = run_folders(tmp_path) if (tmp_path / "runs").exists() else []
            return any((f / "checkpoints" / "last.pt").is_file() and events_of(f)[-1]["event"] != "RunFinished"
                       for f in folders)

        wait_for(lambda: saved() or p.poll() is not None, "the first trial's first checkpoint", timeout=240)
        assert p.poll() is None, "the sweep ended before it could be killed"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    (killed,) = run_folders(tmp_path)
    assert events_of(killed)[-1]["event"] != "RunFinished"
    out = subprocess.run(cmd, cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming: trial(s) 0" in out.stdout
    rows = status(tmp_path, "s")["trials"]
    assert rows[0]["state"] == "failed" and rows[0]["run_dir"] == str(killed)
    resumed = [r for r in rows[1:] if r["run_dir"] == str(killed)]
    assert len(resumed) == 1 and resumed[0]["state"] == "complete" and resumed[0]["params"] == rows[0]["params"]
    assert sum(r["state"] == "complete" for r in rows) == 2
    folders = run_folders(tmp_path)
    assert len(folders) == 2 and killed in folders
    for f in folders:
        assert assert_finished(f)["outcome"] == "completed"
    assert any(d["event"] == "RunResumed" or d.get("resumed") for d in events_of(killed)) or \
        sum(d["event"] == "RunStarted" for d in events_of(killed)) == 2


# ------------------------------------------------------------------ refused with one line

cli = CliRunner()


def one_error_line(result, code):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("body,code,words", [
    ("[sweep]\nname = \"x\"\n[search]\nlrr = { low = 0.1, high = 0.2 }", 2, "'lrr' is not a train setting"),
    ("not toml [", 2, "is not valid TOML"),
    ("[sweep]\nname = \"x\"\n[search]\nlr = 0.1", 2, "[search] lr must be"),
    ("\xff\xfe", 2, "cannot be read"),
])
def test_bad_spec_files_are_refused_with_one_line(tmp_path, body, code, words):
    p = tmp_path / "bad.toml"
    p.write_bytes(body.encode("latin-1"))
    r = cli.invoke(app, ["--no-ui", "sweep", str(p), "--trials", "2", "--runs-dir", str(tmp_path / "runs")])
    assert words in one_error_line(r, code)
    assert not (tmp_path / "runs").exists() or not run_folders(tmp_path)


def test_a_missing_spec_file_is_refused(tmp_path):
    r = cli.invoke(app, ["--no-ui", "sweep", str(tmp_path / "nope.toml"), "--runs-dir", str(tmp_path / "runs")])
    assert "no such file" in one_error_line(r, 2)


@pytest.mark.timeout(120)
def test_an_unreachable_storage_is_refused_with_one_line(tmp_path):
    spec = write_spec(tmp_path)
    url = "postgresql://nobody:secret@127.0.0.1:1/x"
    r = cli.invoke(app, ["--no-ui", "sweep", str(spec), "--trials", "2", "--runs-dir", str(tmp_path / "runs"),
                         "--storage", url])
    line = one_error_line(r, 1)
    assert "cannot open the sweep storage" in line and "secret" not in line
    assert not (tmp_path / "runs").exists() or not run_folders(tmp_path)
    r = cli.invoke(app, ["sweep", "--name", "s", "--status", "--storage", url])
    assert "secret" not in one_error_line(r, 1)


# ------------------------------------------------------------------ PostgreSQL


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_cluster():
    """(as_user prefix, why not): how to run initdb/pg_ctl here, or the reason to skip."""
    import os
    import shutil

    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        return None, "initdb/pg_ctl are not on PATH"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return None, "the psycopg2 driver is not installed (pip install psycopg2-binary)"
    if os.geteuid() != 0:
        return [], None
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None, "running as root, initdb refuses root, and there is no user 'nobody' to run it as"
    if not shutil.which("runuser"):
        return None, "running as root, initdb refuses root, and runuser is missing"
    return ["runuser", "-u", "nobody", "--"], None


@pytest.mark.timeout(600)
def test_two_trials_through_postgresql(tmp_path):
    import os
    import shutil
    import tempfile

    as_user, why = _postgres_cluster()
    if why:
        pytest.skip(why)
    # a folder the cluster's user can own (pytest's tmp_path is private to root)
    base = Path(tempfile.mkdtemp(prefix="cifar-tui-pg-"))
    os.chmod(base, 0o755)
    if as_user:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
    data, port = base / "data", _free_port()
    pg = lambda *a: subprocess.run([*as_user, *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        r = pg("initdb", "-D", str(data), "-A", "trust", "-U", "sweeper", "--no-sync")
        assert r.returncode == 0, r.stderr
        r = pg("pg_ctl", "start", "-w", "-D", str(data), "-l", str(base / "log"),
               "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1")
        assert r.returncode == 0, r.stderr + (base / "log").read_text()
        url = f"postgresql://sweeper@127.0.0.1:{port}/postgres"
        spec = write_spec(tmp_path, name="pg")
        out = subprocess.run(sweep_cmd(tmp_path, spec, "--trials", "2", "--storage", url), cwd=ROOT,
                             env=env_for(tmp_path), capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = status(tmp_path, "pg", "--storage", url)["trials"]
        assert [r["state"] for r in rows] == ["complete", "complete"]
        assert not (tmp_path / "runs" / "sweeps").exists()  # the study lives in PostgreSQL, not SQLite
        for f in run_folders(tmp_path):
            assert_finished(f)
    finally:
        pg("pg_ctl", "stop", "-D", str(data), "-m", "immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("flag", ["--status", "--best"])
def test_reading_a_study_that_is_not_there_creates_nothing(tmp_path, flag):
    runs = tmp_path / "runs"
    r = cli.invoke(app, ["sweep", "--name", "nope", flag, "--runs-dir", str(runs)])
    assert "no sweep named 'nope'" in one_error_line(r, 2)
    assert not runs.exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x" * 65])
def test_a_study_name_that_is_a_path_is_refused(tmp_path, name):
    runs = tmp_path / "runs"
    r = cli.invoke(app, ["sweep", "--name", name, "--status", "--runs-dir", str(runs)])
    assert "must be letters, digits" in one_error_line(r, 2)
    assert not runs.exists() and not (tmp_path / "escape.db").exists()
