"""A recipe meant for a GPU started on a CPU: a warning, measured on the first steps, of the
time an epoch and the whole run will take, with what to do instead. It never refuses."""

from __future__ import annotations

import time
from typing import Callable, Optional

GPU_RECIPES = ("paper", "fast", "speedrun")  # the presets tuned for a GPU
GPU_WIDTH = 0.5  # ... at this network width or wider
MEASURE_STEPS = 5  # the steps timed before the estimate


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class CpuPace:
    """Times the first steps of a GPU recipe on a CPU and warns once (:meth:`stepped`)."""

    def __init__(self, steps_per_epoch: int, epochs_left: int, warn: Callable[[str], None], preset: str,
                 width: float) -> None:
        self.steps_per_epoch, self.epochs_left, self.warn = steps_per_epoch, epochs_left, warn
        self.what = f"the {preset} recipe at width {width:g}"
        self.steps = 0
        self.t0 = time.perf_counter()

    @classmethod
    def for_run(cls, preset: str, width: float, device_type: str, steps_per_epoch: int, epochs_left: int,
                warn: Callable[[str], None]) -> Optional["CpuPace"]:
        """A pace for a GPU recipe on a CPU; None for any other run (nothing to measure)."""
        if device_type != "cpu" or preset not in GPU_RECIPES or width < GPU_WIDTH or epochs_left < 1:
            return None
        return cls(steps_per_epoch, epochs_left, warn, preset, width)

    def stepped(self) -> bool:
        """One more step done. Warns once enough steps are timed; returns True when it has."""
        self.steps += 1
        if self.steps < min(MEASURE_STEPS, max(1, self.steps_per_epoch)):
            return False
        per_step = (time.perf_counter() - self.t0) / self.steps
        epoch = per_step * self.steps_per_epoch
        self.warn(f"{self.what} is meant for a GPU and runs on the CPU here: about {_duration(epoch)} an epoch "
                  f"and {_duration(epoch * self.epochs_left)} for the {self.epochs_left} epoch"
                  f"{'s' if self.epochs_left != 1 else ''} (measured on the first {self.steps} steps); "
                  "for a quick run use --width 0.25 or --preset tiny")
        return True
