"""The GPU suite's sections, each run in its own process by ``gpu_suite.py``.

    python benchmarks/gpu_sections.py SECTION --plan PLAN.json --result RESULT.json

A section reads the suite's plan (sizes for a GPU or for the CPU dry run, the data path),
measures one thing, and writes its figures as one JSON object to ``--result``. It runs in
a fresh process so that compiler state, CUDA graphs (always built from this process's main
thread) and a CUDA error stay inside it; the orchestrator kills it at its deadline.

Every section that compiles records ``compile_ok``: a compile that fell back to eager makes
the section fail (it says so) instead of reporting eager speed as compiled speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import throughput  # noqa: E402
import time_to_accuracy as tta  # noqa: E402


class SectionFailed(Exception):
    """The section ran but its result must not count (e.g. a compile that fell back)."""


def _set_up_torch(plan: dict) -> None:
    """At process start, before any measurement: cudnn's autotuner on, CPU threads fixed."""
    import torch

    torch.backends.cudnn.benchmark = True
    if plan["dry_run"]:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _tp_args(plan: dict, preset: str, variants: str, mode: str | None, steps: int | None = None,
             batch: int | None = None) -> argparse.Namespace:
    """``throughput.py``'s arguments; ``mode`` None: eager, else a torch.compile mode."""
    argv = ["--preset", preset, "--batch-size", str(batch or plan["batch"][preset]),
            "--steps", str(steps or plan["steps"][preset]), "--warmup", str(plan["warmup"]),
            "--repeats", str(plan["repeats"]), "--device", plan["device"], "--workers", str(plan["workers"]),
            "--variants", variants, "--main-thread"]
    if plan["width"] is not None:
        argv += ["--width", str(plan["width"])]
    if mode is None:
        argv += ["--no-compile"]
    else:
        argv += ["--compile", "--compile-mode", mode]
        if plan["backend"]:
            argv += ["--compile-backend", plan["backend"]]
    args = throughput.parse_args(argv)
    args.cpu_bf16 = plan["dry_run"]  # the dry run exercises bf16 autocast on the CPU too
    return args


def _check_compiled(res: dict, what: str) -> None:
    if res.get("compile_ok") is False:
        raise SectionFailed(f"{what}: torch.compile fell back to eager ({res.get('compile_message') or 'no reason given'})")


def _bundle(plan: dict):
    from engine.data import load_data, make_synthetic

    if plan["data"] is None:
        return make_synthetic(n_train=plan["subset"] + plan["val_size"] + 100, n_test=10)
    return load_data(plan["data"])


# ------------------------------------------------------------------ sections


def preflight(plan: dict) -> dict:
    """bf16 autocast, channels_last and the compiled speedrun step: 20 steps of the model
    alone (default mode, then reduce-overhead from this main thread where CUDA allows), then
    20 steps of the engine itself. Recompiles and graph breaks are counted by the
    orchestrator from this process's ``TORCH_LOGS`` output."""
    out: dict[str, Any] = {}
    modes = ["default"] + (["reduce-overhead"] if plan["device"].startswith("cuda") else [])
    for mode in modes:
        res = throughput.run(_tp_args(plan, "speedrun", "model_only", mode, steps=20))
        _check_compiled(res, f"model only, {mode}")
        out[mode] = {k: res[k] for k in ("model_only", "first_step_s", "compile_backend", "amp_bf16", "channels_last")}
    res = throughput.run(_tp_args(plan, "speedrun", "pipeline", "default", steps=20))
    _check_compiled(res, "engine")
    out["engine"] = {k: res[k] for k in ("pipeline", "compile_s", "compile_ok", "compile_backend")}
    out["compile_ok"] = True
    return out


def data(plan: dict) -> dict:
    """Decode the training images once into the shared cache (the later sections read it)."""
    t = time.monotonic()
    bundle = _bundle(plan)
    return {"source": bundle.source, "images": len(bundle.train), "load_s": round(time.monotonic() - t, 1)}


def throughput_section(preset: str) -> Callable[[dict], dict]:
    def run(plan: dict) -> dict:
        """The model alone beside the full engine (and the report's DataLoader)."""
        compiled = plan["backend"] is not None or plan["device"].startswith("cuda")
        mode = "default" if preset in ("speedrun", "fast") and compiled else None
        res = throughput.run(_tp_args(plan, preset, plan["variants"], mode))
        if mode is not None:
            _check_compiled(res, preset)
        return res

    return run


def compile_modes(plan: dict) -> dict:
    """The model alone, eager and compiled in each mode: first step (compile) and speed."""
    out = []
    for preset in ("paper", "speedrun"):
        for mode in plan["modes"]:
            try:
                res = throughput.run(_tp_args(plan, preset, "model_only", None if mode == "eager" else mode))
                _check_compiled(res, f"{preset} {mode}")
                out.append({"preset": preset, "mode": mode, "ok": True, "images_per_s": res["model_only"],
                            "first_step_s": res["first_step_s"], "backend": res["compile_backend"]})
            except Exception as e:  # noqa: BLE001 - one mode's failure is that mode's figure
                out.append({"preset": preset, "mode": mode, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]})
    return {"modes": out, "compile_ok": all(m["ok"] for m in out)}


