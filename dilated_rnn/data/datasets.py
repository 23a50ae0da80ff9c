"""Datasets: MNIST, a user's ``.npz``, UCR/UEA ``.ts`` and ``.tsv`` files, the archive sets bundled with sktime.

``load_dataset(spec)`` reads one of

* ``mnist`` (``mnist.py``: 55k/5k/10k, pixels in [0, 1], optionally permuted);
* ``PATH.npz``, loaded with ``allow_pickle=False``: ``x_train``, ``y_train``, ``x_test``, ``y_test``,
  optionally ``x_val``/``y_val``. Fixed length: ``x`` is [N, T, F] or [N, T]. Variable length: ``x``
  is the sequences concatenated, [sum of lengths, F] (or [sum of lengths]), with ``lengths_train``,
  ``lengths_test`` (and ``lengths_val``) giving each sequence's length;
* ``PATH_TRAIN.ts`` (the ``_TEST.ts`` beside it), univariate or multivariate, equal or unequal length,
  read with sktime's parser (the ``ucr`` extra); ``PATH_TRAIN.tsv``, the UCR 2018 archive's format;
* ``ucr:NAME``, an archive set bundled inside sktime (GunPoint, ItalyPowerDemand, JapaneseVowels,
  PLAID, ACSF1, ...): no download;
* ``copy:T``, the paper's copy-memory task with T blanks (``copy_task.py``): generated from the
  seed, a label at every step.

Labels are integers or strings; the classes are the training labels in sorted order (numerically
when every label is a number) and are stored with the model. Unless the data gives a validation
split, a stratified ``val_fraction`` of the training set may be held out, drawn from ``seed`` (by default
none: every training sequence trains). Model selection uses it alone; the test split is for the final report.
Bad data ends in a one-line ``UserError`` naming the file and what is wrong, before anything is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ParameterError, UserError
from . import copy_task
from .mnist import load_mnist
from .readers import bundled_ts, npz_split, read_npz, read_ts_pair
from .splits import Dataset, Split
from .transform import fit_normalization

UCR_PREFIX = "ucr:"


def default_dilations(max_length: int) -> tuple[int, ...]:
    """1, 2, 4, ... while the largest dilation is at most half the longest sequence (784 steps: 1..256)."""
    dilations = [1]
    while 2 * dilations[-1] <= max_length // 2:
        dilations.append(2 * dilations[-1])
    return tuple(dilations)


def load_dataset(spec: str = "mnist", data_dir=None, val_fraction: float = TrainConfig.val_fraction,
                 seed: int = 0, normalize: str = "auto", layout: str = "auto", differences: str = "auto") -> Dataset:
    """The dataset ``spec`` names (module doc), with its validation split and fitted normalization.

    ``normalize`` (``transform.fit_normalization``): "auto" is "none" for MNIST, else ``transform.auto_normalization``
    (each sequence by its own statistics for one channel whose scale varies widely, per channel otherwise).
    ``differences`` (``config.DIFFERENCES``): whether the model reads each channel's first differences beside
    its values; "auto" is "on" for a user's sequences, "off" for MNIST and the copy task.
    ``layout`` (``.npz`` arrays only, ``readers.py``): ``auto``, ``ntc`` or ``nct``. A file's spec is kept
    resolved (an absolute path), so that the run finds it again from any directory.
    """
    if differences == "on" and (spec == "mnist" or spec.startswith(copy_task.PREFIX)):
        raise ParameterError("differences", "must be auto or off for MNIST and the copy task")
    if spec == "mnist":
        if normalize not in ("auto", "none"):
            raise ParameterError("normalize", "must be auto or none for MNIST, whose pixels stay in [0, 1]")
        return load_mnist(data_dir)
    if spec.startswith(copy_task.PREFIX):
        return _copy_dataset(spec, seed)
    if spec.startswith(UCR_PREFIX):
        raw = read_ts_pair(bundled_ts(spec[len(UCR_PREFIX):]))
    elif spec.endswith((".npz", ".ts", ".tsv")):
        path = Path(spec).expanduser().resolve()
        spec = str(path)
        raw = _read_npz(path, layout) if path.suffix == ".npz" else read_ts_pair(path, path.suffix)
    else:
        raise UserError(f"{spec}: unknown dataset; expected mnist, PATH.npz, PATH_TRAIN.ts, PATH_TRAIN.tsv, "
                        "ucr:NAME or copy:T")
    dataset = _assemble(spec, raw, val_fraction, seed, normalize, differences)
    return dataset if layout == "auto" else dataclasses.replace(dataset, layout=layout)


def from_sequences(sequences, labels, val_fraction: float = TrainConfig.val_fraction, seed: int = 0,
                   normalize: str = "auto", spec: str = "arrays", differences: str = "auto") -> Dataset:
    """A ``Dataset`` of in-memory sequences ([T_i, F] arrays) and their labels, checked as files are, with a
    stratified validation split drawn from ``seed``; the test split is the validation split, or without one the
    training split (there is no other: callers that have test data evaluate it themselves)."""
    dataset = _assemble(spec, {"source": spec, "splits": {"train": (list(sequences), np.asarray(labels))}},
                        val_fraction, seed, normalize, differences)
    test = dataset.splits["val"] if len(dataset.splits["val"]) else dataset.splits["train"]
    return dataclasses.replace(dataset, splits={**dataset.splits, "test": test})


def _read_npz(path: Path, layout: str) -> dict:
    """A training ``.npz``: each split present as (sequences, labels)."""
    arrays = read_npz(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}; expected x_train, y_train, x_test, y_test "
                        "(and optionally x_val, y_val)")
    splits = {}
    for name in ("train", "val", "test"):
        if f"x_{name}" in arrays or f"y_{name}" in arrays:
            splits[name] = npz_split(path, arrays, name, layout=layout)
    return {"source": str(path), "splits": splits}


def _copy_dataset(spec: str, seed: int) -> Dataset:
    delay = copy_task.parse_delay(spec)
    splits = {}
    for name, (x, targets) in copy_task.copy_splits(delay, seed).items():
        splits[name] = Split(x, torch.full((len(x),), x.shape[1]), targets)
    return Dataset(spec, splits, copy_task.TOKENS, copy_task.CLASSES,
                   val_source=f"generated from seed {seed}, apart from the training sequences", val_seed=seed,
                   per_step=True)


# --- checks, classes, validation split, padding, normalization ---

def _assemble(spec: str, raw: dict, val_fraction: float, seed: int, normalize: str, differences: str) -> Dataset:
    source, splits = raw["source"], raw["splits"]
    features = {s.shape[1] for seqs, _ in splits.values() for s in seqs}
    if len(features) != 1:
        raise UserError(f"{source}: sequences have {sorted(features)} channels; every sequence needs the same")
    for name, (seqs, _) in splits.items():
        if not seqs:
            raise UserError(f"{source}: the {name} split is empty")
        bad = next((i for i, s in enumerate(seqs) if not np.isfinite(s).all()), None)
        if bad is not None:
            raise UserError(f"{source}: {name} sequence {bad} contains NaN or infinite values")
    splits = {name: (seqs, _as_labels(source, y)) for name, (seqs, y) in splits.items()}
    classes = _classes(source, splits["train"][1])
    index = {c: i for i, c in enumerate(classes)}
    for name in ("val", "test"):
        if name in splits:
            unseen = sorted({str(v) for v in splits[name][1]} - set(classes))
            if unseen:
                raise UserError(f"{source}: {name} label(s) {', '.join(unseen[:5])} never occur in training")
    labelled = {name: (seqs, np.array([index[str(v)] for v in y], np.int64)) for name, (seqs, y) in splits.items()}
    drawn = "val" not in labelled
    if drawn and val_fraction > 0:
        labelled["train"], labelled["val"] = _stratified(source, classes, *labelled["train"], val_fraction, seed)
        how = f"stratified {val_fraction:g} of each class's training sequences, seed {seed}"
    elif drawn:  # none: every training sequence trains, and best.pt is the last step
        labelled["val"] = ([], np.zeros(0, np.int64))
        how = "none drawn: best.pt is the last step"
    padded = {name: _pad(seqs, y, features.copy().pop()) for name, (seqs, y) in labelled.items()}
    train = padded["train"]
    transform = fit_normalization(train.x, train.lengths, normalize, differences != "off")
    return Dataset(spec, padded, features.pop(), classes, transform,
                   how if drawn else "given", val_fraction if drawn else None, seed if drawn else None)


def _classes(source, labels: np.ndarray) -> tuple[str, ...]:
    """The training labels' classes, sorted (numerically when every label is a number)."""
    if np.issubdtype(labels.dtype, np.floating):
        fractional = labels[np.isfinite(labels) & (labels != np.round(labels))]
        if len(fractional) or not np.isfinite(labels).all():
            example = fractional[0] if len(fractional) else labels[~np.isfinite(labels)][0]
            raise UserError(f"{source}: labels are not class labels (e.g. {example:g}): numbers with a fraction or "
                            "NaN look like a regression target; classification needs integer or string labels")
        labels = labels.astype(np.int64)
    names = {str(v) for v in labels}
    try:
        return tuple(sorted(names, key=float))  # 2 before 10
    except ValueError:
        return tuple(sorted(names))


