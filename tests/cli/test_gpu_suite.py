"""`benchmarks/gpu_suite.py`: the GPU measurement as one command that fits a lease.

The dry run is the suite's own code, tiny, on the CPU with inductor: it proves that the
command works the day a GPU is there (each section in its own process, a JSON line per
section as it ends, the deadline enforced). It checks what was written, never a speed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = [sys.executable, "benchmarks/gpu_suite.py"]
COMMON = ("section", "ok", "seconds", "device", "gpu", "torch", "cuda", "commit")


@pytest.fixture(scope="module")
def inductor_cache(tmp_path_factory):
    """One compile cache for the module's dry runs (the first one compiles cold)."""
    return tmp_path_factory.mktemp("suite-cache")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="2")


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "gpu-suite-part1-dry.jsonl").read_text().splitlines()]


@pytest.mark.timeout(600)
def test_dry_run_writes_one_line_per_section_with_inductor(tmp_path, inductor_cache):
    r = subprocess.run([*SUITE, "--dry-run", "--out", str(tmp_path), "--cache-dir", str(inductor_cache),
                        "--commit", "abc1234", "--budget-min", "8"], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=580)
    assert r.returncode == 0, r.stderr[-4000:]
    lines = _lines(tmp_path)
    assert [x["section"] for x in lines] == ["preflight", "data", "throughput_speedrun", "speedrun_to_94", "sync_census"]
    assert all(x["ok"] for x in lines), [(x["section"], x.get("error"), x.get("log_tail")) for x in lines if not x["ok"]]
    for x in lines:
        assert all(k in x for k in COMMON) and x["commit"] == "abc1234" and x["device"] == "cpu"
    pre = lines[0]
    assert pre["default"]["compile_backend"] == "inductor" and pre["engine"]["compile_backend"] == "inductor"
    assert pre["default"]["amp_bf16"] and pre["default"]["channels_last"] and pre["engine"]["compile_ok"]
    assert isinstance(pre["recompiles"], int) and isinstance(pre["graph_breaks"], int)
    assert lines[2]["compile_ok"] and lines[3]["compile_ok"]
    md = (tmp_path / "gpu-suite-part1-dry.md").read_text()
    assert "DRY RUN" in md and "| throughput_speedrun | yes |" in md


@pytest.mark.timeout(300)
def test_a_suite_killed_half_way_keeps_the_sections_it_finished(tmp_path, inductor_cache):
    p = subprocess.Popen([*SUITE, "--dry-run", "--out", str(tmp_path), "--cache-dir", str(inductor_cache),
                          "--sections", "data,throughput_speedrun"], cwd=ROOT, env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "gpu-suite-part1-dry.jsonl"
    try:
        t0 = time.monotonic()
        while not (out.exists() and out.read_text().endswith("\n")) and time.monotonic() - t0 < 200:
            assert p.poll() is None, "the suite ended before it could be killed"
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)  # the suite and its running section, as a lease's end would
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    lines = _lines(tmp_path)
    assert [x["section"] for x in lines] == ["data"] and lines[0]["ok"]
    assert "| data | yes |" in (tmp_path / "gpu-suite-part1-dry.md").read_text()


@pytest.mark.timeout(300)
def test_the_budget_stops_a_running_section_at_the_deadline(tmp_path):
    # a cold compile cache: the preflight's first compile alone takes far longer than the budget
    t0 = time.monotonic()
    r = subprocess.run([*SUITE, "--dry-run", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cold"),
                        "--sections", "preflight,data", "--budget-min", "0.15"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=250)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    pre, data = _lines(tmp_path)
    assert not pre["ok"] and "deadline" in pre["error"] and pre["seconds"] < 15
    assert not data["ok"] and "left of the budget" in data["skipped"]


def test_a_compile_that_fell_back_to_eager_fails_the_section():
    import torch._dynamo

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_sections

    def failing(gm, example_inputs):  # a backend that exists but cannot compile this graph
        raise RuntimeError("this backend cannot compile anything")

    if "cifar_tui_failing" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(compiler_fn=failing, name="cifar_tui_failing")
    plan = dict(dry_run=True, device="cpu", width=0.0625, data=None, backend="cifar_tui_failing",
                steps={"speedrun": 2}, warmup=1, repeats=1, batch={"speedrun": 16}, variants="pipeline", workers=0)
    with pytest.raises(gpu_sections.SectionFailed, match="fell back to eager"):
        gpu_sections.SECTIONS["throughput_speedrun"](plan)


def test_bad_arguments_are_refused(tmp_path):
    r = subprocess.run([*SUITE, "--dry-run", "--out", str(tmp_path), "--sections", "nope"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--sections: nope not in part 1" in r.stderr


def test_train_offers_compile_and_the_checkpoint_cadence():
    from typer.testing import CliRunner

    from tui_trainer.cli import app

    r = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for flag in ("--compile", "--no-compile", "--compile-mode", "--save-every-epochs", "--save-every", "speedrun"):
        assert flag in r.output, flag
    r = CliRunner().invoke(app, ["--no-ui", "train", "--data", "synthetic", "--compile-mode", "fastest"])
    assert r.exit_code == 2 and "unknown --compile-mode 'fastest'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["--no-ui", "train", "--data", "synthetic", "--save-every-epochs", "-1"])
    assert r.exit_code == 2 and "--save-every-epochs must be a whole number" in r.output
