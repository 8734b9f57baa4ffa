"""What the control channel costs a training step: the real trainer with its channel
open (as every run has it) and with it switched off, interleaved.

    python benchmarks/control_cost.py --device cuda --preset fast --steps 300 --repeats 5
    python benchmarks/control_cost.py --width 0.25 --steps 12 --repeats 3      # a CPU (noisy: a quiet machine only)

Each round trains ``throughput.py``'s pipeline variant (``Trainer.run()`` in a
non-main thread, synthetic data, ``--warmup`` untimed steps then ``--steps``
timed ones) twice: ``channel_on`` (the trainer opens ``RUN/.control`` and its
thread looks at it four times a second, as in every run) and ``channel_off``
(``engine.control.open_for_trainer`` replaced by a stub, so no file and no
thread). The rounds alternate the order. Prints one JSON line (median images/s
of each, and their ratio), then a table. The design adds nothing to the step
itself (see docs/control.md), so the ratio should be 1 within the noise of
the machine; run it only on a quiet one and record it in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import throughput  # noqa: E402


def one(variant: str, cfg, bundle, args, runs_dir: str) -> float:
    from engine import control

    real = control.open_for_trainer
    if variant == "channel_off":
        control.open_for_trainer = lambda *a, **k: None  # type: ignore[assignment]
    try:
        return throughput.in_thread(throughput.bench_pipeline, cfg, bundle, args.batch_size, args.warmup,
                                    args.steps, runs_dir)
    finally:
        control.open_for_trainer = real  # type: ignore[assignment]


def main(argv: Optional[list[str]] = None) -> int:
    args = throughput.parse_args(argv)
    from engine.config import make_config
    from engine.data import make_synthetic
    from engine.device import resolve_device

    cfg = make_config(args.preset, width=args.width, batch_size=args.batch_size, device=args.device,
                      compile=args.compile)
    device = resolve_device(cfg.device)
    bundle = make_synthetic(n_train=args.batch_size * (args.warmup + args.steps), n_test=10)
    rates: dict[str, list[float]] = {"channel_on": [], "channel_off": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for r in range(args.repeats):
            order = ("channel_on", "channel_off") if r % 2 == 0 else ("channel_off", "channel_on")
            for variant in order:
                rates[variant].append(one(variant, cfg, bundle, args, runs_dir))
    on, off = statistics.median(rates["channel_on"]), statistics.median(rates["channel_off"])
    res: dict[str, Any] = {
        "device": throughput.device_name(device), "preset": args.preset, "width": cfg.width,
        "batch": args.batch_size, "steps": args.steps, "repeats": args.repeats,
        "channel_on": on, "channel_off": off, "ratio_on_off": on / off if off else None, "rounds": rates,
    }
    print(json.dumps(res))
    if not args.json_only:
        print(f"{'variant':<12} {'median img/s':>14}   rounds")
        for name, values in rates.items():
            print(f"{name:<12} {statistics.median(values):>14,.0f}   " + ", ".join(f"{v:,.0f}" for v in values))
        print(f"on / off: {res['ratio_on_off']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
