"""engine.sweep: specs, the study glue, trials as ordinary runs, pruning, infeasible shapes."""

import json
import textwrap

import pytest

from engine.sweep import SpecError, default_storage, load_spec
from engine.trials import Sweep, summary_rows

ISSUE_SPEC = """
[sweep]
name = "lr-mixup"
metric = "val_acc"          # maximised
max_params = 5_000_000
[fixed]
data = "synthetic"
epochs = 3
subset = 1000
[search]
lr = { low = 0.01, high = 0.4, log = true }
mixup_prob = { choices = [0.0, 0.5, 0.9] }
width = { choices = [0.125, 0.25] }
blocks = { choices = ["1,1,1,1", "2,2,2,2"] }
"""


def write(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_the_issue_spec_is_valid_as_written(tmp_path):
    spec = load_spec(write(tmp_path, ISSUE_SPEC))
    assert spec.name == "lr-mixup" and spec.max_params == 5_000_000
    assert [p.name for p in spec.search] == ["lr", "mixup_prob", "width", "blocks"]
    assert spec.search[0].log and spec.search[3].choices == ("1,1,1,1", "2,2,2,2")


@pytest.mark.parametrize("body,words", [
    ("[search]\nlrr = { low = 0.1, high = 0.2 }", "[search] 'lrr' is not a train setting (did you mean lr?)"),
    ("[search]\nlr = { low = 0.4, high = 0.1 }", "[search] lr: the range is empty"),
    ("[search]\nwidth = { choices = [0.25, \"wide\"] }", "[search] width: choices must be values of one type"),
    ("[search]\nepochs = { choices = [\"three\"] }", "[search] epochs = 'three'"),
    ("[sweep]\nmax_params = 1000\n[search]\nwidth = { choices = [0.125, 0.25] }", "no network of this search fits"),
    ("[sweep]\nsampler = \"annealing\"", "sampler = 'annealing': use one of tpe, random, grid"),
    ("[search]\nlr = 0.1", "[search] lr must be { choices"),
    ("[fixed]\nval_size = 0", "needs a validation split"),
    ("not toml [", "is not valid TOML"),
])
def test_bad_specs_get_one_line_naming_the_key(tmp_path, body, words):
    text = "[sweep]\nname = \"x\"\n" + body if not body.startswith("[sweep]") else body.replace(
        "[sweep]", "[sweep]\nname = \"x\"", 1)
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, text))
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.timeout(600)
def test_four_trials_one_pruned_one_infeasible(tmp_path):
    spec = load_spec(write(tmp_path, """
        [sweep]
        name = "t"
        preset = "tiny"
        max_params = 60_000
        pruner = "median"
        [fixed]
        data = "synthetic"
        epochs = 3
        subset = 320
        val_size = 100
        batch_size = 32
        [search]
        lr = { choices = [0.05, 0.00001] }
        width = { choices = [0.125, 0.5] }
        blocks = { choices = ["1,1,1,1", "2,2,2,2"] }
    """))
    runs = tmp_path / "runs"
    sw = Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs), device="cpu")
    for blocks in ("1,1,1,1", "2,2,2,2"):
        sw.study.enqueue_trial({"lr": 0.05, "width": 0.125, "blocks": blocks})
    assert sw.run(2) == 2
    # then a network over the budget, a hopeless lr (pruned below the median of the first two at
    # epoch 2), and the better of the first two again (same seed: the same curve, never below it)
    first = max(summary_rows(sw.study), key=lambda r: r["curve"][-1])
    better = first["params"]
    for params in ({"lr": 0.05, "width": 0.5, "blocks": "2,2,2,2"}, {"lr": 0.00001, "width": 0.125, "blocks": "1,1,1,1"},
                   better):
        sw.study.enqueue_trial(params)
    assert sw.run(4) == 2
    rows = summary_rows(sw.study)
    states = [r["state"] for r in rows]
    assert states.count("infeasible") == 1 and rows[2]["state"] == "infeasible"  # width 0.5 x 2,2,2,2: over 60k
    assert "over --max-params 60,000" in rows[2]["reason"] and rows[2]["run_dir"] is None
    assert states == ["complete", "complete", "infeasible", "pruned", "complete"]  # lr 1e-5: below the median
    assert rows[3]["epochs"] == 2  # stopped after its second epoch
    assert rows[4]["params"] == better and rows[4]["curve"] == first["curve"]
    for r in rows:
        if r["state"] in ("complete", "pruned"):
            cfg = json.loads((__import__("pathlib").Path(r["run_dir"]) / "config.json").read_text())
            assert cfg["config"]["sweep"] == f"t#{r['number']}"
    from engine.runs import list_runs

    statuses = {str(run.path): run.status for run in list_runs(runs)}
    assert statuses[rows[3]["run_dir"]] == "pruned" and statuses[rows[0]["run_dir"]] == "completed"


@pytest.mark.timeout(300)
def test_a_trial_killed_before_its_first_checkpoint_starts_over(tmp_path):
    spec = load_spec(write(tmp_path, """
        [sweep]
        name = "k"
        preset = "tiny"
        pruner = "none"
        [fixed]
        data = "synthetic"
        epochs = 1
        width = 0.0625
        subset = 64
        val_size = 32
        batch_size = 32
        [search]
        lr = { choices = [0.05] }
    """))
    runs = tmp_path / "runs"
    empty = runs / "killed-run"  # a run folder with no checkpoint yet
    empty.mkdir(parents=True)
    sw = Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs), device="cpu")
    sw.study.enqueue_trial({"lr": 0.05}, user_attrs={"resume_from": str(empty)})
    assert sw.run(1) == 1
    (row,) = summary_rows(sw.study)
    assert row["state"] == "complete" and row["run_dir"] != str(empty)
