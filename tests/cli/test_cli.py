import json
import subprocess
import sys

import pytest
import torch

from tests.procs import TRAIN, error_line, invoke

SMALL = TRAIN[1:]  # the small run's options, without the command


def test_help_lists_commands_and_options():
    r = invoke("--help")
    assert r.exit_code == 0 and "train" in r.output and "--no-ui" in r.output
    r = invoke("train", "--help")
    for flag in ("--data", "--preset", "--epochs", "--width", "--batch-size", "--lr", "--mixup", "--no-mixup",
                 "--subset", "--val-size", "--seed", "--device", "--runs-dir", "--resume"):
        assert flag in r.output


def test_help_does_not_import_torch():
    code = "import sys; from tui_trainer.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_headless_train_writes_the_run_directory(tmp_path):
    r = invoke("--no-ui", "train", *SMALL, "--epochs", "2", "--runs-dir", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output
    (run,) = list((tmp_path / "r").iterdir())
    assert f"run folder:      {run}" in r.output
    assert f"best checkpoint: {run / 'checkpoints' / 'best.pt'}" in r.output
    assert r.output.count("epoch   ") >= 2 and "val " in r.output
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["epochs"] == 2 and info["data"]["source"] == "synthetic"
    assert info["model"]["params"] > 0 and "torch" in info["versions"] and info["device"] == "cpu"
    for name in ("last.pt", "best.pt"):
        assert (run / "checkpoints" / name).is_file()
    events = [json.loads(l)["event"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "RunStarted" and events.count("EpochDone") == 2


def test_resume_continues_in_the_same_run(tmp_path):
    r = invoke("--no-ui", "train", *SMALL, "--epochs", "1", "--runs-dir", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output
    (run,) = list((tmp_path / "r").iterdir())
    r = invoke("--no-ui", "train", "--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output and list((tmp_path / "r").iterdir()) == [run]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    # the run folder itself works too, and a contradicting flag is refused
    line = error_line(invoke("--no-ui", "train", "--resume", str(run), "--epochs", "3", "--width", "0.5"), 1)
    assert "--width" in line and "contradicts" in line


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--width", "0"], "--width"),
        (["--preset", "huge"], "--preset"),
    ],
)
def test_impossible_settings_exit_2(flags, fragment, tmp_path):
    line = error_line(invoke("--no-ui", "train", "--data", "synthetic", *flags), 2)
    assert fragment in line
    assert not (tmp_path / "runs").exists()


def _bad_source(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nowhere"
    if kind == "nozip":
        p = tmp_path / "data.zip"
        p.write_bytes(b"this is not a zip")
        return p
    p = tmp_path / "noclasses"
    p.mkdir()
    (p / "readme.txt").write_text("no images here")
    return p


@pytest.mark.parametrize("kind, fragment", [("missing", "no such file"), ("nozip", "not a readable zip"),
                                            ("noclasses", "no class sub-folders")])
def test_bad_data_exits_1_with_one_line(tmp_path, kind, fragment):
    path = _bad_source(tmp_path, kind)
    line = error_line(invoke("--no-ui", "train", "--data", str(path), "--preset", "tiny"), 1)
    assert fragment in line
    assert not (tmp_path / "runs").exists()  # nothing written


def test_resume_from_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "x.pt"
    junk.write_bytes(b"\x00" * 100)
    assert "not a readable checkpoint" in error_line(invoke("--no-ui", "train", "--resume", str(junk)), 1)
    assert "no such run folder or checkpoint" in error_line(invoke("--no-ui", "train", "--resume", str(tmp_path / "none.pt")), 2)


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "tui_trainer", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout


def test_sizes_are_short():
    from tui_trainer.formatting import format_size

    assert [format_size(n) for n in (512, 9_728, 722_000, 2_600_000)] == ["512B", "9.5K", "705K", "2.5M"]


def test_headless_end_says_parameters_val_and_test_accuracy_and_stores_the_evaluation(tmp_path):
    from engine.runs import latest_evaluation

    r = invoke("--no-ui", "train", *SMALL, "--epochs", "1", "--runs-dir", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output
    (run,) = list((tmp_path / "r").iterdir())
    params = json.loads((run / "config.json").read_text())["model"]["params"]
    assert f"parameters:      {params:,} trainable" in r.output
    assert "(val acc " in r.output
    assert "test accuracy:   " in r.output and "synthetic:test" in r.output, r.output
    stored = latest_evaluation(run / "checkpoints" / "best.pt")
    assert stored is not None and stored.accuracy is not None
