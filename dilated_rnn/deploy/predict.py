"""``drnn predict``: a model's class probabilities and predicted class for every sequence of new data.

The model is any the backends run (``infer.load_backend``): a checkpoint, a shipped model, an ONNX graph or
an OpenVINO IR. The data is an ``.npz`` (``x`` alone is enough; ``x_test`` otherwise), a ``.ts`` or
``.tsv`` file, or a folder of ``.bin`` files. Sequences of different lengths are exact (each is read at
its own last step), in batches. The output's format follows its suffix:

* ``.csv``: a header ``sequence,predicted,p_<class>...``, then one row per sequence;
* ``.jsonl``: one object per line, ``{"sequence", "predicted", "probabilities": {class: p}}``;
* ``.npz``: ``sequence`` [N], ``predicted`` [N], ``probabilities`` [N, K], ``classes`` [K].
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_path
from .bins import bin_paths, read_bins
from .infer import load_backend, run_inference

FORMATS = (".csv", ".jsonl", ".npz")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Rows of logits [N, K] as probabilities, in float64 (rows sum to 1)."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def read_data(path, layout: str = "auto", features: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The sequences of ``path`` and their names (``.bin`` stems; elsewhere their row numbers)."""
    from ..data.readers import read_unlabelled

    path = Path(path)
    if path.is_dir():
        bin_paths(path)
        return read_bins(path, features or 1)
    sequences, _ = read_unlabelled(path, layout)
    return [str(i) for i in range(len(sequences))], sequences


def predict_file(source, data, output, layout: str = "auto", batch_size: int = 256, threads: int = 1,
                 progress: bool = False) -> dict:
    """Predict every sequence of ``data`` with the model ``source`` and write ``output`` (module doc), whole or
    not at all. Returns a summary: the model, the data, counts per predicted class."""
    output = Path(output)
    if output.suffix not in FORMATS:
        raise UserError(f"{output}: the output's suffix must be one of {', '.join(FORMATS)}")
    backend = load_backend(source, threads)
    names, sequences = read_data(data, layout, backend.features)
    _check_fit(backend, sequences, data)
    logits, _ = run_inference(backend, sequences, batch_size, warmup=0, progress=progress)
    probabilities = softmax(logits)
    classes = list(backend.classes or [str(k) for k in range(probabilities.shape[1])])
    if len(classes) != probabilities.shape[1]:
        raise UserError(f"{source}: {probabilities.shape[1]} outputs but {len(classes)} class names")
    predicted = [classes[k] for k in probabilities.argmax(axis=1)]
    _write(output, names, predicted, probabilities, classes)
    counts = {c: predicted.count(c) for c in classes}
    return {"model": str(source), "data": str(data), "sequences": len(names), "output": str(output),
            "backend": backend.name, "predicted": counts}


def _check_fit(backend, sequences: list[np.ndarray], data) -> None:
    """The data's channels and lengths against what the model takes, both sides in one line."""
    channels = sorted({int(s.shape[1]) for s in sequences})
    if channels != [backend.features]:
        raise UserError(f"{data}: sequences of {', '.join(map(str, channels))} channel(s); the model takes "
                        f"{backend.features}")
    lengths = {len(s) for s in sequences}
    if backend.length is not None and lengths != {backend.length}:
        raise UserError(f"{data}: sequences of {min(lengths)}-{max(lengths)} steps; the model takes exactly "
                        f"{backend.length}")
    if backend.max_length is not None and max(lengths) > backend.max_length:
        raise UserError(f"{data}: a sequence of {max(lengths)} steps; the exported graph takes at most "
                        f"{backend.max_length}")
    readout = getattr(backend, "readout_steps", 1)
    if min(lengths) < readout:
        raise UserError(f"{data}: a sequence of {min(lengths)} step(s); the model reads the last {readout} of each")


def _write(output: Path, names, predicted, probabilities: np.ndarray, classes) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        if output.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, sequence=np.array(names), predicted=np.array(predicted),
                         probabilities=probabilities, classes=np.array(classes))
        elif output.suffix == ".jsonl":
            with open(tmp, "w") as f:
                for name, label, row in zip(names, predicted, probabilities):
                    f.write(json.dumps({"sequence": name, "predicted": label,
                                        "probabilities": dict(zip(classes, row.tolist()))}) + "\n")
        else:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["sequence", "predicted", *(f"p_{c}" for c in classes)])
                for name, label, row in zip(names, predicted, probabilities):
                    writer.writerow([name, label, *(f"{p:.9g}" for p in row)])
