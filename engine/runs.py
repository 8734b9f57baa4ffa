"""The run catalogue and small files of a run folder, without torch.

Listing runs, reading ``config.json`` / ``metrics.jsonl`` / checkpoint summaries
and stored evaluations, and atomic writes of small files: everything a UI needs
to show runs quickly, importable without paying torch's import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional


def default_runs_dir() -> Path:
    env = os.environ.get("CIFAR_TUI_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cifar-tui", appauthor=False)) / "runs"



# --------------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(data, indent=2, default=str) + "\n").encode()))


# --------------------------------------------------------------------- run folders


def read_config_json(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Read ``metrics.jsonl``; returns (events as dicts, number of unreadable lines skipped)."""
    events, bad = [], 0
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(d, dict) and "event" in d:
                    events.append(d)
                else:
                    bad += 1
    except FileNotFoundError:
        pass
    return events, bad


# ------------------------------------------------------------------------ catalogue


def eval_results_path(checkpoint: Path) -> Path:
    """Where evaluations of ``checkpoint`` are stored (a small JSON beside it)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".eval.json")


def read_eval_results(checkpoint: Path) -> dict[str, Any]:
    """Stored evaluations of a checkpoint: ``{data source: result dict}`` (empty if none)."""
    try:
        data = json.loads(eval_results_path(checkpoint).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def store_eval_result(checkpoint: Path, source: str, result: dict[str, Any]) -> None:
    results = read_eval_results(checkpoint)
    results[source] = result
    atomic_write_json(eval_results_path(checkpoint), results)


def list_runs(runs_dir: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """Every run under ``runs_dir`` with its checkpoints, newest run first.

    Reads only the small JSON files (config.json, the summary beside each
    checkpoint, stored evaluations), never a checkpoint itself, so it is fast.
    Each run: ``{"run_id", "path", "created", "preset", "data", "width", "params",
    "epochs", "checkpoints": [{"name", "path", "epoch", "val_acc", "test_acc",
    "test_source", "size", "kind", "mtime"}]}``.
    """
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for d in sorted(root.iterdir(), reverse=True):
        if not d.is_dir() or not (d / "checkpoints").is_dir() and not (d / "config.json").is_file():
            continue
        info = read_config_json(d)
        cfg = info.get("config", {}) if isinstance(info.get("config"), dict) else {}
        ckpts = []
        cdir = d / "checkpoints"
        for p in sorted(cdir.glob("*.pt")) if cdir.is_dir() else []:
            if p.name.startswith("."):
                continue
            try:
                summary = json.loads(p.with_suffix(".json").read_text())
                if not isinstance(summary, dict):
                    summary = {}
            except (OSError, ValueError):
                summary = {}
            evals = read_eval_results(p)
            test_acc, test_source = None, None
            for src, res in evals.items():
                if isinstance(res, dict) and isinstance(res.get("accuracy"), (int, float)):
                    test_acc, test_source = res["accuracy"], src
            try:
                st = p.stat()
            except OSError:
                continue
            ckpts.append({
                "name": p.name, "path": str(p), "epoch": summary.get("epoch"), "val_acc": summary.get("val_acc"),
                "test_acc": test_acc, "test_source": test_source, "size": st.st_size,
                "kind": summary.get("kind", ""), "mtime": st.st_mtime, "step_in_epoch": summary.get("step_in_epoch", 0),
            })
        runs.append({
            "run_id": d.name, "path": str(d), "created": info.get("created", ""),
            "preset": cfg.get("preset"), "data": (info.get("data") or {}).get("source", cfg.get("data")),
            "width": cfg.get("width"), "epochs": cfg.get("epochs"),
            "params": (info.get("model") or {}).get("params"), "device": info.get("device"),
            "config": info, "checkpoints": ckpts,
        })
    return runs


