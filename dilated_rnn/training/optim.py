"""Optimizers, learning-rate schedules and weight averaging for training."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..config import OPTIMIZERS, SCHEDULES
from ..errors import ParameterError


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1's ``tf.train.RMSPropOptimizer`` (the paper's optimizer).

    It differs from ``torch.optim.RMSprop`` in two ways that matter early in
    training: the mean square starts at 1 (not 0), so the first steps are
    about lr * g rather than lr * sign(g); and epsilon sits inside the root.
    TensorFlow's optimizer has no weight decay; the optional ``weight_decay`` here (default 0) is
    decoupled, AdamW's rule. One step:

        p   <- p * (1 - lr * weight_decay)
        ms  <- decay * ms + (1 - decay) * g^2
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        p   <- p - mom
    """

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, momentum: float = 0.0, eps: float = 1e-10,
                 weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= decay < 1 or not 0 <= momentum < 1 or eps < 0 or weight_decay < 0:
            raise ValueError(f"bad RMSProp settings lr={lr} decay={decay} momentum={momentum} eps={eps} "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    def __setstate__(self, state):  # optimizer states saved before weight decay existed
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("weight_decay", 0.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom, g = state["ms"], state["mom"], p.grad
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(g, ms.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


def _decays(p: torch.Tensor) -> bool:
    """Weight decay applies to matrices (kernels, output layer), never to vectors (biases)."""
    return p.ndim >= 2


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``rmsprop`` (TensorFlow's) or ``adam``; ``weight_decay`` > 0 adds decoupled decay (AdamW's rule).

    Decay applies to matrices only (kernels and the output layer); biases, such as the LSTM forget-gate
    bias of 1, are left alone. The per-step shrink is lr * weight_decay, so it follows the schedule.
    """
    if weight_decay > 0:
        params = list(params)
        params = [{"params": [p for p in params if _decays(p)], "weight_decay": weight_decay},
                  {"params": [p for p in params if not _decays(p)], "weight_decay": 0.0}]
    if name == "rmsprop":
        return TFRMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
    raise ParameterError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set the decay of the matrix group that ``make_optimizer`` made (a no-op when it made none)."""
    for group in optimizer.param_groups:
        if group["params"] and all(_decays(p) for p in group["params"]):
            group["weight_decay"] = weight_decay


def lr_factor(schedule: str, step: int, total_steps: int, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear warm-up, then the schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise ParameterError("schedule", f"must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


@torch.no_grad()
def update_average(average: nn.Module, model: nn.Module, decay: float, updates: int) -> None:
    """Fold ``model``'s weights into their exponential moving average ``average``, after ``updates`` steps.

    a <- r * a + (1 - r) * p with r = min(decay, (1 + updates) / (10 + updates)): TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``, so early averages are not held at the
    initialisation. ``average`` starts as a copy of the initial model.
    """
    rate = min(decay, (1 + updates) / (10 + updates))
    for a, p in zip(average.parameters(), model.parameters(), strict=True):
        a.lerp_(p, 1 - rate)


class WeightAverage:
    """An exponential moving average of a model's weights (``update_average``), kept as a model of its own.

    ``module`` starts as a copy of the model and is what a run validates, keeps
    as ``best.pt`` and tests; ``state_dict``/``load_state_dict`` carry it in
    ``last.pt`` so that a resumed run continues the same average.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay

    def update(self, model: nn.Module, updates: int) -> None:
        update_average(self.module, model, self.decay, updates)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state, strict=True)
