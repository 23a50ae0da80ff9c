"""Streaming a trained model (``drnn stream``): sequences sample by sample, the per-step predictions, the
latency of each sample, and accuracy against the fraction of each sequence seen.

``Streamer`` runs a ``TrainedModel`` on raw samples (the model's exact ``stream``,
``model/streaming.py``, compiled on the CPU); ``StepGraph`` is its one step as a
module for ONNX export. Two backends with one interface, ``start(batch)`` -> state
and ``(x [B, n, F] raw float32, state) -> (logits [B, n, K], state)``, NumPy in
and out: ``TorchStream`` (a checkpoint or shipped model, on a ``Streamer``) and
``OnnxStream`` (the step graph ``drnn export --streaming`` writes, on ONNX Runtime,
one call per sample).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import engine
from ..data.transform import with_differences
from ..errors import ParameterError, UserError
from ..files import atomic_path, write_json
from ..model.ensemble import mean_probabilities
from ..model.streaming import (
    StreamState,
    check_state,
    check_streamed_readout,
    classifier_layout,
    initial_state,
    pool_step,
    step_layers,
    stream_classifier,
)
from ..trained import TrainedModel
from .infer import latency_stats

STEP_INPUTS = ("sample", "state", "position")  # the step graph's inputs, in order (export.export_step_onnx)
STEP_OUTPUTS = ("logits", "state_out", "position_out")


class Streamer:
    """A ``TrainedModel`` frozen for streaming: raw samples in, logits at every step out.

    The weights are packed once, when it is made, so each call pays only for the steps (a model changed
    afterwards is not seen: make a new one). This is what ``drnn stream`` and deployment run. On the
    engine's compiled backends, with a readout of one step (d0 = 1: the top's or every layer's), a call is one
    compiled call from the normalized samples to the logits and the new state (``engine.ClassifierStream``),
    which is what keeps one sample's latency small; otherwise it is the model's ``stream``. A model that reads
    first differences keeps the last raw sample after the rest of the state (``inner`` streams the rest).
    """

    def __init__(self, trained: TrainedModel):
        _check_streamable(trained.transform)
        clf = trained.model
        self.clf = clf.eval()
        self.transform = trained.transform
        self.raw = self.inner = None  # differences: the raw channels, kept after the inner streamer's state
        self.compiled = self.scale = None  # the whole call on the compiled backend, where it runs
        if trained.transform.differences:
            self.inner, self.raw = Streamer(_without_differences(trained)), trained.features
            return
        self.parts = None  # an ensemble's: one streamer per member, their states side by side in the buffer
        if hasattr(clf, "members"):
            self.parts = [Streamer(TrainedModel(m, trained.transform, trained.data)) for m in clf.members]
            self.sizes = [part.layout.size for part in self.parts]
            return
        check_streamed_readout(clf)
        self.layout = classifier_layout(clf)
        self.weights = engine.pack_weights(clf.rnn) if engine.fused() else None
        head = clf.head.weight
        if (self.weights is not None and clf.readout_steps == 1 and clf.config.readout in ("last", "every", "layers")
                and head.dtype == torch.float32
                and head.device.type == "cpu"):
            self.compiled = engine.ClassifierStream(clf)
            t = trained.transform  # applied in NumPy there: each PyTorch op costs a few microseconds
            self.scale = None if t.mean is None else (t.mean.float().numpy(), t.std.float().numpy())

    def initial_state(self, batch: int) -> StreamState:
        if self.inner is not None:
            state = self.inner.initial_state(batch)
            return StreamState(torch.cat([state.buffer, state.buffer.new_zeros(batch, self.raw)], 1), state.position)
        if self.parts is not None:
            states = [part.initial_state(batch) for part in self.parts]
            return StreamState(torch.cat([s.buffer for s in states], dim=1), states[0].position)
        return initial_state(self.layout, batch, self.clf.head.weight.dtype)

    def __call__(self, x: torch.Tensor, state: StreamState | None = None):
        """Raw samples [B, n, F] -> logits [B, n, K] and the new state."""
        if self.inner is not None:
            return self._differencing_step(x, state)
        if self.parts is not None:
            return self._ensemble_step(x, state)
        if self.compiled is not None and x.dtype == torch.float32 and x.is_cpu:
            logits, buffer, position = self._compiled_call(x.detach().numpy(), check_state(state, self.layout, x))
            return logits, StreamState(buffer, position)
        with torch.inference_mode():
            x = self.transform(x).to(self.clf.head.weight.dtype)
            return stream_classifier(self.clf, x, state, self.weights)

    def _ensemble_step(self, x: torch.Tensor, state: StreamState | None):
        """Each member on its part of the buffer (``_average_members``)."""
        state = state if state is not None else self.initial_state(x.shape[0])
        after = [part(x, StreamState(own, state.position))
                 for part, own in zip(self.parts, state.buffer.split(self.sizes, dim=1))]
        logits, buffer = _average_members([(logits, s.buffer) for logits, s in after])
        return logits, StreamState(buffer, after[0][1].position)

    def _compiled_call(self, x: np.ndarray, state: StreamState):
        """Raw samples [B, n, F] float32 and a checked state through the compiled call: (logits, buffer, position)."""
        buffer, position = state
        if buffer.dtype != torch.float32 or not buffer.is_contiguous():  # each call here costs a sample's share
            buffer = buffer.to(torch.float32).contiguous()
        if position.dtype != torch.int64 or not position.is_contiguous():
            position = position.to(torch.int64).contiguous()
        x = np.ascontiguousarray(x) if self.scale is None else (x - self.scale[0]) / self.scale[1]
        return self.compiled(torch.from_numpy(x), buffer, position)

    def _differencing_step(self, x: torch.Tensor, state: StreamState | None):
        """The samples and their differences from the previous raw sample (kept at the end of the buffer; at a
        row's position 0 there is none, and the difference is 0) through the inner streamer."""
        if x.dim() != 3 or x.shape[2] != self.raw:
            raise ValueError(f"expected a chunk [B, n, {self.raw}] of raw samples, got shape {list(x.shape)}")
        state, F = state if state is not None else self.initial_state(x.shape[0]), self.raw
        if _plain_cpu(x, state.buffer):  # in NumPy: a PyTorch op costs a few microseconds, a sample's share
            values, kept = x.numpy(), state.buffer.numpy()
            both = np.empty(values.shape[:2] + (2 * F,), np.float32)
            both[..., :F] = values
            if values.shape[1] > 1:
                np.subtract(values[:, 1:], values[:, :-1], out=both[:, 1:, F:])
            np.subtract(values[:, 0], kept[:, -F:], out=both[:, 0, F:])
            started = state.position.numpy() > 0
            if not started.all():
                both[~started, 0, F:] = 0
            inner, buffer = self.inner, torch.from_numpy(np.ascontiguousarray(kept[:, :-F]))
            if inner.compiled is not None:  # its compiled call directly: a layer of Python less per sample
                inner_state = check_state(StreamState(buffer, state.position), inner.layout, both)
                logits, buffer, position = inner._compiled_call(both, inner_state)
            else:
                logits, (buffer, position) = inner(torch.from_numpy(both), StreamState(buffer, state.position))
            after = np.empty_like(kept)
            after[:, :-F], after[:, -F:] = buffer.numpy(), values[:, -1]
            return logits, StreamState(torch.from_numpy(after), position)
        buffer, previous = state.buffer[:, :-F], state.buffer[:, -F:]
        previous = torch.where((state.position == 0).unsqueeze(1), x[:, 0].to(previous.dtype), previous)
        logits, inner = self.inner(with_differences(x, previous), StreamState(buffer, state.position))
        return logits, StreamState(torch.cat([inner.buffer, x[:, -1].to(inner.buffer.dtype)], 1), inner.position)


def _average_members(outputs):
    """An ensemble's step, in the stream and in the step graph, from each member's (logits, its new columns of the
    state): the members' probabilities averaged (``mean_probabilities``) and their columns joined again."""
    return mean_probabilities([logits for logits, _ in outputs]), torch.cat([own for _, own in outputs], dim=1)


def _plain_cpu(x: torch.Tensor, buffer: torch.Tensor) -> bool:
    """Float32 CPU tensors outside autograd: what NumPy can read in place."""
    return (x.dtype == buffer.dtype == torch.float32 and x.is_cpu and buffer.is_cpu
            and not (x.requires_grad or buffer.requires_grad))


def _without_differences(trained: TrainedModel) -> TrainedModel:
    """The same model taking [x, differences of x] as its raw input (the normalization of those 2F channels)."""
    return TrainedModel(trained.model, dataclasses.replace(trained.transform, differences=False), trained.data)


def _check_streamable(transform) -> None:
    if not transform.streamable:
        raise ValueError("a permuted or per-sequence-normalized model needs the whole sequence before its first "
                         "step; it cannot consume samples as they arrive")


class StepGraph(nn.Module):
    """One streaming step of a classifier, for ONNX export: (sample [N, F] raw, buffer [N, M], position [N])
    -> (logits [N, K], new buffer, new position). The input's channel normalization is inside. An
    ensemble's is one graph: each member's step on its part of the buffer, the probabilities averaged."""

    def __init__(self, trained: TrainedModel):
        super().__init__()
        _check_streamable(trained.transform)
        self.inner = None  # differences: the inner step takes [x, differences]; the raw sample is kept after its state
        if trained.transform.differences:
            self.inner, self.raw = StepGraph(_without_differences(trained)), trained.features
            self.state_size = self.inner.state_size + self.raw
            return
        if hasattr(trained.model, "members"):
            self.parts = nn.ModuleList(StepGraph(TrainedModel(m, trained.transform, trained.data))
                                       for m in trained.model.members)
            self.sizes = [part.state_size for part in self.parts]
            self.state_size = sum(self.sizes)
            return
        check_streamed_readout(trained.model)
        clf, transform = trained.model, trained.transform
        self.parts = None
        self.clf = clf
        self.layout = classifier_layout(clf)
        self.state_size = self.layout.size
        self.register_buffer("mean", transform.mean)
        self.register_buffer("std", transform.std)

    def forward(self, sample: torch.Tensor, buffer: torch.Tensor, position: torch.Tensor):
        if self.inner is not None:
            buffer, previous = buffer[:, : -self.raw], buffer[:, -self.raw :]
            previous = torch.where((position == 0).unsqueeze(1), sample, previous)
            logits, state, position = self.inner(torch.cat([sample, sample - previous], dim=1), buffer, position)
            return logits, torch.cat([state, sample], dim=1), position
        if self.parts is not None:
            after = [part(sample, own, position) for part, own in zip(self.parts, buffer.split(self.sizes, dim=1))]
            logits, buffer = _average_members([(logits, own) for logits, own, _ in after])
            return logits, buffer, position + 1
        if self.mean is not None:
            sample = (sample - self.mean) / self.std
        rnn, layout, d0 = self.clf.rnn, self.layout, self.clf.readout_steps
        top, registers = step_layers(rnn.layers, rnn.cell, layout, sample, buffer, self.clf.every_layer)
        if layout.pool:  # a running mean (its sum kept) or maximum; position 0 starts afresh
            pooled, running = pool_step(self.clf.config.readout, buffer[:, -layout.pool :], top.unsqueeze(1), position)
            return self.clf.head(pooled[:, 0]), torch.cat([registers, running], dim=1), position + 1
        if d0 > 1:
            window = torch.cat([layout.recent(buffer), top.unsqueeze(1)], dim=1)  # [N, d0, H]
            registers = torch.cat([registers, window[:, 1:].reshape(sample.shape[0], -1)], dim=1)
            logits = self.clf.head(window.reshape(sample.shape[0], -1))
            logits = torch.where((position >= d0 - 1).unsqueeze(1), logits, torch.full_like(logits, float("nan")))
        else:
            logits = self.clf.head(top)
        return logits, registers, position + 1


class TorchStream:
    name = "pytorch"

    def __init__(self, trained: TrainedModel, threads: int | None = 1):
        if threads is not None:  # None: leave the process's thread count alone
            torch.set_num_threads(threads)
        try:
            self.streamer = Streamer(trained.to("cpu"))
        except ValueError as e:
            raise UserError(f"this model cannot stream: {e}") from None
        self.features = trained.features
        self.classes = (trained.data or {}).get("classes")

    def start(self, batch: int):
        return self.streamer.initial_state(batch)

    def __call__(self, x: np.ndarray, state):
        logits, state = self.streamer(torch.from_numpy(x), state)
        return logits.numpy(), state


class OnnxStream:
    """The one-step graph on ONNX Runtime: each call runs it once per sample of the chunk."""

    name = "onnxruntime"

    def __init__(self, path, threads: int = 1):
        from .infer import open_graph

        path = Path(path)
        self.session, _ = open_graph(path, threads, require_sidecar=True)
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if tuple(inputs) != STEP_INPUTS:
            raise UserError(f"{path}: not a streaming step graph (inputs {', '.join(inputs)}; expected "
                            f"{', '.join(STEP_INPUTS)}); export one with drnn export --streaming")
        self.features, self.state_size = inputs["sample"][1], inputs["state"][1]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes = json.loads(meta["classes"]) if "classes" in meta else None

    def start(self, batch: int):
        return np.zeros((batch, self.state_size), np.float32), np.zeros(batch, np.int64)

    def __call__(self, x: np.ndarray, state):
        buffer, position = state
        logits = []
        for k in range(x.shape[1]):
            out, buffer, position = self.session.run(
                None, {"sample": np.ascontiguousarray(x[:, k]), "state": buffer, "position": position})
            logits.append(out)
        return np.stack(logits, axis=1), (buffer, position)


def load_stream_backend(source, threads: int = 1):
    """ONNX Runtime for a step graph (``.onnx``), PyTorch for a checkpoint or ``pretrained:NAME``."""
    from .infer import load_backend

    return load_backend(source, threads, (OnnxStream, TorchStream))


def stream_sequences(backend, sequences: list[np.ndarray], batch_size: int = 1, chunk: int = 1):
    """Every sequence streamed ``chunk`` samples per call, ``batch_size`` sequences side by side.

    Returns the logits of each sequence at each of its steps (a list of [L, K]) and the seconds of each
    call divided by the steps it took (at batch 1: the latency of one sample). A batch's shorter sequences are padded at
    the end; steps after a sequence ends never change its earlier outputs and are dropped.
    """
    if batch_size < 1 or chunk < 1:
        raise ParameterError("batch_size" if batch_size < 1 else "chunk", "must be positive")
    results, per_sample = [], []
    for first in range(0, len(sequences), batch_size):
        group = sequences[first : first + batch_size]
        T = max(len(s) for s in group)
        x = np.zeros((len(group), T, group[0].shape[1]), np.float32)
        for i, s in enumerate(group):
            x[i, : len(s)] = s
        state, parts = backend.start(len(group)), []
        for k in range(0, T, chunk):
            start = time.perf_counter()
            logits, state = backend(x[:, k : k + chunk], state)
            per_sample.append((time.perf_counter() - start) / min(chunk, T - k))
            parts.append(logits)
        logits = np.concatenate(parts, axis=1)
        results.extend(logits[i, : len(s)] for i, s in enumerate(group))
    return results, per_sample


def anytime_accuracy(logits: list[np.ndarray], labels: np.ndarray, points: int = 20) -> dict:
    """Accuracy when each sequence has been seen up to a fraction f of its length, f = 1/points .. 1.

    At fraction f a sequence of length L is read at step ceil(f L) - 1; a step with no prediction yet
    (NaN logits: the readout needs d0 steps) counts as wrong.
    """
    fractions = [(i + 1) / points for i in range(points)]
    accuracy = []
    for f in fractions:
        correct = 0
        for seq, label in zip(logits, labels):
            row = seq[max(0, int(np.ceil(f * len(seq))) - 1)]
            correct += bool(np.isfinite(row).all() and row.argmax() == label)
        accuracy.append(correct / len(logits))
    return {"fractions": fractions, "accuracy": accuracy}


def stream_folder(source, input_dir, output, batch_size: int = 1, chunk: int = 1, threads: int = 1,
                  labels_path=None) -> dict:
    """``drnn stream``: every ``*.bin`` of ``input_dir`` sample by sample; per-step predictions to ``output``.

    ``output`` (.npz): ``names`` [S], ``lengths`` [S], ``predictions`` [S, T_max] (class index at each
    step; -1 after a sequence ends or before the first prediction) and ``confidence`` [S, T_max] (the
    softmax probability of that class). With ``labels_path``, the anytime accuracy is added. Returns
    the summary, also written beside ``output`` as JSON.
    """
    from .bins import bin_paths, load_labels, read_bins

    bin_paths(input_dir)  # a missing or empty folder is reported before the model is loaded
    labels = None if labels_path is None else load_labels(labels_path)
    backend = load_stream_backend(source, threads)
    names, sequences = read_bins(input_dir, backend.features)
    if labels is not None and len(labels) != len(sequences):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(sequences)} input files")
    logits, per_sample = stream_sequences(backend, sequences, batch_size, chunk)
    predictions, confidence = _per_step(logits)
    output = Path(output)
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(names), lengths=np.array([len(s) for s in sequences]),
                     predictions=predictions, confidence=confidence)
    stats = latency_stats(per_sample, len(sequences), batch_size)
    summary = {"model": str(source), "backend": backend.name, "sequences": len(sequences), "samples":
               int(sum(len(s) for s in sequences)), "batch_size": batch_size, "chunk": chunk, "threads": threads,
               "sample_us_p50": 1e3 * stats["latency_ms_p50"], "sample_us_p99": 1e3 * stats["latency_ms_p99"],
               "sample_us_mean": 1e3 * stats["latency_ms_mean"]}
    if labels is not None:
        summary["anytime"] = anytime_accuracy(logits, labels)
        summary["accuracy_at_end"] = summary["anytime"]["accuracy"][-1]
    write_json(output.with_suffix(".json"), summary)
    return summary


def _per_step(logits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    T = max(len(s) for s in logits)
    predictions = np.full((len(logits), T), -1, np.int64)
    confidence = np.zeros((len(logits), T), np.float32)
    for i, seq in enumerate(logits):
        valid = np.isfinite(seq).all(axis=1)
        shifted = np.exp(seq[valid] - seq[valid].max(axis=1, keepdims=True))
        predictions[i, : len(seq)][valid] = seq[valid].argmax(axis=1)
        confidence[i, : len(seq)][valid] = shifted.max(axis=1) / shifted.sum(axis=1)
    return predictions, confidence
