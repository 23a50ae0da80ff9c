"""Inference backends (PyTorch, ONNX Runtime, OpenVINO), timed runs, and inference over a folder of ``.bin`` inputs.

A backend is a callable: a list of raw float32 sequences [L, F] (natural
order) -> logits [N, K] as NumPy. ``run_inference`` times it call by call and
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

from .. import engine
from ..data.datasets import pad_sequences
from ..errors import ParameterError, UserError
from ..files import write_json
from ..integrity import sidecar, verify_sidecar
from ..trained import TrainedModel, load_model, parse_source
from .bins import OUTPUT_DTYPES, bin_paths, read_bins, write_output


def session(path, threads: int = 1):
    """An ONNX Runtime CPU session with an explicit thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def open_graph(path, threads: int = 1, require_sidecar: bool = False):
    """A session of an ``.onnx`` file after its checks: it exists, it matches its ``.sha256`` (when there
    is one; ``require_sidecar``: there must be one) and ONNX Runtime can load it. Returns (session, verified)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    verified = verify_sidecar(path)
    if require_sidecar and not verified:
        raise UserError(f"{path}: {sidecar(path).name} is missing; a graph drnn exported is verified against it")
    try:
        return session(path, threads), verified
    except Exception as e:  # ONNX Runtime raises its own exception types for unreadable models
        raise UserError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None


class OnnxBackend:
    """An exported ``.onnx`` model on ONNX Runtime's CPU provider.

    A graph of one length takes x [N, T, F]; a variable-length graph takes x [N, T_max, F] zero-padded
    at the end and lengths [N] (``export.py``).
    """

    name = "onnxruntime"

    def __init__(self, path, threads: int = 1):
        path = Path(path)
        self.session, verified = open_graph(path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if not verified and meta.get("producer") == "dilated-rnn":
            raise UserError(f"{path}: {sidecar(path).name} is missing; a graph drnn exported is verified against it")
        inputs = self.session.get_inputs()
        shape = inputs[0].shape
        if len(shape) != 3 or not all(isinstance(v, int) for v in shape[1:]) or len(inputs) > 2:
            raise UserError(f"{path}: model input {inputs[0].name} has shape {shape}, expected [N, T, F]")
        self.input_names = [i.name for i in inputs]
        T, self.features = shape[1:]
        self.variable = len(inputs) == 2  # x and lengths
        self.length, self.max_length = (None, T) if self.variable else (T, T)
        self.precision = meta.get("precision", "unknown")
        self.classes, self.readout_steps = _described(meta.get("classes"), meta.get("model_config"))

    def __call__(self, sequences: list[np.ndarray]) -> np.ndarray:
        x, lengths = pad_sequences(sequences, self.max_length)
        feed = {self.input_names[0]: x}
        if self.variable:
            feed[self.input_names[1]] = lengths
        return self.session.run(None, feed)[0]


class OpenvinoBackend:
    """An exported OpenVINO IR (``.xml`` + ``.bin``, ``export.export_openvino``) on OpenVINO's CPU plugin.

    Inputs as ``OnnxBackend``'s. Inference runs in float32 (``INFERENCE_PRECISION_HINT``), whatever
    the CPU could do in lower precision: an fp16 IR stores its weights in float16 only.
    """

    name = "openvino"

    def __init__(self, path, threads: int = 1):
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such model file")
        if not verify_sidecar(path):
            raise UserError(f"{path}: {sidecar(path).name} is missing; an IR drnn exported is verified against it")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                                          "INFERENCE_PRECISION_HINT": "f32",
                                                          "PERFORMANCE_HINT": "LATENCY"})
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for unreadable models
            raise UserError(f"{path}: not a loadable OpenVINO model ({str(e).splitlines()[0][:200]})") from None
        self.request = compiled.create_infer_request()
        inputs = model.inputs
        shape = inputs[0].get_partial_shape()
        if len(shape) != 3 or not all(d.is_static for d in shape[1:]) or len(inputs) > 2:
            raise UserError(f"{path}: model input {inputs[0].get_any_name()} has shape {shape}, expected [N, T, F]")
        T, self.features = (d.get_length() for d in shape[1:])
        self.variable = len(inputs) == 2
        self.length, self.max_length = (None, T) if self.variable else (T, T)
        info = lambda name: (model.get_rt_info(["dilated_rnn", name]).astype(str)  # noqa: E731
                             if model.has_rt_info(["dilated_rnn", name]) else None)
        self.precision = info("precision") or "unknown"
        self.classes, self.readout_steps = _described(info("classes"), info("model_config"))

    def __call__(self, sequences: list[np.ndarray]) -> np.ndarray:
        x, lengths = pad_sequences(sequences, self.max_length)
        feed = [x, lengths] if self.variable else [x]
        return self.request.infer(feed)[0].copy()


def _described(classes: str | None, model_config: str | None) -> tuple[list[str] | None, int]:
    """An exported graph's class names and readout steps (d0), from the metadata ``export`` writes."""
    import json

    names = json.loads(classes) if classes else None
    dilations = json.loads(model_config).get("dilations") if model_config else None
    return names, int(dilations[0]) if dilations else 1


