"""`cifar-tui model`: a network's summary under a budget, answered without torch."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tui_trainer.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_json_fields_of_the_report_network():
    r = CliRunner().invoke(app, ["model", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["params"] == 4_993_166 and d["flops"] > 1e9 and d["within_budget"]
    assert d["budget"] == "4,993,166 of 5,000,000 (99.9%)"
    assert [(s["blocks"], s["channels"], s["stride"]) for s in d["stages"]] == [(4, 64, 1), (3, 128, 2), (2, 128, 1),
                                                                               (3, 256, 2)]


def test_a_shape_over_the_budget_says_by_how_much_and_exits_1():
    r = CliRunner().invoke(app, ["model", "--blocks", "2,2,2,2", "--channels", "64,128,256,512", "--se", "blocks"])
    assert r.exit_code == 1
    assert "over by" in r.output and "stage 4" in r.output and "256x4x4" not in r.output
    r = CliRunner().invoke(app, ["model", "--width", "0.5", "--max-params", "2000000"])
    assert r.exit_code == 0 and "of 2,000,000" in r.output


def test_impossible_shapes_get_one_line_and_exit_2():
    for argv, words in ((["--channels", "64,128,128,100000"], "more than 4,096"),
                        (["--blocks", "500,3,2,3"], "508 blocks"),
                        (["--blocks", "4,3"], "--channels gives 4 values for 2 stages"),
                        (["--se", "maybe"], "--se 'maybe'")):
        r = CliRunner().invoke(app, ["model", *argv])
        assert r.exit_code == 2, (argv, r.output)
        assert words in r.output and "Traceback" not in r.output and r.output.count("\n") == 1


def test_model_imports_no_torch():
    code = ("import sys; from tui_trainer.cli import main\n"
            "try:\n    main(['model', '--json'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "NO-TORCH" in r.stderr, r.stderr[-2000:]
