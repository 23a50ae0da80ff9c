"""Reading a user's sequence files: ``.npz`` arrays, UCR/UEA ``.ts`` files, the UCR 2018 archive's ``.tsv``.

Each reader returns a split as (list of [T, F] float32 arrays, labels or None) and refuses what it cannot
read with one ``UserError`` that names the file, the array and what was expected, in the data's terms
(sequences, steps, channels).

* ``.npz`` (loaded with ``allow_pickle=False``): ``x_NAME`` [N, T, F] or [N, T], or the sequences
  concatenated [sum of lengths, F] with ``lengths_NAME`` [N]; ``y_NAME`` [N] labels. For prediction,
  ``x`` (with ``lengths``, optionally ``y``) alone is enough.
* ``layout``: ``ntc`` (sequences x steps x channels, this package's), ``nct`` (sktime's and aeon's
  numpy3D: sequences x channels x steps, transposed on reading), or ``auto``: ``ntc``, but an array with
  far more channels than steps is refused with the fix named, since that is the usual sign of ``nct``.
* ``.ts``: sktime's parser (the ``ucr`` extra). ``.tsv``: label first, tab-separated, NaN padding at the
  end for unequal lengths (univariate).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..config import LAYOUTS
from ..errors import ParameterError, UserError


def read_npz(path: Path) -> dict:
    """Every array of an ``.npz`` archive, read without unpickling."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not an .npz archive (a zip of .npy arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise UserError(f"{path}: cannot be read without unpickling ({str(e).splitlines()[0]}); "
                            "store plain numeric or string arrays") from None
        raise UserError(f"{path}: an array in it is not a readable .npy ({str(e).splitlines()[0]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable .npz file ({str(e).splitlines()[0]})") from None
    return arrays


def npz_split(path: Path, arrays: dict, name: str, labelled: bool = True, layout: str = "auto"):
    """The split ``name`` (``x_name``...; ``name`` "": ``x``...) as (sequences, labels or None)."""
    key = lambda base: f"{base}_{name}" if name else base  # noqa: E731
    x_key, y_key, lengths_key = key("x"), key("y"), key("lengths")
    if x_key not in arrays or (labelled and y_key not in arrays):
        raise UserError(f"{path}: {x_key if x_key not in arrays else y_key} is missing "
                        f"({x_key} and {y_key} go together)")
    x, y = arrays[x_key], arrays.get(y_key)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise UserError(f"{path}: {x_key} has dtype {x.dtype}; expected real numbers")
    if y is not None and y.ndim != 1:
        raise UserError(f"{path}: {y_key} has shape {list(y.shape)}; expected one label per sequence [N]")
    lengths = arrays.get(lengths_key)
    if lengths is None:
        others = sorted(k for k in arrays if k.startswith("lengths"))
        if others and x.ndim in (1, 2):
            raise UserError(f"{path}: {lengths_key} is missing: {x_key} is {list(x.shape)}, concatenated sequences "
                            f"like those of {others[0]}, and each sequence's length must be given")
        seqs = _fixed_length(path, x_key, x, lengths_key, layout)
    else:
        seqs = _concatenated(path, x_key, x, lengths_key, lengths, layout)
    if y is not None and len(seqs) != len(y):
        raise UserError(f"{path}: {len(seqs)} sequences in {x_key} but {len(y)} labels in {y_key}")
    return seqs, y


def _fixed_length(path: Path, x_key: str, x: np.ndarray, lengths_key: str, layout: str) -> list[np.ndarray]:
    if x.ndim not in (2, 3):
        raise UserError(f"{path}: {x_key} has shape {list(x.shape)}; expected [N, T, F] or [N, T], "
                        f"or concatenated sequences [sum of lengths, F] with {lengths_key}")
    if x.shape[0] == 0:
        raise UserError(f"{path}: {x_key} holds no sequences (shape {list(x.shape)})")
    x = x[:, :, None] if x.ndim == 2 else x
    x = _oriented(path, x_key, x, layout)
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise UserError(f"{path}: {x_key} has shape {list(x.shape)}: sequences of {x.shape[1]} steps and "
                        f"{x.shape[2]} channels; each needs at least one of both")
    return [row.astype(np.float32) for row in x]