def _as_labels(source, y: np.ndarray) -> np.ndarray:
    """Integer-valued float labels (3.0) as integers, so that they name the same classes as 3; others as given.
    Numbers with a fraction, as numbers or as text (a .ts file's regression targets), are refused."""
    if y.dtype.kind in "USO":
        try:
            numbers = np.array([float(v) for v in y])
        except (TypeError, ValueError):
            return y  # class names
        if not (np.isfinite(numbers).all() and (numbers == np.round(numbers)).all()):
            _classes(source, numbers)  # refuses fractions and NaN, naming one
        return y
    if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        _classes(source, y)
    return y


def _stratified(source, classes, seqs, y, fraction: float, seed: int):
    """Hold out ``fraction`` of each class (at least one sequence), drawn from ``seed``; a class of a single
    training sequence keeps it for training (the archive's FiftyWords has such classes), unvalidated."""
    rng = np.random.default_rng(seed)
    val = []
    for k, name in enumerate(classes):
        members = np.flatnonzero(y == k)
        if len(members) >= 2:
            val.extend(rng.permutation(members)[: max(1, round(fraction * len(members)))].tolist())
    is_val = np.zeros(len(y), bool)
    is_val[val] = True
    pick = lambda mask: ([seqs[i] for i in np.flatnonzero(mask)], y[mask])
    return pick(~is_val), pick(is_val)


