"""Inference over a folder of ``.bin`` inputs with ONNX Runtime or PyTorch, timed.

``--batch-size 1`` measures per-image latency like the reference's batch-1
tool; larger batches measure throughput. Every input is read and validated
before anything is computed or written.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .bins import read_bins, write_output
from .errors import UserError
from .files import write_json


class OnnxBackend:
    """An exported ``.onnx`` model on ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, threads: int):
        from .export import session

        try:
            self.session = session(path, threads)
        except Exception as e:  # ONNX Runtime raises its own exception types for unreadable models
            raise UserError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 3 or shape[1:] != [784, 1]:
            raise UserError(f"{path}: model input {inp.name} has shape {shape}, expected [N, 784, 1]")
        self.precision = self.session.get_modelmeta().custom_metadata_map.get("precision", "unknown")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x.reshape(len(x), 784, 1)})[0]


class TorchBackend:
    """A ``drnn train`` checkpoint or ``pretrained:NAME`` run by PyTorch (the pruned classifier)."""

    precision = "fp32"

    def __init__(self, source, threads: int):
        from .export import DeployModel
        from .pretrained import load_model

        torch.set_num_threads(threads)
        self.model = DeployModel(*load_model(source)).eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).reshape(len(x), 784, 1)).numpy()


def load_backend(model_path, threads: int = 1):
    """ONNX Runtime for ``.onnx`` files, PyTorch for checkpoints and ``pretrained:NAME``."""
    from .pretrained import PREFIX

    if str(model_path).startswith(PREFIX):
        return TorchBackend(model_path, threads)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"{model_path}: no such model file")
    return OnnxBackend(model_path, threads) if model_path.suffix == ".onnx" else TorchBackend(model_path, threads)


def run_inference(backend, inputs: np.ndarray, batch_size: int = 256, warmup: int = 3, progress: bool = False):
    """Logits [N, K] for float32 inputs [N, 784], with per-call latencies (warm-up calls excluded)."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    for _ in range(warmup):
        backend(inputs[:batch_size])
    from tqdm import tqdm

    outputs, latencies = [], []
    for start in tqdm(range(0, len(inputs), batch_size), disable=not progress, unit="batch"):
        t = time.perf_counter()
        outputs.append(backend(inputs[start : start + batch_size]))
        latencies.append(time.perf_counter() - t)
    return np.concatenate(outputs), latencies


def latency_stats(latencies: list[float], num_images: int, batch_size: int) -> dict:
    ms = sorted(1e3 * t for t in latencies)
    return {
        "images": num_images,
        "batch_size": batch_size,
        "seconds": sum(latencies),
        "images_per_s": num_images / sum(latencies),
        "latency_ms_mean": statistics.fmean(ms),
        "latency_ms_p50": ms[len(ms) // 2],
        "latency_ms_p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
    }


def infer_folder(model_path, input_dir, output_dir, batch_size: int = 256, threads: int = 1,
                 output_dtype: str = "fp32", progress: bool = False) -> dict:
    """Run a model over every ``*.bin`` in ``input_dir``; write ``<name>_output_0.bin`` files.

    Returns the timings, also written to ``output_dir/infer.json``.
    """
    dtypes = {"fp32": np.float32, "fp16": np.float16}
    if output_dtype not in dtypes:
        raise UserError(f"--output-dtype: expected fp32 or fp16, got {output_dtype!r}")
    stems, inputs = read_bins(input_dir)
    backend = load_backend(model_path, threads)
    logits, latencies = run_inference(backend, inputs, batch_size, progress=progress)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stem, row in zip(stems, logits):
        write_output(output_dir, stem, row, dtypes[output_dtype])
    stats = {
        "model": str(model_path),
        "backend": "onnxruntime" if isinstance(backend, OnnxBackend) else "pytorch",
        "precision": backend.precision,
        "output_dtype": output_dtype,
        "threads": threads,
        **latency_stats(latencies, len(stems), batch_size),
    }
    write_json(output_dir / "infer.json", stats)
    return stats
