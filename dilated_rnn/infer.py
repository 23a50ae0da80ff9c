"""Inference backends (PyTorch, ONNX Runtime), timed runs, and inference over a folder of ``.bin`` inputs.

A backend is a callable: float32 inputs [N, T, F] (or [N, T*F]) in natural
order -> logits [N, K] as NumPy. ``run_inference`` times it call by call and
``latency_stats`` summarises the times; ``drnn infer`` and ``drnn bench`` both
use these. ``--batch-size 1`` measures per-image latency like the reference's
batch-1 tool; larger batches measure throughput. Every input is read and
validated before anything is computed or written.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bins import read_bins, write_output
from .data import permute_steps
from .errors import ParameterError, UserError
from .files import write_json
from .model import DilatedRNNClassifier
from .sources import parse_source


class DeployModel(nn.Module):
    """Natural-order inputs [N, T, F] -> logits [N, K]: the permutation, then the pruned classifier."""

    def __init__(self, model: DilatedRNNClassifier, permutation: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.register_buffer("permutation", None if permutation is None else permutation.long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(permute_steps(x, self.permutation))


def session(path, threads: int = 1):
    """An ONNX Runtime CPU session with an explicit thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """An exported ``.onnx`` model on ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def __init__(self, path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such model file")
        try:
            self.session = session(path, threads)
        except Exception as e:  # ONNX Runtime raises its own exception types for unreadable models
            raise UserError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        if len(inp.shape) != 3 or inp.shape[1:] != [784, 1]:
            raise UserError(f"{path}: model input {inp.name} has shape {inp.shape}, expected [N, 784, 1]")
        self.shape = inp.shape[1:]
        self.precision = self.session.get_modelmeta().custom_metadata_map.get("precision", "unknown")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x.reshape(len(x), *self.shape)})[0]


class TorchBackend:
    """A classifier and its permutation run by PyTorch (the pruned stack, fused on the CPU) on ``threads``."""

    name = "pytorch"
    precision = "fp32"

    def __init__(self, model: DilatedRNNClassifier, permutation=None, threads: int = 1):
        torch.set_num_threads(threads)
        self.model = DeployModel(model.cpu().eval(), permutation).eval()
        self.features = model.config.input_size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).reshape(len(x), -1, self.features)).numpy()


def load_backend(source, threads: int = 1):
    """ONNX Runtime for ``.onnx`` files, PyTorch for checkpoints and ``pretrained:NAME``."""
    from .sources import load_model

    src = parse_source(source)
    if src.kind == "onnx":
        return OnnxBackend(src.location, threads)
    return TorchBackend(*load_model(src), threads=threads)


def run_inference(backend, inputs: np.ndarray, batch_size: int = 256, warmup: int = 3, progress: bool = False):
    """Logits [N, K] of ``inputs`` in batches, with each call's seconds (``warmup`` untimed calls first)."""
    if batch_size < 1:
        raise ParameterError("batch_size", f"must be positive, got {batch_size}")
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
    """Total seconds, throughput, and the mean, p50 and p99 of the per-call latencies in ms."""
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


OUTPUT_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def infer_folder(source, input_dir, output_dir, batch_size: int = 256, threads: int = 1,
                 output_dtype: str = "fp32", progress: bool = False) -> dict:
    """Run a model over every ``*.bin`` in ``input_dir``; write ``<name>_output_0.bin`` files.

    Returns the timings, also written to ``output_dir/infer.json``.
    """
    if output_dtype not in OUTPUT_DTYPES:
        raise ParameterError("output_dtype", f"must be fp32 or fp16, got {output_dtype!r}")
    stems, inputs = read_bins(input_dir)
    backend = load_backend(source, threads)
    logits, latencies = run_inference(backend, inputs, batch_size, progress=progress)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stem, row in zip(stems, logits):
        write_output(output_dir, stem, row, OUTPUT_DTYPES[output_dtype])
    stats = {
        "model": str(source),
        "backend": backend.name,
        "precision": backend.precision,
        "output_dtype": output_dtype,
        "threads": threads,
        **latency_stats(latencies, len(stems), batch_size),
    }
    write_json(output_dir / "infer.json", stats)
    return stats
