"""An exponential moving average of a model's weights, updated without a GPU sync.

``torch.optim.swa_utils.AveragedModel`` keeps its update counter as a tensor and
copies it to the device on every update (a blocking host-to-device copy each
step). Here the counter is a host ``int`` and an update is one ``_foreach_lerp_``
over parameter and floating-point buffer lists built once; integer buffers
(BatchNorm's step counters) are copied.

The decay warms up as ``(1 + n) / (10 + n)`` (capped at ``decay``) so that early
averages are not dominated by the random initial weights. The first update copies
the weights, as ``AveragedModel`` does.
"""

from __future__ import annotations

import copy

import torch


def ema_decay_at(n: int, decay: float) -> float:
    """The decay used by the update after ``n`` earlier updates."""
    return min(decay, (1.0 + n) / (10.0 + n))


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.n = 0  # updates so far, on the host
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._bind(model)

    def _bind(self, model: torch.nn.Module) -> None:
        """Pair this average's tensors with ``model``'s (same order, same shapes)."""
        mine = list(self.module.parameters()) + list(self.module.buffers())
        theirs = list(model.parameters()) + list(model.buffers())
        self._float = ([m for m in mine if m.is_floating_point()], [t for t in theirs if t.is_floating_point()])
        self._other = ([m for m in mine if not m.is_floating_point()], [t for t in theirs if not t.is_floating_point()])

    def to(self, *args, **kwargs) -> "WeightEMA":
        """Move (or change the memory format of) the average; call :meth:`rebind` after
        moving the source model too."""
        self.module.to(*args, **kwargs)
        return self

    def rebind(self, model: torch.nn.Module) -> None:
        self._bind(model)

    @torch.no_grad()
    def update(self) -> None:
        mine, theirs = self._float
        if self.n == 0:
            if hasattr(torch, "_foreach_copy_"):
                torch._foreach_copy_(mine, theirs)
            else:  # pragma: no cover - torch older than 2.1
                for m, t in zip(mine, theirs):
                    m.copy_(t)
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - ema_decay_at(self.n, self.decay))
        for m, t in zip(*self._other):
            m.copy_(t)
        self.n += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, n: int) -> None:
        self.module.load_state_dict(state)
        self.n = max(1, int(n))
