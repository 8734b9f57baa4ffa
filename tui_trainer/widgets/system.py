"""The system panel: CPU, memory, the training process's memory and threads, the GPU.

It samples on its own slow timer (every ``interval`` seconds, on the UI thread:
a few reads of ``/proc`` and, on an NVIDIA GPU, four NVML queries), never from
the training thread, and redraws only when the text changes. From the run it
needs only its device (:meth:`SystemPanel.update_from`).
"""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.reactive import var

from ..sysstats import SystemSampler, SystemStats
from .status import Panel
from .view import RunView

SAMPLE_SECONDS = 2.0


def fmt_bytes(n: Optional[int]) -> str:
    """Memory in a few characters: 812M, 3.1G, 23G."""
    if n is None:
        return "?"
    g = n / 2**30
    if g >= 10:
        return f"{g:.0f}G"
    if g >= 1:
        return f"{g:.1f}G"
    return f"{n / 2**20:.0f}M"


def system_rows(s: SystemStats, compact: bool = False) -> list[tuple[str, Text]]:
    """(label, value) rows of the panel, each value short enough for the narrow side column;
    ``compact``: two rows (CPU and memory, GPU) for a short terminal."""
    cpu = "n/a" if s.cpu_pct is None else f"{s.cpu_pct:.0f}%"
    mem = "n/a" if s.mem_total is None else f"{fmt_bytes(s.mem_used)}/{fmt_bytes(s.mem_total)}"
    if compact:
        rows = [("CPU", Text(f"{cpu} · mem {mem}"))]
    else:
        rows = [("CPU", Text(cpu + (f" of {s.cores} cores" if s.cpu_pct is not None else "")))]
        rows.append(("Memory", Text(mem + (f" · RSS {fmt_bytes(s.rss)}" if s.rss is not None else ""))))
        threads = [f"torch {s.torch_threads}"] if s.torch_threads is not None else []
        if s.threads is not None:
            threads.append(f"{s.threads} in all")
        if threads:
            rows.append(("Threads", Text(" · ".join(threads))))
    g = s.gpu
    if g is None:
        note = s.gpu_note or "n/a"
        rows.append(("GPU", Text(note.split(" (")[0] if compact else note, style="dim")))
        return rows
    use = Text("?" if g.util is None else f"{g.util:.0f}%")
    if g.mem_total:
        use.append(f" · {fmt_bytes(g.mem_used)}/{fmt_bytes(g.mem_total)}")
    heat = " · ".join(v for v in ("" if g.temp_c is None else f"{g.temp_c:.0f}°C",
                                  "" if g.power_w is None else f"{g.power_w:.0f} W") if v)
    rows.append(("GPU", use))
    if heat and not compact:  # (a short terminal: utilisation and memory only)
        rows.append(("", Text(heat)))
    return rows


class SystemPanel(Panel):
    """CPU, memory and (on NVIDIA) GPU use, sampled by the UI on its own timer."""

    compact: var[bool] = var(False, init=False)
    """Two rows instead of four (a short terminal)."""
    device: var[str] = var("", init=False)
    """The run's device: its GPU is read once it is known (if it is an NVIDIA one)."""

    def __init__(self, sampler: Optional[SystemSampler] = None, *, interval: float = SAMPLE_SECONDS,
                 id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__("System", id=id)
        self.sampler = sampler or SystemSampler()
        self.interval = interval
        self.stats: Optional[SystemStats] = None

    def on_mount(self) -> None:
        self.sample()
        if self.interval > 0:
            self.set_interval(self.interval, self.sample)

    def update_from(self, view: RunView) -> None:
        if view.state.device:
            self.device = view.state.device

    def watch_compact(self) -> None:
        if self.stats is not None:
            self._show(self.stats)

    def watch_device(self, device: str) -> None:
        if device and device != self.sampler.device:
            self.sampler.set_device(device)
            self.sample()

    def sample(self) -> None:
        self.stats = self.sampler.sample()
        self._show(self.stats)

    def _show(self, stats: SystemStats) -> None:
        self.set_rows(system_rows(stats, self.compact))
