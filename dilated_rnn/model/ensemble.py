"""An ensemble: K classifiers of one config whose class probabilities are averaged.

Its logits are the log of the members' mean softmax, so ``softmax(logits)`` is the averaged probabilities
and the argmax is the ensemble's vote by probability; cross-entropy on them is the ensemble's loss. It is an
``nn.Module`` like a classifier (``forward``, ``forward_full``, ``config``): evaluation, export (one graph
holding every member) and the backends take it as they take one model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dilated import DilatedRNNClassifier


def mean_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """log(mean_k softmax(logits_k)) over the last dimension: the members' averaged probabilities, as logits."""
    stacked = torch.stack([torch.log_softmax(z, dim=-1) for z in logits])  # [K, ..., C]
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


class EnsembleClassifier(nn.Module):
    """``members``: classifiers of one ``ModelConfig`` (their own weights); logits [B, K] as ``mean_probabilities``."""

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members or any(m.config != members[0].config for m in members):
            raise ValueError("an ensemble needs one or more classifiers of one config")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    @classmethod
    def from_config(cls, config, size: int) -> "EnsembleClassifier":
        return cls(DilatedRNNClassifier.from_config(config) for _ in range(size))

    @property
    def readout_steps(self) -> int:
        return self.members[0].readout_steps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return mean_probabilities([m(x) if lengths is None else m(x, lengths) for m in self.members])

    def forward_full(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return mean_probabilities([m.forward_full(x, lengths) for m in self.members])
