"""The reference's deployment file formats.

* inputs: one ``NNNNN.bin`` per image, 784 float32 values in [0, 1] in natural
  pixel order (the reference's input layout [1, 784, 1]);
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

from .data import scale_pixels
from .errors import UserError

OUTPUT_SUFFIX = "_output_0.bin"


def write_bins(images: torch.Tensor, labels: torch.Tensor, out_dir) -> int:
    """Write uint8 images [N, 784] as float32 ``.bin`` files plus ``labels.npy``; all or nothing.

    The files are written into a temporary folder beside ``out_dir`` that is
    renamed into place at the end, so an interrupted run leaves no folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: exists and is not empty; choose a new output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        pixels = scale_pixels(images).numpy()
        width = max(5, len(str(len(pixels) - 1)))
        for i, row in enumerate(pixels):
            row.tofile(tmp / f"{i:0{width}d}.bin")
        np.save(tmp / "labels.npy", labels.numpy().astype(np.int64), allow_pickle=False)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(pixels)


def read_bins(in_dir, length: int = 784) -> tuple[list[str], np.ndarray]:
    """Stems (sorted) and float32 inputs [N, length] of every ``*.bin`` in ``in_dir``, validated."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise UserError(f"{in_dir}: no such input folder")
    paths = sorted(p for p in in_dir.glob("*.bin") if not p.name.endswith(OUTPUT_SUFFIX))
    if not paths:
        raise UserError(f"{in_dir}: no .bin input files")
    data = np.empty((len(paths), length), dtype=np.float32)
    for i, p in enumerate(paths):
        size = p.stat().st_size
        if size != 4 * length:
            raise UserError(f"{p}: {size} bytes, expected {4 * length} ({length} float32 values)")
        data[i] = np.fromfile(p, dtype=np.float32)
        if not np.isfinite(data[i]).all():
            raise UserError(f"{p}: contains NaN or infinite values")
    return [p.stem for p in paths], data


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
