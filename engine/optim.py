"""The optimiser (SGD as a config says, with its state restored across implementations) and
:class:`Lookahead`, a slow copy of the weights folded back into them every few steps."""

from __future__ import annotations

from typing import Any

import torch

from .config import TrainConfig
from .model import bn_bias_parameters


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """SGD as the config says, for a model already on ``device``.

    One parameter group, or (``bn_bias_lr_scale`` != 1) two: the BatchNorm biases, whose lr
    is ``bn_bias_lr_scale`` times the schedule's (the group's ``lr_scale``) and weight decay
    that much smaller (the decay per step is the same), and the rest. On CUDA the fused
    implementation where this torch has it (one kernel for the whole update).
    """
    params: Any = list(model.parameters())
    if cfg.bn_bias_lr_scale != 1.0:
        scale = float(cfg.bn_bias_lr_scale)
        biases = bn_bias_parameters(model)
        ids = {id(b) for b in biases}
        params = [{"params": [q for q in params if id(q) not in ids], "lr_scale": 1.0},
                  {"params": biases, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay / scale, "lr_scale": scale}]
    kwargs: dict[str, Any] = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  nesterov=cfg.nesterov and cfg.momentum > 0)
    if device.type == "cuda" and "fused" in _sgd_arguments():
        try:
            return torch.optim.SGD(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover - depends on the torch build
            pass
    return torch.optim.SGD(params, **kwargs)


def _sgd_arguments() -> set[str]:
    import inspect

    return set(inspect.signature(torch.optim.SGD.__init__).parameters)


def restore_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state, keeping this process's implementation choice (a checkpoint
    from a GPU run with fused SGD resumes on a CPU, and the other way round)."""
    keep = [{k: g.get(k) for k in ("fused", "foreach")} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, mine in zip(opt.param_groups, keep):
        g.update(mine)


def lookahead_decay_at(step: int, total: int, every: int, decay: float) -> float:
    """The decay of the fold after ``step`` of ``total`` steps: ``decay`` per step over the
    ``every`` steps since the last fold (``decay ** every``), weighed by the cube of the run's
    progress: near 0 early (the slow copy follows the weights), strongest at the end, as the
    learning rate falls."""
    return decay ** every * min(step / max(total, 1), 1.0) ** 3


class Lookahead:
    """A slow copy of the floating-point weights and BatchNorm statistics, folded back into
    them every ``every`` steps: ``slow += (1 - d) * (weights - slow)``, then ``weights =
    slow`` (``d``: :func:`lookahead_decay_at`). After the run's last step the weights become
    the slow copy. One ``_foreach`` op each, with host numbers: no copy from the host, no sync.
    Its state (the slow copy) is part of a checkpoint, so a resumed run folds exactly as one
    that never stopped."""

    def __init__(self, model: torch.nn.Module, every: int, decay: float):
        self.every, self.decay = int(every), float(decay)
        named = list(model.named_parameters()) + list(model.named_buffers())
        self.names = [n for n, t in named if t.is_floating_point()]
        self.fast = [t for _, t in named if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.fast]

    @torch.no_grad()
    def after_step(self, step: int, total: int) -> None:
        """Fold if ``step`` (steps done in the run) calls for it."""
        if step == total:
            torch._foreach_copy_(self.fast, self.slow)
        elif step % self.every == 0:
            torch._foreach_lerp_(self.slow, self.fast, 1.0 - lookahead_decay_at(step, total, self.every, self.decay))
            torch._foreach_copy_(self.fast, self.slow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.slow))

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Raises KeyError or RuntimeError when ``state`` is not this network's."""
        if set(state) != set(self.names):
            raise KeyError("the slow weights do not name this network's tensors")
        for name, slow in zip(self.names, self.slow):
            slow.copy_(state[name])
