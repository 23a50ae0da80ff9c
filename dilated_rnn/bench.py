"""Benchmarks: training-step time (fast path vs. full computation) and inference speed.

Training: synthetic data (speed does not depend on pixel values), warm-up
excluded, median of several timed steps, every variant in the same process and
interleaved so that drifting machine load affects them alike. Variants:

* ``fused``  the pruned classifier with the fused recurrences (what ``drnn train`` runs on a CPU);
* ``pruned`` the pruned classifier on PyTorch's RNN modules (``model.rnn.fused = False``);
* ``full``   every step of every layer, one ``nn.LSTM``/``nn.GRU``/``nn.RNN`` call per layer;
* ``full_fused`` every step of every layer on the fused recurrences (``DilatedRNN.forward`` on a CPU:
  what sequence labelling trains);
* ``fused_numba`` ``fused`` on Numba's recurrences instead of the native ones (where those run).

Inference: batch-1 latency (p50/p99) on one thread and batched throughput on
``threads`` threads, with PyTorch (the fused path) and ONNX Runtime (the fp32
export), for real trained weights. Streaming: the latency of one sample at batch 1
on one thread, PyTorch's compiled update and the ONNX step graph, beside
recomputing the pruned model on the prefix at every step. Functions return data;
printing is the CLI's job.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import kernels, native
from .errors import ParameterError
from .model import DilatedRNNClassifier, ModelConfig
from .optim import TFRMSprop
from .train import keep_freed_memory

TRAIN_VARIANTS = ("fused", "pruned", "full", "full_fused", "fused_numba")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: DilatedRNNClassifier, variant: str, x, y):
    optimizer = TFRMSprop(model.parameters(), lr=1e-3)
    model.rnn.fused = variant in ("fused", "full_fused", "fused_numba")
    forward = model.forward_full if variant.startswith("full") else model.forward
    kernels_used = native.turned_off if variant == "fused_numba" else contextlib.nullcontext

    def step():
        optimizer.zero_grad(set_to_none=True)
        with kernels_used():
            nn.functional.cross_entropy(forward(x), y).backward()
        optimizer.step()

    return step


def _synthetic_batch(config: ModelConfig, batch_size: int, seq_len: int, dev: torch.device):
    """A fixed random batch (inputs, labels) for timing training steps: speed does not depend on the values."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, seq_len, config.input_size, generator=gen).to(dev)
    y = torch.randint(0, config.num_classes, (batch_size,), generator=gen).to(dev)
    return x, y


def bench_train_step(cell: str, batch_size: int = 128, steps: int = 5, warmup: int = 2,
                     device: str = "cpu", config: ModelConfig | None = None, seq_len: int = 784) -> dict:
    """Median seconds per training step (forward + backward + RMSProp) of each variant, with the allocator
    policy ``drnn train`` sets (``train.keep_freed_memory``)."""
    keep_freed_memory()
    dev = torch.device(device)
    config = config or ModelConfig(cell=cell)
    x, y = _synthetic_batch(config, batch_size, seq_len, dev)
    # The fused path exists on the CPU only; elsewhere "fused" would just repeat "pruned".
    variants = TRAIN_VARIANTS if kernels.supports(x, cell) else ("pruned", "full")
    if not native.available():
        variants = tuple(v for v in variants if v != "fused_numba")  # "fused" is Numba's already
    torch.manual_seed(0)
    fns = {v: _step_fn(DilatedRNNClassifier.from_config(config).to(dev), v, x, y) for v in variants}
    times = {v: [] for v in fns}
    for i in range(warmup + steps):
        for v, fn in fns.items():
            _sync(dev)
            start = time.perf_counter()
            fn()
            _sync(dev)
            if i >= warmup:
                times[v].append(time.perf_counter() - start)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    fast = "fused" if "fused" in med else "pruned"
    result = {"cell": cell, "batch_size": batch_size, "seq_len": seq_len, "fast_path": fast,
              "ratio": med[fast] / med["full"]}
    for v in fns:
        result[f"{v}_s"] = med[v]
        result[f"{v}_ratio"] = med[v] / med["full"]
        result[f"{v}_times_s"] = times[v]
        result[f"{v}_peak_bytes"] = _peak_memory(fns[v], dev)
    return result


