"""The sweep machinery's cost per trial: seconds from one trial's end to the next one's first step.

    python benchmarks/sweep_overhead.py --trials 5

Runs a sweep of tiny trials (synthetic data, width 0.0625, one short epoch each) with the
default SQLite storage in a temporary runs folder, and times, for each trial after the
first, the gap between the previous trial's ``RunFinished`` and this trial's first
``StepDone``: telling the study, asking for the next trial, building its config, run
folder, data and model. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args(argv)

    from engine import events as ev
    from engine.sweep import default_storage, parse_spec
    from engine.trials import Sweep

    spec = parse_spec({"sweep": {"name": "overhead", "preset": "tiny", "pruner": "none"},
                       "fixed": {"data": "synthetic", "epochs": 1, "subset": 256, "val_size": 64,
                                 "batch_size": 64, "width": 0.0625, "log_every": 1},
                       "search": {"lr": {"low": 0.01, "high": 0.1, "log": True}}})
    ends: list[float] = []
    firsts: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, ev.RunFinished):
            ends.append(time.perf_counter())
        elif isinstance(event, ev.StepDone) and len(firsts) == len(ends):
            firsts.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as runs:
        sweep = Sweep(spec, default_storage(Path(runs), spec.name), runs_dir=runs, device="cpu", listeners=[on_event])
        t0 = time.perf_counter()
        sweep.run(args.trials)
        total = time.perf_counter() - t0
    gaps = [firsts[i + 1] - ends[i] for i in range(min(len(ends), len(firsts)) - 1)]
    print(json.dumps({"benchmark": "sweep_overhead", "trials": len(ends), "total_s": round(total, 2),
                      "first_trial_start_s": round(firsts[0] - t0, 2) if firsts else None,
                      "gap_s": [round(g, 3) for g in gaps],
                      "gap_median_s": round(statistics.median(gaps), 3) if gaps else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
