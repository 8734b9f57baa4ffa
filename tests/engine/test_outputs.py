"""engine.outputs: an output never replaces a file the command did not make."""

import os

import pytest

from engine.outputs import OutputRefused, check_output, safe_name


def check(path, **kw):
    return check_output(path, what="--csv", suggestion="history.csv", ours=lambda h: h.startswith(b"epoch,"), **kw)


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "runs" / "20261206-000000-tiny"
    (r / "checkpoints").mkdir(parents=True)
    (r / "config.json").write_text("{}")
    (r / "metrics.jsonl").write_text('{"event":"RunStarted"}\n')
    (r / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 weights")
    (r / "checkpoints" / "best.json").write_text("{}")
    return r


def test_new_files_and_own_outputs_are_written(tmp_path, run):
    assert check(tmp_path / "new.csv") == tmp_path / "new.csv"
    (tmp_path / "old.csv").write_text("epoch,loss\n1,2\n")
    assert check(tmp_path / "old.csv") == tmp_path / "old.csv"
    (tmp_path / "empty.csv").write_text("")
    assert check(tmp_path / "empty.csv")
    assert check(run / "history.csv")  # a new file of another name beside the run's own


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "checkpoints/best.pt", "checkpoints/best.json",
                                  "checkpoints/new.csv", ".lock"])
def test_a_file_of_a_run_folder_is_never_written_even_with_force(run, name):
    with pytest.raises(OutputRefused, match="file of the run folder"):
        check(run / name, force=True)
    assert (run / "metrics.jsonl").read_text() == '{"event":"RunStarted"}\n'


def test_checkpoints_inputs_and_foreign_files(tmp_path):
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"PK\x03\x04...")
    with pytest.raises(OutputRefused, match="checkpoint or other binary data"):
        check(ck, force=True)
    inp = tmp_path / "input.csv"
    inp.write_text("epoch,x\n")
    with pytest.raises(OutputRefused, match="a file this command reads"):
        check(inp, reads=[inp], force=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("my thesis\n")
    with pytest.raises(OutputRefused, match="add --force"):
        check(notes)
    assert check(notes, force=True) == notes


def test_special_files_and_links_are_refused_even_with_force(tmp_path):
    with pytest.raises(OutputRefused, match="not a regular file"):
        check("/dev/full", force=True)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(OutputRefused, match="not a regular file"):
        check(fifo, force=True)
    (tmp_path / "target.csv").write_text("epoch,loss\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    with pytest.raises(OutputRefused, match="symbolic link"):
        check(tmp_path / "link.csv", force=True)
    with pytest.raises(OutputRefused, match="is a folder"):
        check(tmp_path)
    with pytest.raises(OutputRefused, match="does not exist"):
        check(tmp_path / "no" / "such.csv")
    with pytest.raises(OutputRefused, match="cannot use this path"):
        check(tmp_path / ("x" * 5000))


def test_safe_name():
    assert safe_name("20261206-000000-tiny")
    for bad in ("", ".", "..", "a/b", "a\0b"):
        assert not safe_name(bad)