# How ``bench_profile`` groups a step's operations (by their profiler names).
_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
_MOVES = {"aten::index_select", "aten::index", "aten::gather", "aten::index_add_", "aten::index_put_",
          "aten::scatter_add_", "aten::copy_", "aten::cat", "aten::constant_pad_nd", "aten::clone", "aten::fill_",
          "aten::zero_", "aten::zeros", "aten::empty", "aten::empty_strided", "aten::new_zeros", "aten::t",
          "aten::transpose", "aten::reshape", "aten::view", "aten::as_strided", "aten::slice", "aten::select",
          "aten::unsqueeze", "aten::expand", "aten::contiguous", "aten::_reshape_alias", "aten::resize_"}
PROFILE_PARTS = ("recurrence forward", "recurrence backward", "matrix products", "gathers, copies, views",
                 "optimizer", "other operations", "between operations")


def bench_profile(cell: str, batch_size: int = 128, steps: int = 5, warmup: int = 2,
                  config: ModelConfig | None = None, seq_len: int = 784) -> dict:
    """Where a fused training step's time goes (the ``fused`` variant of ``bench_train_step``), and how many
    bytes its recurrences move against what this machine's memory can move.

    Milliseconds per step in each of ``PROFILE_PARTS``, from PyTorch's profiler (each operation's own time,
    children excluded): the recurrences' kernels (native or Numba), matrix products (input projections,
    weight and input gradients), gathers between layers and other copies, views and fills, the
    optimizer's step (with its operations), everything else PyTorch runs (loss, head, activations'
    gradients, sums), and the rest of the step's wall time, spent between operations (Python, autograd's
    engine). ``*_bytes``: what the recurrences' arrays hold, laid out as the native kernels lay them
    (``native.recurrence_traffic``), so ``recurrence_gb_per_s`` is a lower bound of the memory traffic they
    achieve (None where no fused recurrence ran); ``copy_gb_per_s``: a large copy on the same threads
    (bytes read plus written), the machine's practical bandwidth.
    """
    from torch.profiler import ProfilerActivity, profile

    keep_freed_memory()
    config = config or ModelConfig(cell=cell)
    x, y = _synthetic_batch(config, batch_size, seq_len, torch.device("cpu"))
    torch.manual_seed(0)
    model = DilatedRNNClassifier.from_config(config)
    step = _step_fn(model, "fused", x, y)
    for _ in range(warmup):
        step()
    wall = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        wall.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        profiled = (time.perf_counter() - start) / steps
    parts = dict.fromkeys(PROFILE_PARTS, 0.0)
    for event in prof.events():
        parts[_profile_part(event)] += event.self_cpu_time_total * 1e-3 / steps  # microseconds -> ms per step
    parts["between operations"] = max(0.0, profiled * 1e3 - sum(parts.values()))
    forward_bytes = backward_bytes = 0
    for layer, lp in zip(model.rnn.layers, model.rnn._plan(seq_len, tuple(model._steps(seq_len))).layers):
        fb, bb = native.recurrence_traffic(batch_size * len(lp.residues), lp.length, layer.input_size,
                                           layer.hidden_size, kernels.CELL_CODES[config.cell],
                                           not kernels.projects_inside(layer.input_size))
        forward_bytes, backward_bytes = forward_bytes + fb, backward_bytes + bb
    recurrence_s = (parts["recurrence forward"] + parts["recurrence backward"]) * 1e-3
    return {"cell": config.cell, "batch_size": batch_size, "seq_len": seq_len, "native_kernels": native.available(),
            "step_ms": statistics.median(wall) * 1e3, "profiled_step_ms": profiled * 1e3,
            "parts_ms": parts, "recurrence_forward_bytes": forward_bytes, "recurrence_backward_bytes": backward_bytes,
            "recurrence_gb_per_s": (forward_bytes + backward_bytes) / recurrence_s / 1e9 if recurrence_s else None,
            "copy_gb_per_s": copy_bandwidth()}


def _profile_part(event) -> str:
    parent = event
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):
            return "optimizer"
        parent = parent.cpu_parent
    if event.name == kernels.PROFILE_FORWARD:
        return "recurrence forward"
    if event.name == kernels.PROFILE_BACKWARD:
        return "recurrence backward"
    if event.name in _PRODUCTS:
        return "matrix products"
    return "gathers, copies, views" if event.name in _MOVES else "other operations"


def copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """GB/s of copying a large float32 tensor on PyTorch's threads, bytes read plus written (median)."""
    src = torch.ones(megabytes * 2**18)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / statistics.median(times) / 1e9


def _peak_memory(step, dev: torch.device) -> int | None:
    """Peak bytes allocated by one step: CUDA's allocator stats, or PyTorch's CPU profiler.

    On the CPU the fused path's NumPy work arrays are outside PyTorch's allocator;
    NumPy reports them to ``tracemalloc``, whose peak is added: the sum of the
    two peaks, an upper bound of the true one.
    """
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        step()
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - base
    from torch.profiler import ProfilerActivity, profile

    import tracemalloc

    tracemalloc.start()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        numpy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Walk the allocation events in order, tracking live bytes; the maximum is the peak.
    live = peak = 0
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak + numpy_peak


BACKENDS = ("pytorch", "pytorch-numba", "onnxruntime", "openvino")


def bench_inference(model: DilatedRNNClassifier, transform, backend: str, latency_images: int = 500,
                    batch_images: int = 10000, batch_size: int = 1000, threads: int = 2) -> dict:
    """Batch-1 latency on one thread and batched throughput on ``threads``, for one backend.

    ``backend``: ``pytorch`` (the pruned classifier on the fastest kernels here: ``native.py``'s where
    available), ``pytorch-numba`` (the same on the Numba kernels), ``onnxruntime`` (the fp32 export,
    parity-checked on the way) or ``openvino`` (the fp32 IR, likewise). Inputs are random images
    (speed does not depend on pixel values).
    """
    from .data import to_sequences
    from .export import export_onnx, export_openvino
    from .infer import OnnxBackend, OpenvinoBackend, TorchBackend, latency_stats, run_inference

    gen = np.random.default_rng(0)
    images = torch.from_numpy(gen.integers(0, 256, (max(latency_images, batch_images), 784), dtype=np.uint8))
    x = to_sequences(images).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        if backend in ("pytorch", "pytorch-numba"):
            make = lambda n_threads: TorchBackend(model, transform, n_threads)
        elif backend == "onnxruntime":
            path = Path(tmp) / "model.onnx"
            export_onnx(model, transform, path, images[:64])
            make = lambda n_threads: OnnxBackend(path, n_threads)
        elif backend == "openvino":
            path = Path(tmp) / "model.xml"
            export_openvino(model, transform, path, images[:64])
            make = lambda n_threads: OpenvinoBackend(path, n_threads)
        else:
            raise ParameterError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
        saved_threads = torch.get_num_threads()
        kernels_used = native.turned_off() if backend == "pytorch-numba" else contextlib.nullcontext()
        try:
            with kernels_used:  # warm-up calls first: compilation, allocator, caches
                _, one = run_inference(make(1), x[:latency_images], batch_size=1, warmup=20)
                _, many = run_inference(make(threads), x[:batch_images], batch_size=batch_size, warmup=1)
        finally:
            torch.set_num_threads(saved_threads)
    latency, batched = latency_stats(one, latency_images, 1), latency_stats(many, batch_images, batch_size)
    return {
        "cell": model.config.cell,
        "backend": backend,
        "latency_images": latency_images,
        "latency_ms_p50": latency["latency_ms_p50"],
        "latency_ms_p99": latency["latency_ms_p99"],
        "batch_images": batch_images,
        "batch_size": batch_size,
        "batch_threads": threads,
        "batched_s": batched["seconds"],
        "images_per_s": batched["images_per_s"],
    }


def bench_stream(model: DilatedRNNClassifier, transform, samples: int = 2000, prefixes: int = 20) -> dict:
    """Seconds per streamed sample at batch 1 on one thread (p50, p99, mean, in microseconds).

    ``pytorch``: ``streaming.Streamer``, one call per sample; ``onnxruntime``: the step graph (exported and
    parity-checked on the way), one call per sample; ``prefix``: the pruned model recomputed on the prefix
    x[:t+1] at every step (what anytime classification costs without a state), averaged over ``prefixes``
    prefix lengths spread over the 784 steps. Inputs are random pixels (speed does not depend on them).
    """
    from .export import export_step_onnx
    from .online import OnnxStream, TorchStream

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = np.random.default_rng(0).random((1, samples, model.config.input_size), dtype=np.float32)
    result = {"cell": model.config.cell, "samples": samples}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            export_step_onnx(model, transform, path, [x[0, :64], x[0, 64:96]])
            for name, backend in (("pytorch", TorchStream(model, transform)), ("onnxruntime", OnnxStream(path))):
                result.update({f"{name}_us_{k}": v for k, v in _per_call_us(backend, x).items()})
        pruned = TorchStream(model, transform).streamer.clf  # the same model, evaluation mode
        image = torch.from_numpy(x[:, :784])
        times = []
        with torch.inference_mode():
            for t in np.linspace(0, 783, prefixes).astype(int):
                pruned(image[:, : t + 1])  # warm: compiles and caches this length's plan
                start = time.perf_counter()
                pruned(image[:, : t + 1])
                times.append(time.perf_counter() - start)
        result["prefix_us_mean"] = 1e6 * statistics.fmean(times)
    finally:
        torch.set_num_threads(saved_threads)
    return result


