"""Choosing the device, the mixed-precision context, and what a run records about its machine.

Shared by training and evaluation so that neither imports the other.
"""

from __future__ import annotations

import platform
import sys
from contextlib import nullcontext

import torch

from .config import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA, else MPS, else CPU; an explicit name is checked against this machine.

    Raises :class:`ConfigError` with a one-line message for a name that cannot be used here.
    """
    name = str(name).strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is visible here; use --device cpu or auto")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise ConfigError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    raise ConfigError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when ``enabled``); nothing elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def pins(device: torch.device) -> bool:
    """Host tensors that travel to or from ``device`` go through pinned (page-locked) memory:
    on CUDA, where a copy from or to pageable memory blocks the host."""
    return device.type == "cuda"


def host_to_device(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` (an array or a list) as a tensor on ``device``, copied without blocking the
    host: from pinned memory where :func:`pins` says so (pageable memory would be a blocking
    staged copy); on a CPU nothing is copied."""
    host = torch.as_tensor(values, dtype=dtype)
    if pins(device):
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Versions of what a run depends on, recorded in its config.json."""
    import numpy as np

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except Exception:  # pragma: no cover - torchvision is a dependency
        pass
    try:
        from importlib.metadata import version

        out["cifar_tui"] = version("cifar-tui")
    except Exception:  # pragma: no cover - running from a source tree
        pass
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out
