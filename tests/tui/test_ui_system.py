"""The dashboard's system panel: CPU, memory, the process, and the GPU (a fake NVML reader)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import DashboardScreen
from tui_trainer.sysstats import GpuStats, SystemSampler, cuda_index, nvml_reader
from tui_trainer.widgets.system import fmt_bytes
from ui_support import clock_after, demo_events, wait_for

GIB = 2**30


def fake_proc(root, busy: int, total: int, proc_jiffies: int) -> None:
    """A /proc with the files the sampler reads: the machine's CPU counters, memory, one process."""
    root.mkdir(exist_ok=True)
    idle = total - busy
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "meminfo").write_text(f"MemTotal:       {16 * GIB // 1024} kB\nMemFree:  1 kB\n"
                                  f"MemAvailable:   {12 * GIB // 1024} kB\n")
    pid = root / "4242"
    pid.mkdir(exist_ok=True)
    fields = ["S"] + ["0"] * 10 + [str(proc_jiffies), "0"] + ["0"] * 30
    (pid / "stat").write_text("4242 (python3 (trainer)) " + " ".join(fields) + "\n")
    (pid / "status").write_text("Name:\tpython3\nThreads:\t14\nVmRSS:\t  851968 kB\n")


class FakeGpu:
    def __init__(self):
        self.reads = 0

    def read(self) -> GpuStats:
        self.reads += 1
        return GpuStats("NVIDIA H100", util=87.0, mem_used=6 * GIB, mem_total=80 * GIB, temp_c=61.0, power_w=215.4)


def test_sampler_fields_from_proc_and_a_fake_gpu(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, busy=1000, total=4000, proc_jiffies=100)
    now = [0.0]
    made = []

    def factory(device):
        made.append(device)
        return (FakeGpu(), "") if cuda_index(device) is not None else (None, "n/a (a CPU run)")

    s = SystemSampler(4242, proc=proc, gpu_factory=factory, clock=lambda: now[0])
    first = s.sample()
    assert first.cpu_pct is None and first.proc_cpu_pct is None  # a rate needs two samples
    assert first.mem_used == 4 * GIB and first.mem_total == 16 * GIB
    assert first.rss == 832 * 2**20 and first.threads == 14 and first.gpu is None
    fake_proc(proc, busy=1300, total=4400, proc_jiffies=250)
    now[0] = 2.0
    second = s.sample()
    assert second.cpu_pct == pytest.approx(75.0)  # 300 busy of 400 jiffies
    hz = os.sysconf("SC_CLK_TCK")
    assert second.proc_cpu_pct == pytest.approx(100.0 * 150 / hz / 2.0)
    s.set_device("cpu")
    assert s.sample().gpu_note == "n/a (a CPU run)"
    s.set_device("cuda:0")
    g = s.sample().gpu
    assert g is not None and g.util == 87.0 and made == ["cpu", "cuda:0"]


def test_nvml_is_imported_only_for_a_cuda_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    assert nvml_reader("cpu") == (None, "n/a (a CPU run)")
    assert nvml_reader("cuda:0") == (None, "n/a (no nvidia-ml-py)")
    assert cuda_index("cuda") == 0 and cuda_index("cuda:3 x8") == 3 and cuda_index("mps") is None


def test_the_system_panel_shows_the_fields(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, busy=1000, total=4000, proc_jiffies=100)
    gpu = FakeGpu()

    def sampler():
        return SystemSampler(4242, proc=proc, gpu_factory=lambda d: (gpu, "") if d.startswith("cuda") else (None, "n/a"))

    events = demo_events()  # a run on "cuda"
    app = CifarTuiApp("replay", events=events, clock=clock_after(events), sampler_factory=sampler)

    async def main():
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            panel = app.screen.system
            await wait_for(pilot, lambda: "GPU" in panel.plain and "87%" in panel.plain, what="the GPU numbers")
            fake_proc(proc, busy=1300, total=4400, proc_jiffies=250)
            panel.sample()
            text = panel.plain
            assert "CPU 75% of " in text and "cores" in text
            assert "Memory 4.0G/16G · RSS 832M" in text
            assert "Threads" in text and "14 in all" in text
            assert "GPU 87% · 6.0G/80G" in text and "61°C · 215 W" in text
            assert gpu.reads >= 1
            await pilot.resize_terminal(80, 24)  # a short terminal: two rows
            await pilot.pause(0.3)
            lines = panel.plain.splitlines()
            assert len(lines) == 2 and lines[0].startswith("CPU ") and lines[0].endswith(" · mem 4.0G/16G")
            assert lines[1] == "GPU 87% · 6.0G/80G"

    asyncio.run(main())


def test_fmt_bytes():
    assert fmt_bytes(832 * 2**20) == "832M" and fmt_bytes(int(3.14 * GIB)) == "3.1G" and fmt_bytes(80 * GIB) == "80G"
    assert fmt_bytes(None) == "?"
