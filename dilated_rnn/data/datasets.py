"""Datasets beyond MNIST: a user's ``.npz``, UCR/UEA ``.ts`` files, and the archive sets bundled with sktime.

``load_dataset(spec)`` reads one of

* ``mnist`` (``mnist.py``: 55k/5k/10k, pixels in [0, 1], optionally permuted);
* ``PATH.npz``, loaded with ``allow_pickle=False``: ``x_train``, ``y_train``, ``x_test``, ``y_test``,
  optionally ``x_val``/``y_val``. Fixed length: ``x`` is [N, T, F] or [N, T]. Variable length: ``x``
  is the sequences concatenated, [sum of lengths, F] (or [sum of lengths]), with ``lengths_train``,
  ``lengths_test`` (and ``lengths_val``) giving each sequence's length;
* ``PATH_TRAIN.ts`` (the ``_TEST.ts`` beside it), univariate or multivariate, equal or unequal length,
  read with sktime's parser (the ``ucr`` extra);
* ``ucr:NAME``, an archive set bundled inside sktime (GunPoint, ItalyPowerDemand, JapaneseVowels,
  PLAID, ACSF1, ...): no download;
* ``copy:T``, the paper's copy-memory task with T blanks (``copy_task.py``): generated from the
  seed, a label at every step.

Labels are integers or strings; the classes are the training labels in sorted order (numerically
when every label is a number) and are stored with the model. Unless the data gives a validation
split, a stratified ``val_fraction`` of the training set is held out, drawn from ``seed``. Model
selection uses it alone; the test split is for the final report. Bad data ends in a one-line
``UserError`` naming the file and what is wrong, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError, UserError
from . import copy_task
from .mnist import load_mnist
from .splits import Dataset, Split
from .transform import fit_normalization

UCR_PREFIX = "ucr:"
DEFAULT_VAL_FRACTION = 0.2


def default_dilations(max_length: int) -> tuple[int, ...]:
    """1, 2, 4, ... while the largest dilation is at most half the longest sequence (784 steps: 1..256)."""
    dilations = [1]
    while 2 * dilations[-1] <= max_length // 2:
        dilations.append(2 * dilations[-1])
    return tuple(dilations)


def load_dataset(spec: str = "mnist", data_dir=None, val_fraction: float = DEFAULT_VAL_FRACTION,
                 seed: int = 0, normalize: str = "auto") -> Dataset:
    """The dataset ``spec`` names (module doc), with its validation split and fitted normalization.

    ``normalize`` (``transform.fit_normalization``): "auto" is "none" for MNIST, "channel" otherwise.
    """
    if spec == "mnist":
        if normalize not in ("auto", "none"):
            raise ParameterError("normalize", "must be auto or none for MNIST, whose pixels stay in [0, 1]")
        return load_mnist(data_dir)
    if spec.startswith(copy_task.PREFIX):
        return _copy_dataset(spec, seed)
    if spec.startswith(UCR_PREFIX):
        raw = _read_ts_pair(_bundled_ts(spec[len(UCR_PREFIX):]))
    elif spec.endswith(".npz"):
        raw = _read_npz(Path(spec))
    elif spec.endswith(".ts"):
        raw = _read_ts_pair(Path(spec))
    else:
        raise UserError(f"{spec}: unknown dataset; expected mnist, PATH.npz, PATH_TRAIN.ts or ucr:NAME")
    return _assemble(spec, raw, val_fraction, seed, "channel" if normalize == "auto" else normalize)


def _copy_dataset(spec: str, seed: int) -> Dataset:
    delay = copy_task.parse_delay(spec)
    splits = {}
    for name, (x, targets) in copy_task.copy_splits(delay, seed).items():
        splits[name] = Split(x, torch.full((len(x),), x.shape[1]), targets)
    return Dataset(spec, splits, copy_task.TOKENS, copy_task.CLASSES,
                   val_source=f"generated from seed {seed}, apart from the training sequences", val_seed=seed,
                   per_step=True)


# --- raw data: each split as (list of [L, F] float32 arrays, labels array), plus where it came from ---

def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        raise UserError(f"{path}: cannot be read without unpickling ({str(e).splitlines()[0]}); "
                        "store plain numeric or string arrays") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({str(e).splitlines()[0]})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
    splits = {}
    for name in ("train", "val", "test"):
        if f"x_{name}" in arrays or f"y_{name}" in arrays:
            splits[name] = _npz_split(path, name, arrays)
    return {"source": str(path), "splits": splits}


def _npz_split(path: Path, name: str, arrays: dict) -> tuple[list[np.ndarray], np.ndarray]:
    for key in (f"x_{name}", f"y_{name}"):
        if key not in arrays:
            raise UserError(f"{path}: {key} is missing (x_{name} and y_{name} go together)")
    x, y = arrays[f"x_{name}"], arrays[f"y_{name}"]
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{path}: x_{name} has dtype {x.dtype}; expected numbers")
    if y.ndim != 1:
        raise UserError(f"{path}: y_{name} has shape {y.shape}; expected one label per sequence [N]")
    lengths = arrays.get(f"lengths_{name}")
    if lengths is None:  # fixed length: [N, T, F] or [N, T]
        if x.ndim not in (2, 3):
            raise UserError(f"{path}: x_{name} has shape {x.shape}; expected [N, T, F] or [N, T], "
                            f"or concatenated sequences with lengths_{name}")
        x = x.reshape(x.shape[0], x.shape[1], -1)
        seqs = [row.astype(np.float32) for row in x]
    else:
        if x.ndim not in (1, 2) or lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
            raise UserError(f"{path}: with lengths_{name}, x_{name} must be [sum of lengths, F] and "
                            f"lengths_{name} integers [N]; got {x.shape} and {lengths.shape} {lengths.dtype}")
        if (lengths < 1).any() or int(lengths.sum()) != len(x):
            raise UserError(f"{path}: lengths_{name} sum to {int(lengths.sum())} (smallest {int(lengths.min())}) "
                            f"but x_{name} has {len(x)} rows; each length must be positive and they must sum to the rows")
        x = x.reshape(len(x), -1).astype(np.float32)
        seqs = np.split(x, np.cumsum(lengths)[:-1])
    if len(seqs) != len(y):
        raise UserError(f"{path}: {len(seqs)} sequences in x_{name} but {len(y)} labels in y_{name}")
    return seqs, y


def _bundled_ts(name: str) -> Path:
    root = _sktime_data_dir()
    path = root / name / f"{name}_TRAIN.ts"
    if not path.is_file():
        known = sorted(p.name for p in root.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file())
        raise UserError(f"ucr:{name}: not bundled with sktime; bundled sets: {', '.join(known)}")
    return path


def _sktime_data_dir() -> Path:
    try:
        import sktime
    except ImportError:
        raise UserError("reading .ts files needs sktime: pip install 'dilated-rnn[ucr]'") from None
    return Path(sktime.__file__).resolve().parent / "datasets" / "data"


def _read_ts_pair(train_path: Path) -> dict:
    if not train_path.name.endswith("_TRAIN.ts"):
        raise UserError(f"{train_path}: expected a NAME_TRAIN.ts file with NAME_TEST.ts beside it")
    test_path = train_path.with_name(train_path.name[: -len("_TRAIN.ts")] + "_TEST.ts")
    return {"source": str(train_path), "splits": {"train": _read_ts(train_path), "test": _read_ts(test_path)}}


def _read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    _sktime_data_dir()  # the extra is needed
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    from sktime.datasets import load_from_tsfile

    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    except Exception as e:  # sktime's parser raises several types for malformed files
        raise UserError(f"{path}: not a readable .ts file ({str(e).strip().splitlines()[0][:200]})") from None
    seqs = []
    for i in range(len(frame)):
        channels = [np.asarray(frame.iloc[i, c], dtype=np.float32) for c in range(frame.shape[1])]
        if len({len(ch) for ch in channels}) != 1:
            raise UserError(f"{path}: case {i + 1} has channels of different lengths "
                            f"({', '.join(str(len(ch)) for ch in channels)}); each case's channels must align")
        seqs.append(np.stack(channels, axis=1))
    return seqs, np.asarray(labels)


# --- checks, classes, validation split, padding, normalization ---

def _assemble(spec: str, raw: dict, val_fraction: float, seed: int, normalize: str) -> Dataset:
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
    classes = _classes(splits["train"][1])
    index = {c: i for i, c in enumerate(classes)}
    for name in ("val", "test"):
        if name in splits:
            unseen = sorted({str(v) for v in splits[name][1]} - set(classes))
            if unseen:
                raise UserError(f"{source}: {name} label(s) {', '.join(unseen[:5])} never occur in training")
    labelled = {name: (seqs, np.array([index[str(v)] for v in y], np.int64)) for name, (seqs, y) in splits.items()}
    drawn = "val" not in labelled
    if drawn:
        labelled["train"], labelled["val"] = _stratified(source, classes, *labelled["train"], val_fraction, seed)
    padded = {name: _pad(seqs, y) for name, (seqs, y) in labelled.items()}
    train = padded["train"]
    return Dataset(spec, padded, features.pop(), classes, fit_normalization(train.x, train.lengths, normalize),
                   f"stratified {val_fraction:g} of each class's training sequences, seed {seed}" if drawn else "given",
                   val_fraction if drawn else None, seed if drawn else None)


def _classes(labels: np.ndarray) -> tuple[str, ...]:
    names = {str(v) for v in labels}
    try:
        return tuple(sorted(names, key=float))  # 2 before 10
    except ValueError:
        return tuple(sorted(names))


def _stratified(source, classes, seqs, y, fraction: float, seed: int):
    """Hold out ``fraction`` of each class (at least one sequence), drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    val = []
    for k, name in enumerate(classes):
        members = np.flatnonzero(y == k)
        if len(members) < 2:
            raise UserError(f"{source}: class {name} has {len(members)} training sequence(s); holding out a "
                            "validation share needs at least 2 per class (or give x_val, y_val)")
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


def _pad(seqs: list[np.ndarray], labels: np.ndarray) -> Split:
    x, lengths = pad_sequences(seqs)
    return Split(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(labels))


def check_readout(dataset: Dataset, readout_steps: int) -> None:
    """A classifier reads the last ``readout_steps`` (the first dilation) of each sequence."""
    for name, split in dataset.splits.items():
        shortest = min(split.length_set())
        if shortest < readout_steps:
            raise UserError(f"{dataset.spec}: a {name} sequence has {shortest} steps, fewer than the "
                            f"{readout_steps} the readout reads (the first dilation)")
