"""System statistics for the dashboard's system panel: CPU, memory, the training
process's memory and threads, and on NVIDIA GPUs utilisation, memory, temperature
and power.

The dashboard samples these on its own timer (never from the training thread).
On Linux everything but the GPU comes from ``/proc`` (a few small reads); elsewhere
from psutil when it is installed, else "n/a". The GPU is read through NVML
(``nvidia-ml-py``), imported only when the run is on a CUDA device. Nothing here
imports Textual; tests pass a fake :class:`GpuReader`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol


@dataclass(frozen=True)
class GpuStats:
    name: str
    util: Optional[float]  # percent
    mem_used: Optional[int]  # bytes
    mem_total: Optional[int]
    temp_c: Optional[float]
    power_w: Optional[float]


class GpuReader(Protocol):
    def read(self) -> GpuStats:
        """The GPU's numbers now; raises on failure (the panel says n/a)."""
        ...


@dataclass(frozen=True)
class SystemStats:
    cpu_pct: Optional[float]  # all cores, percent of the whole machine
    proc_cpu_pct: Optional[float]  # the training process, percent of one core (may exceed 100)
    cores: int
    mem_used: Optional[int]
    mem_total: Optional[int]
    rss: Optional[int]  # the training process's resident memory
    threads: Optional[int]  # the training process's threads
    torch_threads: Optional[int]  # torch's intra-op threads (when torch runs in this process)
    gpu: Optional[GpuStats]
    gpu_note: str  # why there are no GPU numbers ("a CPU run", ...)


# ------------------------------------------------------------------------- NVML


class NvmlReader:
    """One NVIDIA GPU through NVML. ``pynvml`` (the ``nvidia-ml-py`` package) is imported
    here, when the first reader is made; raises ImportError or an NVML error."""

    def __init__(self, cuda_index: int = 0) -> None:
        import pynvml  # noqa: PLC0415 - only on a machine that trains on an NVIDIA GPU

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = _nvml_handle(pynvml, cuda_index)
        name = pynvml.nvmlDeviceGetName(self.handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    def read(self) -> GpuStats:
        n, h = self.nvml, self.handle
        util = _try(lambda: float(n.nvmlDeviceGetUtilizationRates(h).gpu))
        mem = _try(lambda: n.nvmlDeviceGetMemoryInfo(h))
        temp = _try(lambda: float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)))
        power = _try(lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0)
        return GpuStats(self.name, util, int(mem.used) if mem else None, int(mem.total) if mem else None, temp, power)


def _nvml_handle(pynvml, cuda_index: int):
    """NVML numbers all GPUs; CUDA only the visible ones: map through CUDA_VISIBLE_DEVICES."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index < len(visible):
        v = visible[cuda_index]
        if v.isdigit():
            return pynvml.nvmlDeviceGetHandleByIndex(int(v))
        return pynvml.nvmlDeviceGetHandleByUUID(v)
    return pynvml.nvmlDeviceGetHandleByIndex(cuda_index)


def _try(fn: Callable):
    try:
        return fn()
    except Exception:  # one unsupported query (e.g. power on some boards) leaves the rest
        return None


def cuda_index(device: str) -> Optional[int]:
    """The CUDA device index of a run's device string ("cuda", "cuda:1", "cuda:0 x8"), or
    None when the run is not on CUDA."""
    d = (device or "").split()[0] if device else ""
    if not d.startswith("cuda"):
        return None
    rest = d[5:] if d.startswith("cuda:") else ""
    return int(rest) if rest.isdigit() else 0


def nvml_reader(device: str) -> tuple[Optional[GpuReader], str]:
    """A reader for the run's GPU, or (None, why not)."""
    index = cuda_index(device)
    if index is None:
        return None, "n/a (a CPU run)" if device else "n/a"
    try:
        return NvmlReader(index), ""
    except ImportError:
        return None, "n/a (no nvidia-ml-py)"
    except Exception as e:  # no driver, no permission...
        return None, f"n/a ({type(e).__name__})"


# ------------------------------------------------------------------- CPU, memory


