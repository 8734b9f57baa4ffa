"""The training step's forward pass through torch.compile, and its warm-up.

:class:`Forward` compiles the model when the run asks for it (see
:func:`engine.setup.compile_backend`); :func:`warm_up` builds the compiled step before
the run's clock starts, so that compile time is in no epoch's seconds and a failure
falls back to eager before the first step.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from . import events as ev
from .checkpoint import first_line
from .device import autocast_for


class Forward:
    """The model's forward pass, through torch.compile when asked (``backend`` not None).

    Compilation happens at the first call; :func:`warm_up` makes that call before
    training starts and, if compiling fails, calls :meth:`fallback` (the run goes on eagerly).
    """

    def __init__(self, model: torch.nn.Module, backend: Optional[str], mode: Optional[str],
                 warn: Callable[[str], None]):
        self.eager = self.fn = model
        self.backend = backend
        self.mode = mode or "default"
        self.warn = warn
        self.failed: Optional[str] = None
        if backend is not None:
            kwargs = {"mode": mode} if backend == "inductor" and mode not in (None, "default") else {}
            try:
                # dynamic=False: a second input shape in this process (another batch size, the
                # warm-up of progressive resizing) is a new static graph, never a dynamic one
                self.fn = torch.compile(model, backend=backend, dynamic=False, **kwargs)
            except Exception as e:  # pragma: no cover - depends on the platform
                self.fallback(f"torch.compile unavailable ({first_line(e)})")

    @property
    def compiling(self) -> bool:
        return self.fn is not self.eager

    @property
    def cudagraphs(self) -> bool:
        """CUDA graphs (inductor's reduce-overhead and max-autotune modes)."""
        return self.compiling and self.backend == "inductor" and self.mode in ("reduce-overhead", "max-autotune")

    def fallback(self, why: str) -> None:
        self.failed = why
        self.fn = self.eager
        self.warn(f"{why}; training without torch.compile")

    def mark_step(self) -> None:
        """Tell CUDA graphs a new training step begins (their outputs of the last one may go)."""
        if self.cudagraphs:
            mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
            if mark is not None:
                mark()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def warm_up(s, first_epoch: int, emit: Callable[[ev.Event], None]) -> None:
    """Build the compiled step of run ``s`` (an :class:`engine.setup.Setup`) before the run's
    clock starts: a forward and backward pass on zeros of each input shape the epochs from
    ``first_epoch`` on train at. BatchNorm's buffers are put back and the gradients dropped,
    so training goes on exactly as without it. Says ``Compiled`` with the seconds it took;
    a failure falls back to eager (a Warning)."""
    f = s.forward
    if not f.compiling:
        if f.backend is not None:  # torch.compile was refused up front: say so, as a failed compile
            emit(ev.Compiled(seconds=0.0, backend=str(f.backend), mode=f.mode, ok=False, message=f.failed or ""))
        return
    t0 = time.perf_counter()
    sizes = sorted({s.size_at(e) for e in range(first_epoch, s.cfg.epochs + 1)})
    saved = [b.detach().clone() for b in s.model.buffers()]
    try:
        for size in sizes:
            x = torch.zeros((s.rows, 3, size, size), device=s.device)
            if s.device.type == "cuda" and s.cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for _ in range(3 if f.cudagraphs else 1):  # CUDA graphs record on a later call
                f.mark_step()
                with autocast_for(s.device, s.cfg.amp):
                    out = f(x)
                out.float().sum().backward()
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - no compiler, an unsupported Python, a backend bug...
        f.fallback(f"torch.compile failed ({first_line(e)})")
    finally:
        with torch.no_grad():
            for b, v in zip(s.model.buffers(), saved):
                b.copy_(v)
        s.opt.zero_grad(set_to_none=True)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    emit(ev.Compiled(seconds=time.perf_counter() - t0, backend=str(f.backend), mode=f.mode,
                     shapes=len(sizes), ok=f.failed is None, message=f.failed or ""))
