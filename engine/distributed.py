"""Running under ``torchrun``: detection, process-group set-up, and the few collectives
the trainer needs.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` for every worker. When they are present the trainer runs as one
rank of a DistributedDataParallel job: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch is imported where it is used: torchrun_env() serves the torch-free CLI
    import torch


@dataclass
class DistContext:
    enabled: bool = False
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running statistics) across ranks.

        DDP keeps parameters identical, but each rank's last forward updates its
        running statistics from its own share of the batch.
        """
        if not self.enabled:
            return
        import torch.distributed as dist

        for b in model.buffers():
            if b.is_floating_point():
                dist.all_reduce(b.data, op=dist.ReduceOp.SUM)
                b.data.div_(self.world)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    dist.destroy_process_group()
                except Exception:
                    pass


def torchrun_env() -> Optional[dict[str, int]]:
    """The torchrun variables of this process, or None when not launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return {
            "rank": int(os.environ["RANK"]),
            "world": int(os.environ["WORLD_SIZE"]),
            "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        }
    except ValueError:
        return None


def setup(device_pref: str) -> tuple[DistContext, Optional[torch.device]]:
    """Initialise the process group if launched by torchrun.

    Returns the context and, when distributed, the device this rank must use
    (``cuda:LOCAL_RANK`` on GPUs, else the CPU); None means "decide as usual".
    """
    env = torchrun_env()
    if env is None:
        return DistContext(), None
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda") or device_pref.startswith("cuda:")
    if use_cuda:
        device = torch.device("cuda", env["local_rank"])
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        timeout = _dt.timedelta(seconds=float(os.environ.get("CIFAR_TUI_DIST_TIMEOUT", "600")))
        dist.init_process_group(backend=backend, timeout=timeout)
    ctx = DistContext(True, env["rank"], env["world"], env["local_rank"], backend)
    return ctx, device


def shard(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's part of the global batch ``[lo, hi)``: contiguous, sizes differ by at most one."""
    n = hi - lo
    base, extra = divmod(n, world)
    start = lo + rank * base + min(rank, extra)
    size = base + (1 if rank < extra else 0)
    return start, start + size
