"""What turns a raw input sequence into the model's input: one object that travels with every model.

Raw inputs are what a deployed model takes: MNIST pixels in [0, 1] in natural
order, or a user's values as recorded. ``InputTransform`` reorders the steps
(permuted MNIST), appends each channel's first differences as channels of their
own (``differences``: x[t] - x[t-1], 0 at the first step; a user's data) and
standardises the values: ``channel`` with per-channel
statistics fitted on the training split, or ``sequence``, each sequence by its
own per-channel mean and standard deviation over its real steps (the UCR
archive's convention, for data whose scale varies from sequence to sequence).
The checkpoint, the shipped card and the exported graph all carry it, so
training, evaluation and deployment apply the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_TINY = 1e-8  # a standard deviation below this (a constant channel) counts as 1


@dataclass(frozen=True)
class InputTransform:
    permutation: torch.Tensor | None = None  # [T] int64: step t reads step permutation[t]
    mean: torch.Tensor | None = None  # [F] float32, per channel, over the real steps of the training split
    std: torch.Tensor | None = None  # [F] float32, likewise (never 0: constant channels keep std 1)
    per_sequence: bool = False  # standardise each sequence by its own statistics instead
    differences: bool = False  # F raw channels in, 2F out: the values, then their first differences

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Raw [N, T, F] (sequence n real for its first ``lengths[n]`` steps) -> the model's input [N, T, F]
        ([N, T, 2F] with ``differences``)."""
        if self.permutation is not None:
            x = x.index_select(1, self.permutation.to(x.device))
        if self.differences:
            x = with_differences(x)
        if self.per_sequence:
            x = _standardise_each(x, lengths)
        elif self.mean is not None:
            x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x

    @property
    def identity(self) -> bool:
        """Whether it leaves every input as it is."""
        return self.permutation is None and self.mean is None and not self.per_sequence and not self.differences

    def model_features(self, raw: int) -> int:
        """The model's input channels for ``raw`` channels of raw input."""
        return 2 * raw if self.differences else raw

    def raw_features(self, model: int) -> int:
        """The raw channels a model of ``model`` input channels takes."""
        return model // 2 if self.differences else model

    @property
    def streamable(self) -> bool:
        """Whether a sample can be transformed as it arrives: neither a permutation nor per-sequence statistics
        need the whole sequence first."""
        return self.permutation is None and not self.per_sequence

    @property
    def normalization(self) -> dict | None:
        if self.per_sequence:
            return {"per_sequence": True}
        return None if self.mean is None else {"mean": self.mean, "std": self.std}

    def to_json(self) -> dict:
        """Plain lists, for model cards and config.json."""
        norm = self.normalization
        as_list = lambda v: v.tolist() if isinstance(v, torch.Tensor) else v
        return {"permutation": as_list(self.permutation),
                "normalization": None if norm is None else {k: as_list(v) for k, v in norm.items()},
                "differences": self.differences}

    @classmethod
    def from_parts(cls, permutation=None, normalization: dict | None = None,
                   differences: bool = False) -> "InputTransform":
        """From a stored permutation (tensor or list), normalization (as ``normalization`` gives it) and
        ``differences``."""
        perm = None if permutation is None else torch.as_tensor(permutation, dtype=torch.long)
        if normalization is None:
            return cls(perm, differences=bool(differences))
        if normalization.get("per_sequence"):
            return cls(perm, per_sequence=True, differences=bool(differences))
        mean, std = (torch.as_tensor(normalization[k], dtype=torch.float32) for k in ("mean", "std"))
        return cls(perm, mean, std, differences=bool(differences))


def with_differences(x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """[N, T, F] -> [N, T, 2F]: the values, then x[t] - x[t-1] (``previous`` [N, F] is x[-1]; None: the first
    step's difference is 0). Past a sequence's length the differences read padding, as the values do: the
    model never reads them."""
    before = x[:, :1] if previous is None else previous.unsqueeze(1).to(x.dtype)
    return torch.cat([x, x - torch.cat([before, x[:, :-1]], dim=1)], dim=2)


def _standardise_each(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each row by its own per-channel mean and std over its real steps (padding after them is ignored)."""
    if lengths is None:
        mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True, correction=0)
    else:
        mask = (torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        count = lengths.to(x.dtype).reshape(-1, 1, 1)  # [N, 1, 1]
        mean = (x * mask).sum(1, keepdim=True) / count
        std = ((((x - mean) * mask) ** 2).sum(1, keepdim=True) / count).sqrt()
    return (x - mean) / torch.where(std > _TINY, std, torch.ones_like(std))


# ``auto`` standardises each sequence by its own statistics when the training sequences' own scales (their
# standard deviations) spread over more than this factor between the 10th and 90th percentile: their scale then
# varies from sequence to sequence (PLAID: 0 to 96) rather than carrying the class.
SCALE_SPREAD = 10.0


def auto_normalization(x: torch.Tensor, lengths: torch.Tensor) -> str:
    """``auto``'s choice for a user's training sequences [N, T, F]: ``sequence`` for one channel whose
    per-sequence scale varies widely (``SCALE_SPREAD``), else ``channel`` (several channels keep their own
    scales: they often carry the class, as JapaneseVowels' cepstra do)."""
    if x.shape[2] != 1:
        return "channel"
    mask = (torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).double()  # [N, T]
    values = x[..., 0].double() * mask
    count = mask.sum(1)
    mean = values.sum(1) / count
    std = ((((x[..., 0].double() - mean.unsqueeze(1)) * mask) ** 2).sum(1) / count).sqrt()
    low, high = torch.quantile(std, torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
    return "sequence" if high > SCALE_SPREAD * max(low, _TINY) else "channel"


def fit_normalization(x: torch.Tensor, lengths: torch.Tensor, kind: str = "channel",
                      differences: bool = False) -> InputTransform:
    """The ``kind`` of normalization (``config.NORMALIZATIONS``, or ``auto``: ``auto_normalization`` of the raw
    values) of padded sequences [N, T, F] with ``lengths`` [N], of their 2F channels with ``differences``.

    ``channel``: per-channel mean and std over the real steps of the given (training) sequences.
    """
    if kind == "auto":
        kind = auto_normalization(x, lengths)
    if kind == "none":
        return InputTransform(differences=differences)
    if kind == "sequence":
        return InputTransform(per_sequence=True, differences=differences)
    if differences:
        x = with_differences(x)
    mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # [N, T]
    values = x[mask].double()  # [sum of lengths, F]
    mean, std = values.mean(0), values.std(0, correction=0)
    std = torch.where(std > _TINY, std, torch.ones_like(std))
    return InputTransform(None, mean.float(), std.float(), differences=differences)
