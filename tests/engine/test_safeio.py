"""engine.safeio: reading files another process may have written, bounded and never blocking."""

import json
import os
import resource
import threading

import pytest

from engine import safeio


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    done = threading.Event()
    box = {}

    def read():
        try:
            safeio.read_json(fifo)
        except safeio.UnreadableFile as e:
            box["error"] = str(e)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert "not a regular file (a FIFO)" in box["error"]


def test_a_device_and_a_link_are_refused(tmp_path):
    with pytest.raises(safeio.UnreadableFile, match="character device"):
        safeio.read_bytes("/dev/zero")
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "metrics.jsonl"
    link.symlink_to("/dev/zero")
    with pytest.raises(safeio.UnreadableFile, match="symbolic link"):
        safeio.read_bytes(link)
    (tmp_path / "other.json").symlink_to(real)
    with pytest.raises(safeio.UnreadableFile, match="symbolic link"):
        list(safeio.iter_lines(tmp_path / "other.json"))
    assert safeio.read_json_dict(link) == {}
    with pytest.raises(FileNotFoundError):
        safeio.read_bytes(tmp_path / "missing")


def test_size_is_bounded(tmp_path):
    f = tmp_path / "big.json"
    f.write_bytes(b" " * 2000 + b"{}")
    with pytest.raises(safeio.UnreadableFile, match="larger than 1,000 bytes"):
        safeio.read_bytes(f, limit=1000)
    assert safeio.read_json(f, limit=4000) == {}


@pytest.mark.parametrize("doc", ["[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000,
                                 "[" * 100 + "]" * 100])
def test_deep_json_is_a_value_error_never_a_recursion_error(tmp_path, doc):
    with pytest.raises(ValueError, match="nested deeper than 64"):
        safeio.loads(doc)
    f = tmp_path / "x.json"
    f.write_text(doc)
    with pytest.raises(safeio.UnreadableFile, match="nested deeper"):
        safeio.read_json(f)
    assert safeio.read_json_dict(f) == {}


def test_ordinary_json_is_read():
    doc = {"config": {"blocks": [4, 3, 2, 3], "history": [{"a": [1, {"b": 2}]}]}}
    assert safeio.loads(json.dumps(doc)) == doc
    assert safeio.depth(doc) == 6 and safeio.depth(3) == 0


def test_iter_lines_skips_long_lines_and_nul_runs_in_bounded_memory(tmp_path):
    f = tmp_path / "metrics.jsonl"
    with open(f, "wb") as fh:
        fh.write(b'{"event":"A"}\n')
        fh.write(b"x" * 300_000 + b"\n")  # one over-long line
        fh.write(b'{"event":"B"}\n')
        fh.write(b"\0" * 1000 + b"\n")  # a NUL run
        fh.write(b'{"event":"C"}\n{"event":"unfinished')
    stats = {}
    assert list(safeio.iter_lines(f, max_line=1000, stats=stats)) == [b'{"event":"A"}', b'{"event":"B"}',
                                                                       b'{"event":"C"}']
    assert stats["skipped"] == 2


def test_a_zero_filled_tail_of_a_gigabyte_is_read_in_bounded_memory(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_bytes(b'{"event":"RunFinished","outcome":"completed"}\n')
    os.truncate(f, f.stat().st_size + (1 << 30))  # what some file systems leave after a crash (sparse)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = {}
    lines = list(safeio.iter_lines(f, stats=stats))
    assert lines == [b'{"event":"RunFinished","outcome":"completed"}'] and stats["skipped"] == 1
    assert safeio.last_line(f) == lines[0]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"reading grew the process by {grown_kib} KiB"


def test_last_line_finds_the_final_event_past_a_long_line(tmp_path):
    f = tmp_path / "metrics.jsonl"
    final = b'{"event":"RunFinished","outcome":"completed"}'
    f.write_bytes(b'{"event":"A"}\n' + b"y" * 500_000 + b"\n" + final + b"\n")
    assert safeio.last_line(f) == final
    f.write_bytes(b'{"event":"A"}\n' + final + b"\n" + b"y" * 500_000 + b"\n")  # the long line is last
    assert safeio.last_line(f) == final  # never a fragment of the long line
    f.write_bytes(b"z" * 500_000)
    assert safeio.last_line(f) is None
    f.write_bytes(b"")
    assert safeio.last_line(f) is None