def _per_call_us(backend, x: np.ndarray, warmup: int = 50) -> dict:
    state = backend.start(1)
    for k in range(warmup):
        _, state = backend(x[:, k : k + 1], state)
    times = []
    for k in range(x.shape[1]):
        start = time.perf_counter()
        _, state = backend(x[:, k : k + 1], state)
        times.append(time.perf_counter() - start)
    us = sorted(1e6 * t for t in times)
    return {"p50": us[len(us) // 2], "p99": us[min(len(us) - 1, int(0.99 * len(us)))], "mean": statistics.fmean(us)}


LENGTH_VARIANTS = ("exact", "padded", "full")


def bench_lengths(dataset, cell: str = "gru", hidden: int = 32, batch_size: int = 16, batches: int = 10,
                  warmup: int = 2) -> dict:
    """Variable-length batches of a real dataset: training-step seconds and cell steps of three ways.

    ``exact`` is what training and evaluation run (on the CPU: the batch right-aligned, one pruned plan,
    the fused kernels skipping each row's front padding; elsewhere: grouped by length); ``padded`` runs
    the pruned plan of the batch's longest sequence on the zero-padded batch (what ignoring the lengths
    would cost; not exact); ``full`` computes every step of the padded batch and reads each row at its
    length (exact; the variable-length ONNX graph's computation). Cell steps count the real ones. Median over ``batches`` real batches
    (the same batches for each way), after ``warmup``.
    """
    from .datasets import default_dilations
    from .pruning import plan_outputs

    train = dataset.splits["train"]
    dilations = default_dilations(dataset.train_max_length)
    torch.manual_seed(0)
    model = DilatedRNNClassifier(dataset.num_features, [hidden] * len(dilations), dilations, cell,
                                 dataset.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(warmup + batches)]
    steps = lambda T: plan_outputs(T, dilations, [T - 1]).cell_steps
    times = {v: [] for v in LENGTH_VARIANTS}
    cell_steps = {v: 0 for v in LENGTH_VARIANTS}
    for i, idx in enumerate(batches):
        x, lengths = train.batch(idx)
        x = dataset.transform(x, lengths)
        y = train.labels[idx]
        T = x.shape[1]
        runs = {"exact": lambda: model(x, lengths), "padded": lambda: model(x),
                "full": lambda: model.forward_full(x, lengths)}
        for variant, forward in runs.items():
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(forward(), y).backward()
            optimizer.step()
            if i >= warmup:
                times[variant].append(time.perf_counter() - start)
                cell_steps[variant] += {"exact": sum(steps(n) for n in lengths.tolist()),
                                        "padded": len(idx) * steps(T), "full": len(idx) * T * len(dilations)}[variant]
    med = {v: statistics.median(ts) for v, ts in times.items()}
    return {"data": dataset.spec, "cell": cell, "hidden": hidden, "dilations": list(dilations), "batch_size": batch_size,
            "batches": len(times["exact"]),
            **{f"{v}_s": med[v] for v in LENGTH_VARIANTS},
            **{f"{v}_cell_steps_per_batch": cell_steps[v] / len(times[v]) for v in LENGTH_VARIANTS},
            **{f"{v}_times_s": times[v] for v in LENGTH_VARIANTS}}


def environment(device: str = "cpu") -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpus": _cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "fused_kernels": kernels.enabled(),
        "native_kernels": native.available(),
    }
    if kernels.numba is not None:
        env["numba"] = kernels.numba.__version__
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import openvino

        env["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:  # pragma: no cover
        pass
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
