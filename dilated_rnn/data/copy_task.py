"""The copy-memory task (Chang et al. 2017, section 4.1; Arjovsky et al. 2016): ``--data copy:T``.

Each sequence has T + 20 steps. Its first ten inputs are symbols drawn uniformly from eight
categories (1..8), then come T - 1 blanks (0), a delimiter (9) and ten more blanks; inputs are
one-hot over these ten tokens. The target is blank at every step except the last ten, where it is
the ten symbols in order: the model must hold them for T + 10 steps. The loss is the cross-entropy
at every step (nine classes: blank and the eight symbols). A model that remembers nothing does best
by predicting blank where the target is known to be blank and a uniform guess at the last ten steps,
a mean loss of 10 log 8 / (T + 20) per step (``memoryless_loss``).

The splits are generated from the seed, no files: training, validation and test sequences come from
independent streams, so none is repeated across splits by construction of the seeds.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError

PREFIX = "copy:"
SYMBOLS, CATEGORIES, TOKENS = 10, 8, 10  # symbols to copy, their categories (1..8), input tokens (0..9)
CLASSES = ("blank",) + tuple(str(k) for k in range(1, CATEGORIES + 1))
SPLIT_SIZES = {"train": 10000, "val": 1000, "test": 1000}


def parse_delay(spec: str) -> int:
    text = spec[len(PREFIX):]
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{spec}: expected copy:T with T a positive number of blank steps, e.g. copy:500")
    return int(text)


def memoryless_loss(delay: int) -> float:
    return SYMBOLS * math.log(CATEGORIES) / (delay + 2 * SYMBOLS)


def recalled(confusion) -> float:
    """The fraction of the symbols recalled, from a confusion matrix over every step (rows: true class,
    as ``evaluate.classification_report`` writes it): the symbol classes 1..8 are the targets of the
    last ten steps only, so their rows hold exactly the recall steps."""
    symbol_rows = np.asarray(confusion)[1:]
    return float(symbol_rows[:, 1:].trace() / symbol_rows.sum())


def recalled_at_least(accuracy: float, delay: int) -> float:
    """A lower bound of ``recalled`` from the accuracy over every step alone (what training logs): the
    correct steps beyond the T + 10 blanks are recalled symbols; exact when every blank is right."""
    steps = delay + 2 * SYMBOLS
    return max(0.0, (accuracy * steps - (steps - SYMBOLS)) / SYMBOLS)


def generate(delay: int, count: int, seed: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` sequences: one-hot inputs [count, T+20, 10] float32 and targets [count, T+20] int64."""
    rng = np.random.default_rng([seed, stream])
    T = delay + 2 * SYMBOLS
    symbols = rng.integers(1, CATEGORIES + 1, (count, SYMBOLS))
    tokens = np.zeros((count, T), np.int64)
    tokens[:, :SYMBOLS] = symbols
    tokens[:, delay + SYMBOLS - 1] = TOKENS - 1  # the delimiter, after T - 1 blanks
    targets = np.zeros((count, T), np.int64)
    targets[:, -SYMBOLS:] = symbols
    x = torch.nn.functional.one_hot(torch.from_numpy(tokens), TOKENS).float()
    return x, torch.from_numpy(targets)


def copy_splits(delay: int, seed: int) -> dict:
    """The three splits, each (inputs, targets), from independent streams of ``seed``."""
    return {name: generate(delay, count, seed, stream) for stream, (name, count) in enumerate(SPLIT_SIZES.items())}
