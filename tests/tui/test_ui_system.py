"""The dashboard's system panel: CPU, memory, the process, and the GPU (a fake NVML reader)."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import pytest

from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import DashboardScreen
from tui_trainer.sysstats import GpuStats, SystemSampler, cuda_index, nvml_reader
from tui_trainer.widgets.system import fmt_bytes
from ui_support import clock_after, demo_events, wait_for

GIB = 2**30


class FakePsutil:
    """The part of psutil the sampler uses, with numbers a test sets: the machine's CPU
    percentage, memory, and one process (pid 4242)."""

    def __init__(self, cpu: float, proc_cpu: float) -> None:
        self.cpu, self.proc_cpu, self.calls = cpu, proc_cpu, 0
        ps = self

        class Process:
            def __init__(self, pid):
                if pid != 4242:
                    raise ProcessLookupError(pid)

            def cpu_percent(self, interval=None):
                return ps.proc_cpu

            def memory_info(self):
                return SimpleNamespace(rss=832 * 2**20)

            def num_threads(self):
                return 14

        self.Process = Process

    def cpu_percent(self, interval=None):
        self.calls += 1
        return self.cpu

    def cpu_count(self, logical=True):
        return 8

    def virtual_memory(self):
        return SimpleNamespace(total=16 * GIB, available=12 * GIB)


class FakeGpu:
    def __init__(self):
        self.reads = 0

    def read(self) -> GpuStats:
        self.reads += 1
        return GpuStats("NVIDIA H100", util=87.0, mem_used=6 * GIB, mem_total=80 * GIB, temp_c=61.0, power_w=215.4)


def test_sampler_fields_from_psutil_and_a_fake_gpu():
    ps = FakePsutil(cpu=75.0, proc_cpu=130.0)
    made = []

    def factory(device):
        made.append(device)
        return (FakeGpu(), "") if cuda_index(device) is not None else (None, "n/a (a CPU run)")

    s = SystemSampler(4242, gpu_factory=factory, ps=ps)
    first = s.sample()
    assert first.cpu_pct is None and first.proc_cpu_pct is None  # a rate needs two samples
    assert first.mem_used == 4 * GIB and first.mem_total == 16 * GIB and first.cores == 8
    assert first.rss == 832 * 2**20 and first.threads == 14 and first.gpu is None
    second = s.sample()
    assert second.cpu_pct == pytest.approx(75.0) and second.proc_cpu_pct == pytest.approx(130.0)
    assert ps.calls == 2
    s.set_device("cpu")
    assert s.sample().gpu_note == "n/a (a CPU run)"
    s.set_device("cuda:0")
    g = s.sample().gpu
    assert g is not None and g.util == 87.0 and made == ["cpu", "cuda:0"]


def test_a_process_that_is_gone_leaves_the_machine_figures():
    s = SystemSampler(999, gpu_factory=lambda d: (None, "n/a"), ps=FakePsutil(cpu=10.0, proc_cpu=0.0))
    s.sample()
    second = s.sample()
    assert second.cpu_pct == 10.0 and second.mem_total == 16 * GIB
    assert second.rss is None and second.threads is None and second.proc_cpu_pct is None


def test_the_real_psutil_reads_this_process():
    """psutil is a dependency: the default sampler reads real numbers on any platform."""
    s = SystemSampler(gpu_factory=lambda d: (None, "n/a"))
    s.sample()
    st = s.sample()
    assert st.mem_total and st.mem_total > 0 and st.rss and st.rss > 0 and st.threads and st.threads >= 1
    assert st.cpu_pct is not None and st.proc_cpu_pct is not None


def test_nvml_is_imported_only_for_a_cuda_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    assert nvml_reader("cpu") == (None, "n/a (a CPU run)")
    assert nvml_reader("cuda:0") == (None, "n/a (no nvidia-ml-py)")
    assert cuda_index("cuda") == 0 and cuda_index("cuda:3 x8") == 3 and cuda_index("mps") is None


def test_the_system_panel_shows_the_fields(tmp_path):
    ps = FakePsutil(cpu=75.0, proc_cpu=130.0)
    gpu = FakeGpu()

    def sampler():
        return SystemSampler(4242, ps=ps, gpu_factory=lambda d: (gpu, "") if d.startswith("cuda") else (None, "n/a"))

    events = demo_events()  # a run on "cuda"
    app = CifarTuiApp("replay", events=events, clock=clock_after(events), sampler_factory=sampler)

    async def main():
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            panel = app.screen.system
            await wait_for(pilot, lambda: "GPU" in panel.plain and "87%" in panel.plain, what="the GPU numbers")
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
