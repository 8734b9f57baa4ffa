"""`benchmarks/gpu_suite.py --dry-run`: the GPU suite's own code, tiny, on the CPU.

This is the one slow test of the benchmarks (about a minute on 2 idle cores): it runs every
section of the suite end to end, so that the command is known to work the day a GPU is
there. It checks that the sections ran and wrote their report, never a speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("throughput_paper", "throughput_speedrun", "compile_paper", "compile_speedrun", "paper_epochs",
            "speedrun_seed0", "fast", "speedrun96")


@pytest.mark.timeout(600)  # about a minute when the machine is idle; generous for a shared one
def test_gpu_suite_dry_run_completes_on_the_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    (js,) = tmp_path.glob("gpu-suite-*-dry.json")
    res = json.loads(js.read_text())
    assert "errors" not in res, res.get("errors")
    missing = [k for k in SECTIONS if not res.get(k)]
    assert not missing, (missing, res["notes"])
    assert res["environment"]["dry_run"] and res["environment"]["torch"]
    t = res["throughput_speedrun"]
    assert t["compile"] and all(t[v] for v in ("model_only", "pipeline", "report_baseline"))
    assert res["speedrun_seed0"]["compile_s"] is not None and set(res["fast"]["targets"]) == {"94", "95", "96", "96.5"}
    md = js.with_suffix(".md").read_text()
    assert "DRY RUN" in md and "| speedrun |" in md and "speedrun96" in md


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