def training_run(preset: str, seed: int = 0, extra: dict | None = None, epochs_key: str | None = None,
                 compile_: bool | None = None) -> Callable[[dict], dict]:
    def run(plan: dict) -> dict:
        """A full schedule on the held-out validation split: time to each target accuracy."""
        overrides = dict(extra or {})
        if plan["backend"] and compile_ is not False and preset in ("speedrun", "fast"):
            overrides["compile_backend"] = plan["backend"]
        argv = ["--preset", preset, "--data", plan["data"] or "synthetic", "--device", plan["device"],
                "--seed", str(seed), "--val-size", str(plan["val_size"]), "--val-every", "1",
                "--targets", plan["targets"], "--json-only"]
        epochs = plan["epochs"].get(epochs_key or preset)
        for flag, value in (("--epochs", epochs), ("--width", plan["width"]), ("--subset", plan["subset"])):
            if value is not None:
                argv += [flag, str(value)]
        if compile_ is not None:
            argv += ["--compile" if compile_ else "--no-compile"]
        res = tta.run(tta.parse_args(argv), bundle=_bundle(plan), overrides=overrides)
        if res.get("compile_s") is not None and res.get("compile_ok") is False:
            raise SectionFailed(f"{preset}: torch.compile fell back to eager")
        return res

    return run


def paper_epochs(plan: dict) -> dict:
    """The paper preset's seconds per epoch, eager and compiled."""
    out = {}
    for label, comp in (("eager", False), ("compiled", True)):
        res = training_run("paper", compile_=comp)(plan)
        out[label] = {k: res[k] for k in ("epoch_s", "val_s", "compile_s", "compile_ok", "train_images")}
    return out


def sync_census(plan: dict) -> dict:
    """Host-device syncs of the engine's steps after warm-up, eager ``paper`` and compiled
    ``speedrun``, each attributed to the file and line that caused it (CUDA's sync debug
    mode warns at each; the warning carries the Python frame that made the call)."""
    import torch

    from engine.config import make_config
    from engine.trainer import Trainer

    if not plan["device"].startswith("cuda"):
        return {"skipped": "CUDA only (torch.cuda.set_sync_debug_mode)"}
    bundle = _bundle(plan)
    out = {}
    for preset, batch in (("paper", 128), ("speedrun", 1024)):
        n = min(len(bundle.train), plan["sync_steps"] * batch)
        armed = {"on": False}

        def arm(event) -> None:  # count only after the warm-up: from the first logged step on
            from engine import events as ev

            if isinstance(event, ev.StepDone) and not armed["on"]:
                armed["on"] = True
                torch.cuda.set_sync_debug_mode("warn")

        with tempfile.TemporaryDirectory() as runs:
            cfg = make_config(preset, epochs=1, subset=n, val_size=1000, device=plan["device"], runs_dir=runs,
                              log_every=50, log_seconds=0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    outcome = Trainer(cfg, data=bundle, listeners=[arm]).run()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        where: dict[str, int] = {}
        for w in caught:
            if "synchroniz" in str(w.message).lower():
                key = f"{os.path.relpath(w.filename, REPO)}:{w.lineno}"
                where[key] = where.get(key, 0) + 1
        out[preset] = {"outcome": outcome, "steps": -(-n // batch), "log_every": 50, "syncs": sum(where.values()),
                       "where": where}
    return out


SECTIONS: dict[str, Callable[[dict], dict]] = {
    "preflight": preflight,
    "data": data,
    "throughput_speedrun": throughput_section("speedrun"),
    "speedrun_to_94": training_run("speedrun"),
    "sync_census": sync_census,
    "throughput_paper": throughput_section("paper"),
    "compile_modes": compile_modes,
    "paper_epochs": paper_epochs,
    "fast": training_run("fast"),
    "speedrun96": training_run("speedrun", extra={"crop_padding": 4, "cutout": 12}, epochs_key="speedrun96"),
    "speedrun_seed1": training_run("speedrun", seed=1),
    "speedrun_seed2": training_run("speedrun", seed=2),
    "speedrun_lowres": training_run("speedrun", extra={"low_res_size": 24, "low_res_epochs": 6}),
    "speedrun_ema": training_run("speedrun", extra={"ema_decay": 0.99}),
    "speedrun_lookahead": training_run("speedrun", extra={"lookahead_every": 5}),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("section", choices=sorted(SECTIONS))
    p.add_argument("--plan", required=True)
    p.add_argument("--result", required=True)
    a = p.parse_args(argv)
    plan = json.loads(Path(a.plan).read_text())
    _set_up_torch(plan)
    t = time.monotonic()
    try:
        figures = SECTIONS[a.section](plan)
        result = {"ok": True, **figures}
    except SectionFailed as e:
        result = {"ok": False, "error": str(e)}
    except (Exception, SystemExit) as e:  # noqa: BLE001 - reported as the section's failure
        import traceback

        result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500], "traceback": traceback.format_exc()[-3000:]}
    result["section_s"] = round(time.monotonic() - t, 1)
    Path(a.result).write_text(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
