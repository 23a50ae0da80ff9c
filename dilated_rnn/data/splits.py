"""A dataset's splits, the one type every dataset (MNIST, a user's files, the copy task) yields, and the
order in which training reads them.

Sequences are zero-padded at the end to the split's longest: ``x`` [N, T_max, F]
float32 raw values (MNIST: pixels in [0, 1]), ``labels`` [N] int64 class indices
(or [N, T]: a label at every step), and ``lengths`` [N], each sequence's real
steps, or None when every sequence has T_max steps.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from .transform import InputTransform


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # [N, T_max, F] float32, zero-padded at the end
    lengths: torch.Tensor | None  # [N] int64 real steps; None: all T_max
    labels: torch.Tensor  # [N] int64 (or [N, T]: a label at every step)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int | None) -> "Split":
        """The first ``limit`` sequences (None: all)."""
        return self if limit is None else self.take(torch.arange(min(limit, len(self))))

    def take(self, idx: torch.Tensor) -> "Split":
        """The sequences ``idx``, padded to the longest of them."""
        if self.lengths is None:
            return Split(self.x[idx], None, self.labels[idx])
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        return Split(self.x[idx, :width], lengths, self.labels[idx])

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw x [B, T_batch, F] (padded to the batch's longest) and lengths [B] of rows ``idx`` (None: all T_max)."""
        if self.lengths is None:
            return self.x[idx], None
        lengths = self.lengths[idx]
        return self.x[idx, : int(lengths.max())], lengths

    def length_set(self) -> set[int]:
        """The lengths that occur (none in an empty split)."""
        if len(self) == 0:
            return set()
        return {self.x.shape[1]} if self.lengths is None else set(self.lengths.tolist())

    def sequences(self) -> list[np.ndarray]:
        """Each sequence unpadded, [L, F] float32."""
        if self.lengths is None:
            return list(self.x.numpy())
        return [self.x[i, :n].numpy() for i, n in enumerate(self.lengths.tolist())]


@dataclass(frozen=True)
class Dataset:
    """Splits and what a model of them needs to know; ``info`` goes into checkpoints and config.json."""

    spec: str
    splits: dict  # "train", "val", "test" -> Split
    num_features: int
    classes: tuple[str, ...]
    transform: InputTransform = field(default_factory=InputTransform)  # fitted normalization (MNIST: none)
    val_source: str = "given"  # how the validation split was made, in words
    val_fraction: float | None = None  # of each class, when drawn from the training split
    val_seed: int | None = None
    per_step: bool = False  # a label at every step (labels [N, T]): the model's readout is "every"
    layout: str = "auto"  # how the file's arrays were read (data/readers.py): auto (as [N, T, F]), ntc or nct

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_features(self) -> int:
        """The model's input channels: ``num_features``, doubled where the transform appends differences."""
        return self.transform.model_features(self.num_features)

    @property
    def max_length(self) -> int:
        """The longest sequence of any split: what a deployed graph must accept."""
        return max(n for s in self.splits.values() for n in s.length_set())

    @property
    def train_max_length(self) -> int:
        """The longest training sequence: what the model's schedule may be chosen from (not the test set)."""
        return max(self.splits["train"].length_set())

    @property
    def fixed_length(self) -> int | None:
        """T when every sequence of every split has T steps, else None."""
        lengths = {n for s in self.splits.values() for n in s.length_set()}
        return lengths.pop() if len(lengths) == 1 else None

    def info(self) -> dict:
        return {"spec": self.spec, "classes": list(self.classes), "num_features": self.num_features,
                "max_length": self.max_length, "fixed_length": self.fixed_length, "validation": self.val_source,
                "val_fraction": self.val_fraction, "val_seed": self.val_seed, "per_step": self.per_step,
                "layout": self.layout}

    def __getitem__(self, name: str) -> Split:
        """The split ``name`` ("train", "val" or "test")."""
        return self.splits[name]

    def subset(self, **limits: int) -> "Dataset":
        """The same dataset with the first ``limits[name]`` sequences of the splits named."""
        splits = {name: split.subset(limits.get(name)) for name, split in self.splits.items()}
        return dataclasses.replace(self, splits=splits)


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Example indices of training batch ``step``: a fresh seeded shuffle each epoch.

    A pure function of its arguments, so resuming at any step replays exactly
    the batches an uninterrupted run would see. The last partial batch of an
    epoch is dropped.
    """
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    epoch, k = divmod(step, per_epoch)
    return _epoch_order(num_examples, seed, epoch)[k * batch_size : (k + 1) * batch_size]


@functools.lru_cache(maxsize=1)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=gen)
