"""`benchmarks/cpu_proxy.py`: runs one after another, each sized to a budget (or a fixed
number of epochs), a JSON line per run and a markdown table. Checks what is written, never
a speed or an accuracy (tiny synthetic runs)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _proxy():
    spec = importlib.util.spec_from_file_location("cpu_proxy", ROOT / "benchmarks" / "cpu_proxy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_run_writes_its_line_and_the_table(tmp_path):
    proxy = _proxy()
    assert proxy.main(["--data", "synthetic", "--out", str(tmp_path), "--width", "0.0625", "--subset", "64",
                       "--val-size", "32", "--epochs", "1", "--set", "batch_size=32",
                       "--runs", "s=tiny:lookahead_every=2,warmup_start=0.2"]) == 0
    (row,) = [json.loads(x) for x in (tmp_path / "cpu-proxy.jsonl").read_text().splitlines()]
    assert row["overrides"] == {"lookahead_every": 2, "warmup_start": 0.2} and row["epochs_done"] == 1
    assert row["timing_step_s"] is None and 0 <= row["final_val_acc"] <= row["best_val_acc"] <= 1
    assert len(row["load_start"]) == 3 and row["train_s"] > 0
    table = (tmp_path / "cpu-proxy.md").read_text()
    assert table.startswith("| run | preset | epochs |") and "| s | tiny | 1/1 |" in table


def test_a_budget_buys_whole_epochs_and_at_least_one():
    proxy = _proxy()
    assert proxy.epochs_for(5, 0.5, 100) == 6  # 300 s of 50-s epochs
    assert proxy.epochs_for(5, 0.5, 101) == 5
    assert proxy.epochs_for(0.01, 2.0, 100) == 1


def test_bad_runs_and_settings_are_refused_before_training(tmp_path, capsys):
    proxy = _proxy()
    assert proxy.main(["--data", "synthetic", "--out", str(tmp_path), "--runs", "nopreset"]) == 2
    assert "label=preset" in capsys.readouterr().err
    assert proxy.main(["--data", "synthetic", "--out", str(tmp_path), "--runs", "a=speedrun:bn_momentum=3"]) == 2
    assert "--bn-momentum must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "cpu-proxy.jsonl").exists()