class SystemSampler:
    """Samples :class:`SystemStats`; CPU percentages are over the time since the last sample.

    ``pid``: the training process (default: this one; a watched run's writer otherwise).
    ``gpu_factory(device) -> (reader or None, note)`` makes the GPU reader once the run's
    device is known (default :func:`nvml_reader`).
    """

    def __init__(self, pid: Optional[int] = None, *, proc: str | Path = "/proc",
                 gpu_factory: Callable[[str], tuple[Optional[GpuReader], str]] = nvml_reader,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid or os.getpid()
        self.proc = Path(proc)
        self.gpu_factory = gpu_factory
        self.clock = clock
        self.device: Optional[str] = None
        self.gpu_reader: Optional[GpuReader] = None
        self.gpu_note = "n/a"
        self._prev_cpu: Optional[tuple[float, float]] = None  # (busy, total) jiffies of the machine
        self._prev_proc: Optional[tuple[float, float]] = None  # (process jiffies, clock)
        self.cores = os.cpu_count() or 1
        self.samples = 0

    def set_device(self, device: str) -> None:
        """The run's device ("cpu", "cuda:0"...): makes the GPU reader the first time."""
        if device and device != self.device:
            self.device = device
            self.gpu_reader, self.gpu_note = self.gpu_factory(device)

    def sample(self) -> SystemStats:
        self.samples += 1
        cpu = self._cpu_pct()
        proc_cpu = self._proc_cpu_pct()
        used, total = self._memory()
        rss, threads = self._process()
        torch_threads = None
        if self.pid == os.getpid() and "torch" in sys.modules:
            torch_threads = _try(lambda: int(sys.modules["torch"].get_num_threads()))
        gpu, note = None, self.gpu_note
        if self.gpu_reader is not None:
            try:
                gpu = self.gpu_reader.read()
            except Exception as e:
                note = f"n/a ({type(e).__name__})"
        return SystemStats(cpu, proc_cpu, self.cores, used, total, rss, threads, torch_threads, gpu, note)

    # ---- Linux /proc, else psutil if present
    def _read(self, *parts: str) -> Optional[str]:
        try:
            return self.proc.joinpath(*parts).read_text()
        except OSError:
            return None

    def _cpu_pct(self) -> Optional[float]:
        text = self._read("stat")
        if text is None:
            return _psutil(lambda p: p.cpu_percent(None))
        fields = [float(v) for v in text.split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        total = sum(fields[:8])
        prev, self._prev_cpu = self._prev_cpu, (total - idle, total)
        if prev is None or total <= prev[1]:
            return None
        return 100.0 * (total - idle - prev[0]) / (total - prev[1])

    def _proc_cpu_pct(self) -> Optional[float]:
        text = self._read(str(self.pid), "stat")
        if text is None:
            return None
        after = text.rsplit(")", 1)[-1].split()  # the command name may hold spaces
        jiffies = float(after[11]) + float(after[12])  # utime + stime
        now = self.clock()
        prev, self._prev_proc = self._prev_proc, (jiffies, now)
        if prev is None or now <= prev[1]:
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        return 100.0 * (jiffies - prev[0]) / hz / (now - prev[1])

    def _memory(self) -> tuple[Optional[int], Optional[int]]:
        text = self._read("meminfo")
        if text is None:
            vm = _psutil(lambda p: p.virtual_memory())
            return (int(vm.total - vm.available), int(vm.total)) if vm else (None, None)
        info = _kib_fields(text)
        total, avail = info.get("MemTotal"), info.get("MemAvailable")
        if total is None or avail is None:
            return None, None
        return total - avail, total

    def _process(self) -> tuple[Optional[int], Optional[int]]:
        text = self._read(str(self.pid), "status")
        if text is None:
            return None, None
        info = _kib_fields(text)
        threads = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Threads:")), None)
        return info.get("VmRSS"), threads


def _kib_fields(text: str) -> dict[str, int]:
    """"Name:   1234 kB" lines -> {name: bytes}."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name] = int(parts[0]) * 1024
    return out


def _psutil(fn: Callable):
    try:
        import psutil  # noqa: PLC0415 - optional, for systems without /proc
    except ImportError:
        return None
    return _try(lambda: fn(psutil))
