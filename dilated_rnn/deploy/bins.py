"""The reference's deployment file formats, for sequences of any length and channel count.

* inputs: one ``NNNNN.bin`` per sequence, its T x F raw values as float32, step-major
  (MNIST: 784 values in [0, 1] in natural pixel order, the reference's [1, 784, 1]);
  the length follows from the size;
* ``labels.npy``: int64 class indices [N] (the reference's one-hot [N, K] is
  accepted when reading); loaded without pickle;
* outputs: ``<name>_output_0.bin`` per input, the logits as float32 or float16.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..files import current_umask

OUTPUT_SUFFIX = "_output_0.bin"
OUTPUT_DTYPES = {"fp32": np.float32, "fp16": np.float16}  # what an output file may hold


def write_bins(sequences, labels: torch.Tensor, out_dir) -> int:
    """Write float32 sequences ([L, F] each) as ``.bin`` files plus ``labels.npy``; all or nothing.

    The files are written into a temporary folder beside ``out_dir`` that is
    renamed into place at the end, so an interrupted run leaves no folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: exists and is not empty; choose a new output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        tmp.chmod(0o777 & ~current_umask())  # a folder for others to read, as mkdir makes one (mkdtemp's is private)
        width = max(5, len(str(len(sequences) - 1)))
        for i, seq in enumerate(sequences):
            np.ascontiguousarray(seq, dtype=np.float32).tofile(tmp / f"{i:0{width}d}.bin")
        np.save(tmp / "labels.npy", labels.numpy().astype(np.int64), allow_pickle=False)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(sequences)


def bin_paths(in_dir) -> list[Path]:
    """The ``*.bin`` inputs of ``in_dir``, sorted; an error if there are none."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise UserError(f"{in_dir}: no such input folder")
    paths = sorted(p for p in in_dir.glob("*.bin") if not p.name.endswith(OUTPUT_SUFFIX))
    if not paths:
        raise UserError(f"{in_dir}: no .bin input files")
    return paths


def read_bins(in_dir, features: int = 1, length: int | None = None,
              max_length: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Stems (sorted) and float32 sequences [L, F] of every ``*.bin`` in ``in_dir``, validated.

    ``length``: every file must hold exactly that many steps; ``max_length``: at most that many.
    """
    paths = bin_paths(in_dir)
    step = 4 * features
    sequences = []
    for p in paths:
        size = p.stat().st_size
        if length is not None and size != step * length:
            raise UserError(f"{p}: {size} bytes, expected {step * length} ({length * features} float32 values)")
        if size == 0 or size % step or (max_length is not None and size > step * max_length):
            most = f", at most {max_length} steps" if max_length is not None else ""
            raise UserError(f"{p}: {size} bytes is not a sequence of {features}-channel float32 steps{most}")
        seq = np.fromfile(p, dtype=np.float32).reshape(-1, features)
        if not np.isfinite(seq).all():
            raise UserError(f"{p}: contains NaN or infinite values")
        sequences.append(seq)
    return [p.stem for p in paths], sequences


def load_labels(path) -> np.ndarray:
    """Class indices [N] from ``labels.npy`` (indices, or one-hot rows), never unpickling."""
    path = Path(path)
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy label file ({str(e).splitlines()[0]})") from None
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)  # the reference's one-hot form
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number):
        raise UserError(f"{path}: expected class indices [N] or one-hot [N, K], got shape {labels.shape}")
    return labels.astype(np.int64)


def write_output(out_dir: Path, stem: str, logits: np.ndarray, dtype) -> None:
    """One output file, written under a temporary name and renamed."""
    final = out_dir / f"{stem}{OUTPUT_SUFFIX}"
    tmp = out_dir / f".{stem}{OUTPUT_SUFFIX}.tmp"
    logits.astype(dtype).tofile(tmp)
    os.replace(tmp, final)
