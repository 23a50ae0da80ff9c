"""Accuracy from a folder of ``*_output_0.bin`` logits and a ``labels.npy``: the reference's script, done right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError, UserError
from ..training.evaluate import classification_report
from .bins import OUTPUT_DTYPES, OUTPUT_SUFFIX, load_labels


def _detect(path: Path, num_classes: int) -> str:
    """fp32 or fp16, from the size of one output file."""
    size = path.stat().st_size
    for name, d in OUTPUT_DTYPES.items():
        if size == num_classes * np.dtype(d).itemsize:
            return name
    raise UserError(f"{path}: {size} bytes is neither {num_classes} float32 nor {num_classes} float16 logits")


def _names(indices, limit=3) -> str:
    shown = ", ".join(f"{i:05d}{OUTPUT_SUFFIX}" for i in sorted(indices)[:limit])
    return shown + (", ..." if len(indices) > limit else "")


def accuracy_report(output_dir, labels_path, dtype: str = "auto", num_classes: int | None = None) -> dict:
    """Match outputs to labels by index and report as ``evaluate.classification_report`` does.

    Missing or extra outputs are an error, not skipped. ``num_classes``: logits per output; by
    default what ``infer.json`` beside the outputs says, else 10 (MNIST).
    """
    output_dir = Path(output_dir)
    if dtype not in ("auto", *OUTPUT_DTYPES):
        raise ParameterError("dtype", f"must be auto, fp32 or fp16, got {dtype!r}")
    info_path = output_dir / "infer.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    num_classes = num_classes or info.get("num_classes", 10)
    labels = load_labels(labels_path)
    files = {}
    for path in sorted(output_dir.glob(f"*{OUTPUT_SUFFIX}")):
        stem = path.name[: -len(OUTPUT_SUFFIX)]
        if not stem.isdigit():
            raise UserError(f"{path}: expected a name NNNNN{OUTPUT_SUFFIX} with the input's index")
        files[int(stem)] = path
    if not files:
        raise UserError(f"{output_dir}: no *{OUTPUT_SUFFIX} files")
    missing = set(range(len(labels))) - set(files)
    extra = set(files) - set(range(len(labels)))
    if missing or extra:
        raise UserError(
            f"{output_dir}: {len(files)} outputs for {len(labels)} labels in {labels_path}: "
            f"{len(missing)} missing ({_names(missing) or 'none'}), {len(extra)} extra ({_names(extra) or 'none'})"
        )
    if dtype == "auto":
        dtype = _detect(files[0], num_classes)
    size = num_classes * np.dtype(OUTPUT_DTYPES[dtype]).itemsize
    for path in files.values():  # every file must hold the folder's one dtype
        if path.stat().st_size != size:
            raise UserError(f"{path}: {path.stat().st_size} bytes is not {num_classes} {dtype} values")
    logits = np.stack([np.fromfile(files[i], dtype=OUTPUT_DTYPES[dtype]) for i in range(len(labels))])
    if labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"{labels_path}: labels must be class indices 0..{num_classes - 1}")
    report = classification_report(torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(labels), num_classes)
    return {
        "outputs": str(output_dir),
        "labels": str(labels_path),
        "model": info.get("model", "unknown"),
        "precision": info.get("precision", "unknown"),
        "output_dtype": np.dtype(OUTPUT_DTYPES[dtype]).name,
        "num_images": len(labels),
        **report,
    }


def format_accuracy(report: dict) -> str:
    return "\n".join([
        "======= Final Eval Accuracy =======",
        f"Model:          {report['model']}",
        f"Precision:      {report['precision']} (outputs {report['output_dtype']})",
        f"Sequences:      {report['num_images']}",
        f"Accuracy:       {100 * report['accuracy']:.2f}% ({report['correct']} correct)",
    ])
