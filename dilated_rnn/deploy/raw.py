"""A trained model as one module from raw values to logits: what is exported and what the backends run."""

from __future__ import annotations

import torch
from torch import nn

from ..data.transform import InputTransform


class RawInputClassifier(nn.Module):
    """Raw inputs [N, T, F] (and lengths [N]) -> logits [N, K]: the input transform, then the classifier.

    ``full``: the computation of every step with each row read at its own length (one graph
    for every length, as variable-length ONNX export needs); else the pruned plan per length.
    Made by ``TrainedModel.module``.
    """

    def __init__(self, model: nn.Module, transform: InputTransform, full: bool = False):
        super().__init__()
        self.model = model
        self.full = full
        for name in ("permutation", "mean", "std"):  # buffers: they follow .to() and .double()
            self.register_buffer(name, getattr(transform, name))
        self.per_sequence, self.differences = transform.per_sequence, transform.differences

    @property
    def transform(self) -> InputTransform:
        return InputTransform(self.permutation, self.mean, self.std, self.per_sequence, self.differences)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.transform(x, lengths)
        run = self.model.forward_full if self.full else self.model
        return run(x) if lengths is None else run(x, lengths)