def pad_sequences(sequences: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sequences [L_i, F] -> x [N, T, F] zero-padded at the end (T: ``length`` or the longest), lengths [N].

    An array [N, T, F] of the length asked for is passed through as it is.
    """
    if isinstance(sequences, np.ndarray) and sequences.ndim == 3 and length in (None, sequences.shape[1]):
        return sequences, np.full(len(sequences), sequences.shape[1], np.int64)
    lengths = np.array([len(s) for s in sequences], np.int64)
    x = np.zeros((len(sequences), length or lengths.max(), sequences[0].shape[1]), np.float32)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = s
    return x, lengths


def _pad(seqs: list[np.ndarray], labels: np.ndarray, features: int) -> Split:
    if not seqs:  # an empty split (no validation): no rows
        return Split(torch.zeros(0, 1, features), torch.zeros(0, dtype=torch.int64), torch.from_numpy(labels))
    x, lengths = pad_sequences(seqs)
    return Split(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(labels))


def check_readout(dataset: Dataset, readout_steps: int) -> None:
    """A classifier reads the last ``readout_steps`` (the first dilation) of each sequence."""
    for name, split in dataset.splits.items():
        if not len(split):  # no validation split (val_fraction 0)
            continue
        shortest = min(split.length_set())
        if shortest < readout_steps:
            raise UserError(f"{dataset.spec}: a {name} sequence has {shortest} steps, fewer than the "
                            f"{readout_steps} the readout reads (the first dilation)")
