"""What turns a raw input sequence into the model's input: one object that travels with every model.

Raw inputs are what a deployed model takes: MNIST pixels in [0, 1] in natural
order, or a user's values as recorded. ``InputTransform`` reorders the steps
(permuted MNIST) and standardises each channel with statistics fitted on the
training split; the checkpoint, the shipped card and the exported graph all
carry it, so training, evaluation and deployment apply the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InputTransform:
    permutation: torch.Tensor | None = None  # [T] int64: step t reads step permutation[t]
    mean: torch.Tensor | None = None  # [F] float32, per channel, over the real steps of the training split
    std: torch.Tensor | None = None  # [F] float32, likewise (never 0: constant channels keep std 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [N, T, F] -> the model's input [N, T, F]."""
        if self.permutation is not None:
            x = x.index_select(1, self.permutation.to(x.device))
        if self.mean is not None:
            x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x

    @property
    def normalization(self) -> dict | None:
        return None if self.mean is None else {"mean": self.mean, "std": self.std}

    def to_json(self) -> dict:
        """Plain lists, for model cards and config.json."""
        norm = self.normalization
        return {"permutation": None if self.permutation is None else self.permutation.tolist(),
                "normalization": None if norm is None else {k: v.tolist() for k, v in norm.items()}}

    @classmethod
    def from_parts(cls, permutation=None, normalization: dict | None = None) -> "InputTransform":
        """From a stored permutation (tensor or list) and normalization ({"mean", "std"}, tensors or lists)."""
        perm = None if permutation is None else torch.as_tensor(permutation, dtype=torch.long)
        if normalization is None:
            return cls(perm)
        mean, std = (torch.as_tensor(normalization[k], dtype=torch.float32) for k in ("mean", "std"))
        return cls(perm, mean, std)


def as_transform(value) -> InputTransform:
    """An ``InputTransform`` from one, from a bare permutation (the MNIST API), or from None (identity)."""
    if isinstance(value, InputTransform):
        return value
    return InputTransform(None if value is None else value.long())


def fit_normalization(x: torch.Tensor, lengths: torch.Tensor) -> InputTransform:
    """Per-channel mean and std over the real steps of padded sequences [N, T, F] with ``lengths`` [N]."""
    mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # [N, T]
    values = x[mask].double()  # [sum of lengths, F]
    mean, std = values.mean(0), values.std(0, correction=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return InputTransform(None, mean.float(), std.float())