def _oriented(path: Path, x_key: str, x: np.ndarray, layout: str) -> np.ndarray:
    """[N, T, F] as the data's ``layout`` says; ``auto`` refuses what looks like [N, C, T]."""
    if layout not in LAYOUTS:
        raise ParameterError("layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "nct":
        return x.transpose(0, 2, 1)
    N, T, F = x.shape
    if layout == "auto" and F >= 8 * max(T, 1) and F >= 16:
        raise UserError(f"{path}: {x_key} has shape [{N}, {T}, {F}]: {T} step(s) of {F} channels, which is most "
                        f"likely [N, channels, steps] (sktime's layout); give --layout nct (or layout='nct') to read "
                        f"it so, or --layout ntc if it really has {T} step(s)")
    return x


def _concatenated(path: Path, x_key: str, x: np.ndarray, lengths_key: str, lengths: np.ndarray,
                  layout: str) -> list[np.ndarray]:
    if layout == "nct":
        raise ParameterError("layout", f"nct applies to [N, C, T] arrays, not to concatenated sequences ({x_key} "
                                       f"with {lengths_key})")
    if x.ndim not in (1, 2) or lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise UserError(f"{path}: with {lengths_key}, {x_key} must be [sum of lengths, F] and {lengths_key} "
                        f"integers [N]; got {list(x.shape)} and {list(lengths.shape)} {lengths.dtype}")
    if len(lengths) == 0:
        raise UserError(f"{path}: {lengths_key} is empty: no sequences")
    if (lengths < 1).any():
        bad = int(np.flatnonzero(lengths < 1)[0])
        raise UserError(f"{path}: {lengths_key}[{bad}] is {int(lengths[bad])}; every sequence needs at least 1 step")
    if int(lengths.sum()) != len(x):
        raise UserError(f"{path}: {lengths_key} sum to {int(lengths.sum())} steps but {x_key} has {len(x)} rows; "
                        "they must be equal")
    x = x.reshape(len(x), -1).astype(np.float32)
    if x.shape[1] == 0:
        raise UserError(f"{path}: {x_key} has shape {list(x.shape)}: steps of 0 channels")
    return np.split(x, np.cumsum(lengths)[:-1])


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A UCR/UEA ``.ts`` file: (sequences [T, F], labels)."""
    sktime_data_dir()  # the extra is needed
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


def read_tsv(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A UCR 2018 archive ``.tsv`` file: each line a label, then the values, tab-separated, NaN-padded at the
    end for unequal lengths; (sequences [T, 1], labels)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
        table = np.array([[float(v) for v in row] for row in rows], dtype=np.float64) if rows else None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a tab-separated table of numbers ({str(e).splitlines()[0][:120]})") from None
    if table is None or table.ndim != 2 or table.shape[1] < 2:
        raise UserError(f"{path}: expected one sequence per line, its label first then its values, tab-separated")
    seqs = []
    for i, row in enumerate(table[:, 1:]):
        real = np.flatnonzero(~np.isnan(row))
        length = int(real[-1]) + 1 if len(real) else 0
        if length == 0:
            raise UserError(f"{path}: line {i + 1} has no values after its label")
        seqs.append(row[:length, None].astype(np.float32))
    labels = table[:, 0]
    return seqs, labels.astype(np.int64) if np.all(labels == np.round(labels)) else labels


def read_ts_pair(train_path: Path, suffix: str = ".ts") -> dict:
    """``NAME_TRAIN.ts`` (or ``.tsv``) and the ``NAME_TEST`` file beside it."""
    if not train_path.name.endswith("_TRAIN" + suffix):
        raise UserError(f"{train_path}: expected a NAME_TRAIN{suffix} file with NAME_TEST{suffix} beside it")
    test_path = train_path.with_name(train_path.name[: -len("_TRAIN" + suffix)] + "_TEST" + suffix)
    read = read_ts if suffix == ".ts" else read_tsv
    return {"source": str(train_path), "splits": {"train": read(train_path), "test": read(test_path)}}


def bundled_ts(name: str) -> Path:
    """The ``_TRAIN.ts`` file of an archive set bundled with sktime."""
    root = sktime_data_dir()
    path = root / name / f"{name}_TRAIN.ts"
    if not path.is_file():
        known = sorted(p.name for p in root.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file())
        raise UserError(f"ucr:{name}: not bundled with sktime; bundled sets: {', '.join(known)}")
    return path


def sktime_data_dir() -> Path:
    try:
        import sktime
    except ImportError:
        raise UserError("reading .ts files needs sktime: pip install 'dilated-rnn[ucr]'") from None
    return Path(sktime.__file__).resolve().parent / "datasets" / "data"


def read_unlabelled(path: Path, layout: str = "auto") -> tuple[list[np.ndarray], np.ndarray | None]:
    """Sequences to predict from one file, with their labels where the file has them: an ``.npz`` with ``x``
    (or ``x_test``), a ``.ts`` or a ``.tsv`` file."""
    if path.suffix == ".npz":
        arrays = read_npz(path)
        name = "" if "x" in arrays else "test" if "x_test" in arrays else None
        if name is None:
            raise UserError(f"{path}: no x (or x_test) array; found {', '.join(sorted(arrays)) or 'none'}")
        return npz_split(path, arrays, name, labelled=False, layout=layout)
    if path.suffix == ".ts":
        return read_ts(path)
    if path.suffix == ".tsv":
        return read_tsv(path)
    raise UserError(f"{path}: unknown data file; expected .npz, .ts, .tsv or a folder of .bin files")
