"""Start-up time of the command line and of the app.

Measures, each in fresh subprocesses (median of ``--repeats`` after one untimed run
that warms the file cache):

* ``help_s``: wall-clock seconds of ``cifar-tui --help`` (the installed console script);
* ``first_screen_s``: from just before the subprocess is spawned until the app's
  start screen is mounted. The child runs a small snippet that imports what the
  ``cifar-tui`` entry imports (``tui_trainer.cli``, then ``tui_trainer.app``),
  builds ``CifarTuiApp("start")`` exactly as ``cifar-tui`` does (default runs
  folder, pointed at an empty temporary folder by ``CIFAR_TUI_RUNS_DIR``), runs it
  headless under ``App.run_test()`` and, as soon as ``StartScreen`` is the active,
  mounted screen, prints ``time.time()`` and exits. The child also reports its own
  import and mount times, whether importing the app's modules imported torch, and
  whether a torch import had begun by the time the screen was mounted (the start
  screen looks up the default runs folder in a thread, which imports torch);
  ``first_screen_process_exit_s`` is until the child process has ended;
* ``help_imports_torch``: whether ``cifar-tui --help`` imports torch (or textual),
  checked with ``sys.modules`` after the CLI has printed its help, plus the heaviest
  imports from ``python -X importtime``.

    python benchmarks/startup.py --repeats 5

Prints one JSON line, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]

HELP_PROBE = r"""
import sys
from tui_trainer.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
import json
print("@@" + json.dumps({m: (m in sys.modules) for m in ("torch", "textual", "torchvision", "numpy", "rich", "typer")}))
"""

SCREEN_PROBE = r"""
import sys, time
t0 = time.perf_counter()
import tui_trainer.cli  # what the console script imports first
from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import StartScreen
t_import = time.perf_counter() - t0
torch_after_imports = "torch" in sys.modules
import asyncio, json

async def main():
    app = CifarTuiApp("start")
    t1 = time.perf_counter()
    async with app.run_test(size=(120, 36)):
        while not (isinstance(app.screen, StartScreen) and app.screen.is_mounted):
            await asyncio.sleep(0.001)
        out = {"mounted_at": time.time(), "import_s": t_import, "mount_s": time.perf_counter() - t1,
               "torch_after_imports": torch_after_imports, "torch_started": "torch" in sys.modules}
        print("@@" + json.dumps(out), flush=True)
        app.exit()

asyncio.run(main())
"""


def find_cli() -> list[str]:
    """The installed ``cifar-tui`` script next to this interpreter, else ``python -m tui_trainer``."""
    here = Path(sys.executable).parent / "cifar-tui"
    if here.is_file():
        return [str(here)]
    found = shutil.which("cifar-tui")
    return [found] if found else [sys.executable, "-m", "tui_trainer"]


def child_env(runs_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CIFAR_TUI_RUNS_DIR"] = runs_dir
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def time_help(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd + ["--help"], env=env, cwd=REPO, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0 or "Usage" not in p.stdout:
        raise RuntimeError(f"{' '.join(cmd)} --help failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return dt


def time_first_screen(env: dict[str, str], timeout: float) -> dict[str, Any]:
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", SCREEN_PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=timeout)
    t_exit = time.time() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("@@")]
    if not lines:
        raise RuntimeError(f"the start-screen probe printed nothing ({p.returncode}): {p.stderr.strip()[-600:]}")
    d = json.loads(lines[-1][2:])
    return {"first_screen_s": d["mounted_at"] - t0, "import_s": d["import_s"], "mount_s": d["mount_s"],
            "torch_after_imports": d["torch_after_imports"], "torch_started": d["torch_started"], "exit_s": t_exit}


def help_imports(env: dict[str, str], top: int = 8) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", HELP_PROBE], env=env, cwd=REPO,
                       capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("@@")]
    if not lines:
        raise RuntimeError(f"the --help import probe failed ({p.returncode}): {p.stderr.strip()[-600:]}")
    loaded = json.loads(lines[-1][2:])
    # "import time: self [us] | cumulative [us] | <indent>module": keep packages (names without a dot)
    best: dict[str, int] = {}
    for ln in p.stderr.splitlines():
        if not ln.startswith("import time:") or "cumulative" in ln:
            continue
        parts = ln[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        name = parts[2].strip()
        if "." not in name and not name.startswith("_"):
            best[name] = max(best.get(name, 0), int(parts[1]))
    heaviest = sorted(best.items(), key=lambda kv: -kv[1])[:top]
    return {"loaded": loaded, "heaviest": [{"module": m, "ms": round(us / 1000, 1)} for m, us in heaviest],
            "importtime_torch": "torch" in best}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5), after one untimed run")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a start-screen probe is given up")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    cmd = find_cli()
    with tempfile.TemporaryDirectory(prefix="cifar-tui-startup-") as runs_dir:
        env = child_env(runs_dir)
        time_help(cmd, env)  # warm the file cache
        time_first_screen(env, args.timeout)
        helps, screens = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            helps.append(time_help(cmd, env))
            screens.append(time_first_screen(env, args.timeout))
        imports = help_imports(env)

    def med(key: str) -> float:
        return round(statistics.median(s[key] for s in screens), 3)

    import platform

    return {
        "benchmark": "startup",
        "python": platform.python_version(),
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)) + " --help",
        "repeats": args.repeats,
        "help_s": round(statistics.median(helps), 3),
        "help_samples": [round(x, 3) for x in helps],
        "first_screen_s": med("first_screen_s"),
        "first_screen_samples": [round(s["first_screen_s"], 3) for s in screens],
        "first_screen_import_s": med("import_s"),
        "first_screen_mount_s": med("mount_s"),
        "first_screen_process_exit_s": med("exit_s"),
        "app_imports_torch": any(s["torch_after_imports"] for s in screens),
        "torch_import_begun_at_first_screen": any(s["torch_started"] for s in screens),
        "help_imports_torch": bool(imports["loaded"]["torch"]),
        "help_imports_textual": bool(imports["loaded"]["textual"]),
        "help_importtime_lists_torch": imports["importtime_torch"],
        "help_modules": imports["loaded"],
        "help_heaviest_imports": imports["heaviest"],
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"Start-up (median of {res['repeats']})")
    t.add_column("what")
    t.add_column("seconds", justify="right")
    t.add_column("runs", justify="right")
    t.add_row(res["command"], f"{res['help_s']:.3f}", ", ".join(f"{x:.2f}" for x in res["help_samples"]))
    t.add_row("process start -> start screen mounted", f"{res['first_screen_s']:.3f}",
              ", ".join(f"{x:.2f}" for x in res["first_screen_samples"]))
    t.add_row("  of which: imports (cli + app)", f"{res['first_screen_import_s']:.3f}", "")
    t.add_row("  of which: app start -> screen mounted", f"{res['first_screen_mount_s']:.3f}", "")
    t.add_row("process start -> process exited", f"{res['first_screen_process_exit_s']:.3f}", "")
    con.print(t)
    con.print(f"--help imports torch: {res['help_imports_torch']}   textual: {res['help_imports_textual']}   "
              f"app modules import torch: {res['app_imports_torch']}   "
              f"torch import begun (in a thread) when the start screen was mounted: {res['torch_import_begun_at_first_screen']}")
    heavy = ", ".join(f"{d['module']} {d['ms']:.0f} ms" for d in res["help_heaviest_imports"])
    con.print(f"heaviest imports of --help (cumulative): {heavy}")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(json.dumps(res), flush=True)
    if not args.json_only:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
