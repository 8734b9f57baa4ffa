"""System statistics for the dashboard's system panel: CPU, memory, the training
process's memory and threads, and on NVIDIA GPUs utilisation, memory, temperature
and power.

The dashboard samples these on its own timer (never from the training thread).
Everything but the GPU comes from psutil, on every platform. The GPU is read through NVML
(``nvidia-ml-py``), imported only when the run is on a CUDA device. Nothing here
imports Textual; tests pass a fake :class:`GpuReader`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol


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
    """Samples :class:`SystemStats` through psutil; CPU percentages are over the time since
    the last sample (the first sample has none).

    ``pid``: the training process (default: this one; a watched run's writer otherwise).
    ``gpu_factory(device) -> (reader or None, note)`` makes the GPU reader once the run's
    device is known (default :func:`nvml_reader`). ``ps``: the psutil module (tests pass a
    fake one).
    """

    def __init__(self, pid: Optional[int] = None, *,
                 gpu_factory: Callable[[str], tuple[Optional[GpuReader], str]] = nvml_reader,
                 ps: Any = None) -> None:
        if ps is None:
            import psutil as ps  # noqa: PLC0415 - a dependency; imported when a dashboard opens
        self.ps = ps
        self.pid = pid or os.getpid()
        self.gpu_factory = gpu_factory
        self.device: Optional[str] = None
        self.gpu_reader: Optional[GpuReader] = None
        self.gpu_note = "n/a"
        self.process = _try(lambda: ps.Process(self.pid))
        self.cores = _try(lambda: ps.cpu_count(logical=True)) or os.cpu_count() or 1
        self.samples = 0

    def set_device(self, device: str) -> None:
        """The run's device ("cpu", "cuda:0"...): makes the GPU reader the first time."""
        if device and device != self.device:
            self.device = device
            self.gpu_reader, self.gpu_note = self.gpu_factory(device)

    def sample(self) -> SystemStats:
        first = self.samples == 0
        self.samples += 1
        ps, proc = self.ps, self.process
        # psutil's percentages are since the previous call: the first one means nothing
        cpu = _try(lambda: float(ps.cpu_percent(None)))
        proc_cpu = _try(lambda: float(proc.cpu_percent(None))) if proc is not None else None
        vm = _try(lambda: ps.virtual_memory())
        used, total = (int(vm.total - vm.available), int(vm.total)) if vm is not None else (None, None)
        rss = _try(lambda: int(proc.memory_info().rss)) if proc is not None else None
        threads = _try(lambda: int(proc.num_threads())) if proc is not None else None
        torch_threads = None
        if self.pid == os.getpid() and "torch" in sys.modules:
            torch_threads = _try(lambda: int(sys.modules["torch"].get_num_threads()))
        gpu, note = None, self.gpu_note
        if self.gpu_reader is not None:
            try:
                gpu = self.gpu_reader.read()
            except Exception as e:
                note = f"n/a ({type(e).__name__})"
        return SystemStats(None if first else cpu, None if first else proc_cpu, self.cores, used, total, rss,
                           threads, torch_threads, gpu, note)