def import_openvino():
    """The ``openvino`` package, or a one-line error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install 'dilated-rnn[openvino]'") from None
    return openvino


class TorchBackend:
    """A ``TrainedModel`` run by PyTorch (the pruned stack, on the engine's compiled kernels on the CPU) on
    ``threads``. It runs a frozen copy of the model: later changes to it are not seen."""

    name = "pytorch"
    precision = "fp32"

    def __init__(self, trained: TrainedModel, threads: int = 1):
        torch.set_num_threads(threads)
        trained = trained.to("cpu")  # its own copy, whose weights the engine packs once
        model = trained.model.eval()
        members = getattr(model, "members", [model])  # an ensemble's, or the one classifier
        for member in members:
            engine.freeze(member.rnn)
        self.module = trained.module().eval()
        self.features = trained.features
        self.length = trained.fixed_length  # sequences of other lengths are refused
        self.max_length = None
        # Sequences of one length skip PyTorch's modules, whose per-call cost is a third of a batch-1 call:
        # the transform, the stack's compiled kernel (engine.stack_arrays), then the head's product.
        self.direct = (len(members) == 1 and model.config.readout in ("last", "layers") and engine.fused()
                       and model.head.weight.dtype == torch.float32)
        self.transform = trained.transform
        self.classes, self.readout_steps = list(trained.classes), model.config.dilations[0]
        self.head = (model.head.weight.detach().numpy().T.copy(), model.head.bias.detach().numpy().copy()) \
            if self.direct else None

    def __call__(self, sequences: list[np.ndarray]) -> np.ndarray:
        x, lengths = pad_sequences(sequences)
        same = (lengths == lengths[0]).all()  # one length: no grouping needed
        if same and self.direct:
            return self._direct(x)
        with torch.inference_mode():
            x = torch.from_numpy(x)
            return (self.module(x) if same else self.module(x, torch.from_numpy(lengths))).numpy()

    def _direct(self, x: np.ndarray) -> np.ndarray:
        """The logits of the raw-input module on sequences of one length, x [B, T, F] float32."""
        clf, t = self.module.model, self.transform
        if not t.identity:
            with torch.inference_mode():
                x = t(torch.from_numpy(x)).contiguous().numpy()
        T = x.shape[1]
        h = engine.stack_arrays(clf.rnn, np.ascontiguousarray(x, np.float32), T, tuple(clf._steps(T)), clf.every_layer)
        weight, bias = self.head
        return h.reshape(len(h), -1) @ weight + bias


def load_backend(source, threads: int = 1, kinds=None):
    """ONNX Runtime for ``.onnx`` files, OpenVINO for ``.xml`` IR, PyTorch for checkpoints and ``pretrained:NAME``.

    ``kinds``: the (ONNX, PyTorch) backend classes; default (``OnnxBackend``, ``TorchBackend``); given, an
    IR is refused (streaming has no IR form)."""
    onnx_backend, torch_backend = kinds or (OnnxBackend, TorchBackend)
    src = parse_source(source)
    if src.kind == "openvino":
        if kinds is not None:
            raise UserError(f"{src.location}: an OpenVINO IR; this command runs a checkpoint, pretrained:NAME or .onnx")
        return OpenvinoBackend(src.location, threads)
    if src.kind == "onnx":
        return onnx_backend(src.location, threads)
    return torch_backend(load_model(src), threads)


def run_inference(backend, inputs, batch_size: int = 256, warmup: int = 3, progress: bool = False):
    """Logits [N, K] of ``inputs`` (sequences [L, F]) in batches, with each call's seconds (``warmup``
    untimed calls first)."""
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


def percentiles(values) -> dict:
    """The mean, median (p50) and 99th percentile (p99, by rank) of ``values``: every latency figure's summary."""
    ordered = sorted(values)
    return {"mean": statistics.fmean(ordered), "p50": ordered[len(ordered) // 2],
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def latency_stats(latencies: list[float], num_images: int, batch_size: int) -> dict:
    """Total seconds, throughput, and the mean, p50 and p99 of the per-call latencies in ms."""
    summary = percentiles(1e3 * t for t in latencies)
    return {
        "images": num_images,
        "batch_size": batch_size,
        "seconds": sum(latencies),
        "images_per_s": num_images / sum(latencies),
        **{f"latency_ms_{k}": v for k, v in summary.items()},
    }


def infer_folder(source, input_dir, output_dir, batch_size: int = 256, threads: int = 1,
                 output_dtype: str = "fp32", progress: bool = False) -> dict:
    """Run a model over every ``*.bin`` in ``input_dir``; write ``<name>_output_0.bin`` files.

    Returns the timings, also written to ``output_dir/infer.json``.
    """
    if output_dtype not in OUTPUT_DTYPES:
        raise ParameterError("output_dtype", f"must be fp32 or fp16, got {output_dtype!r}")
    bin_paths(input_dir)  # a missing or empty folder is reported before the model is loaded
    backend = load_backend(source, threads)
    stems, inputs = read_bins(input_dir, backend.features, backend.length, backend.max_length)
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
        "num_classes": int(logits.shape[1]),
        **latency_stats(latencies, len(stems), batch_size),
    }
    write_json(output_dir / "infer.json", stats)
    return stats
