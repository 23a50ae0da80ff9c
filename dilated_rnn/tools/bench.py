"""Benchmarks: training-step time (fast path vs. full computation) and inference speed.

Training: synthetic data (speed does not depend on pixel values), warm-up
excluded, median of several timed steps, every variant in the same process and
interleaved so that drifting machine load affects them alike. Variants:

* ``fused``  the pruned classifier with the fused recurrences (what ``drnn train`` runs on a CPU);
* ``pruned`` the pruned classifier on PyTorch's RNN modules (``engine.use("torch")``);
* ``full``   every step of every layer, one ``nn.LSTM``/``nn.GRU``/``nn.RNN`` call per layer;
* ``full_fused`` every step of every layer on the fused recurrences (``DilatedRNN.forward`` on a CPU:
  what sequence labelling trains);
* ``fused_numba`` ``fused`` on Numba's recurrences instead of the native ones (where those run).

Inference: batch-1 latency (p50/p99) on one thread and batched throughput on
``threads`` threads, with PyTorch (the fused path) and ONNX Runtime (the fp32
export), for real trained weights. Streaming: the latency of one sample at batch 1
on one thread, PyTorch's compiled update and the ONNX step graph, beside
recomputing the pruned model on the prefix at every step. Functions return data;
``run_suite`` also hands each table line to a ``say`` callback (the CLI prints them).
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

from .. import engine
from ..config import ModelConfig
from ..engine import native
from ..engine import numba_kernels as nk
from ..engine.recurrence import PROFILE_BACKWARD, PROFILE_FORWARD, projects_inside
from ..errors import ParameterError
from ..model.dilated import DilatedRNNClassifier
from ..model.pruning import plan_outputs
from ..training.optim import TFRMSprop
from ..training.process import keep_freed_memory

TRAIN_VARIANTS = ("fused", "pruned", "full", "full_fused", "fused_numba")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: DilatedRNNClassifier, variant: str, x, y):
    optimizer = TFRMSprop(model.parameters(), lr=1e-3)
    backend = {"pruned": "torch", "full": "torch", "fused_numba": "numba"}.get(variant, engine.backend())
    forward = model.forward_full if variant.startswith("full") else model.forward

    def step():
        optimizer.zero_grad(set_to_none=True)
        with engine.use(backend):
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
    policy ``drnn train`` sets (``training.process.keep_freed_memory``)."""
    keep_freed_memory()
    dev = torch.device(device)
    config = config or ModelConfig(cell=cell)
    x, y = _synthetic_batch(config, batch_size, seq_len, dev)
    # The fused path exists on the CPU only; elsewhere "fused" would just repeat "pruned".
    variants = TRAIN_VARIANTS if engine.runs(x, cell) else ("pruned", "full")
    if engine.backend() != "native":
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
    for layer, lp in zip(model.rnn.layers, plan_outputs(seq_len, model.rnn.dilations, model._steps(seq_len)).layers):
        fb, bb = native.recurrence_traffic(batch_size * len(lp.residues), lp.length, layer.input_size,
                                           layer.hidden_size, nk.CELL_CODES[config.cell],
                                           not projects_inside(layer.input_size))
        forward_bytes, backward_bytes = forward_bytes + fb, backward_bytes + bb
    recurrence_s = (parts["recurrence forward"] + parts["recurrence backward"]) * 1e-3
    return {"cell": config.cell, "batch_size": batch_size, "seq_len": seq_len, "native_kernels": engine.backend() == "native",
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
    if event.name == PROFILE_FORWARD:
        return "recurrence forward"
    if event.name == PROFILE_BACKWARD:
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
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

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


def bench_inference(trained, backend: str, latency_images: int = 500, batch_images: int = 10000,
                    batch_size: int = 1000, threads: int = 2) -> dict:
    """Batch-1 latency on one thread and batched throughput on ``threads``, for one backend.

    ``trained``: a ``TrainedModel`` of MNIST. ``backend``: ``pytorch`` (the pruned classifier on the
    engine's backend in force: the native kernels where they run), ``pytorch-numba`` (the same on the
    Numba kernels), ``onnxruntime`` (the fp32 export, parity-checked on the way) or ``openvino`` (the fp32
    IR, likewise). Inputs are random images (speed does not depend on pixel values).
    """
    from ..data.mnist import scale_pixels
    from ..deploy.export import export_onnx, export_openvino
    from ..deploy.infer import (
        OnnxBackend,
        OpenvinoBackend,
        TorchBackend,
        latency_stats,
        run_inference,
    )

    gen = np.random.default_rng(0)
    images = torch.from_numpy(gen.integers(0, 256, (max(latency_images, batch_images), 784, 1), dtype=np.uint8))
    x = scale_pixels(images).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        if backend in ("pytorch", "pytorch-numba"):
            make = lambda n_threads: TorchBackend(trained, n_threads)
        elif backend == "onnxruntime":
            path = Path(tmp) / "model.onnx"
            export_onnx(trained, path, x[:64])
            make = lambda n_threads: OnnxBackend(path, n_threads)
        elif backend == "openvino":
            path = Path(tmp) / "model.xml"
            export_openvino(trained, path, x[:64])
            make = lambda n_threads: OpenvinoBackend(path, n_threads)
        else:
            raise ParameterError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
        saved_threads = torch.get_num_threads()
        kernels_used = engine.use("numba") if backend == "pytorch-numba" else contextlib.nullcontext()
        try:
            with kernels_used:  # warm-up calls first: compilation, allocator, caches
                _, one = run_inference(make(1), x[:latency_images], batch_size=1, warmup=20)
                _, many = run_inference(make(threads), x[:batch_images], batch_size=batch_size, warmup=1)
        finally:
            torch.set_num_threads(saved_threads)
    latency, batched = latency_stats(one, latency_images, 1), latency_stats(many, batch_images, batch_size)
    return {
        "cell": trained.config.cell,
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


def bench_stream(trained, samples: int = 2000, prefixes: int = 20) -> dict:
    """Seconds per streamed sample at batch 1 on one thread (p50, p99, mean, in microseconds).

    ``pytorch``: ``deploy.stream.Streamer``, one call per sample; ``onnxruntime``: the step graph (exported and
    parity-checked on the way), one call per sample; ``prefix``: the pruned model recomputed on the prefix
    x[:t+1] at every step (what anytime classification costs without a state), averaged over ``prefixes``
    prefix lengths spread over the 784 steps. Inputs are random pixels (speed does not depend on them).
    """
    from ..deploy.export import export_step_onnx
    from ..deploy.stream import OnnxStream, TorchStream

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = np.random.default_rng(0).random((1, samples, trained.features), dtype=np.float32)
    result = {"cell": trained.config.cell, "samples": samples}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            export_step_onnx(trained, path, [x[0, :64], x[0, 64:96]])
            for name, backend in (("pytorch", TorchStream(trained)), ("onnxruntime", OnnxStream(path))):
                result.update({f"{name}_us_{k}": v for k, v in _per_call_us(backend, x).items()})
        pruned = TorchStream(trained).streamer.clf  # the same model, evaluation mode
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
    from ..deploy.infer import percentiles

    state = backend.start(1)
    for k in range(warmup):
        _, state = backend(x[:, k : k + 1], state)
    times = []
    for k in range(x.shape[1]):
        start = time.perf_counter()
        _, state = backend(x[:, k : k + 1], state)
        times.append(time.perf_counter() - start)
    return percentiles(1e6 * t for t in times)


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
    from ..data.datasets import default_dilations

    train = dataset.splits["train"]
    dilations = default_dilations(dataset.train_max_length)
    torch.manual_seed(0)
    model = DilatedRNNClassifier(dataset.model_features, [hidden] * len(dilations), dilations, cell,
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
        "engine": engine.backend(),
        "fused_kernels": engine.fused(),
        "native_kernels": engine.backend() == "native",
        "numba": nk.numba.__version__,
    }
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


def run_suite(what, cells, backends, settings: dict, say=lambda line: None, data=None) -> dict:
    """``drnn bench``: the benchmarks in ``what`` (train, infer, stream, lengths, profile) for ``cells``, each
    a table handed line by line to ``say``. ``settings``: threads, batch_size, steps, warmup, device,
    latency_images, batch_images, infer_batch_size, stream_samples, length_batches. ``data``: the dataset of
    ``lengths``. Returns every row, by benchmark, with the environment."""
    from ..trained import load_model, pretrained_source

    s = settings
    results = {"environment": environment(s["device"]), "train": [], "infer": []}
    shipped = lambda cell: load_model(pretrained_source(f"{cell}-mnist"))  # noqa: E731
    if "train" in what:
        say(f"training step, batch {s['batch_size']}, {s['threads']} threads, median of {s['steps']} "
            f"(seconds; ratio to full; peak MB)")
        say(f"{'cell':5} {'fused':>8} {'pruned':>8} {'full':>8} {'full fused':>10} {'fused/full':>10} "
            f"{'pruned/full':>11} {'full fused/full':>15} {'fused MB':>9} {'full MB':>8} {'fused numba':>11}")
        for cell in cells:
            results["train"].append(bench_train_step(cell, s["batch_size"], s["steps"], s["warmup"], s["device"]))
            say(_train_row(results["train"][-1]))
    if "infer" in what:
        say(f"inference, shipped unpermuted models: batch 1 on 1 thread ({s['latency_images']} images); "
            f"{s['batch_images']} images in batches of {s['infer_batch_size']} on {s['threads']} threads")
        say(f"{'cell':5} {'backend':13} {'p50 ms':>7} {'p99 ms':>7} {'batched s':>9} {'images/s':>9}")
        for cell in cells:
            trained = shipped(cell)
            for backend in backends:
                r = bench_inference(trained, backend, s["latency_images"], s["batch_images"], s["infer_batch_size"],
                                    s["threads"])
                results["infer"].append(r)
                say(f"{cell:5} {backend:13} {r['latency_ms_p50']:7.3f} {r['latency_ms_p99']:7.3f} "
                    f"{r['batched_s']:9.3f} {r['images_per_s']:9.0f}")
    if "stream" in what:
        results["stream"] = _stream_table(cells, s, shipped, say)
    if "lengths" in what:
        results["lengths"] = _lengths_table(data, cells, s, say)
    if "profile" in what:
        results["profile"] = _profile_table(cells, s, say)
    return results


def _stream_table(cells, s: dict, shipped, say) -> list[dict]:
    say(f"streaming, shipped unpermuted models: one sample per call at batch 1 on 1 thread, {s['stream_samples']} "
        f"samples (microseconds per sample)")
    say(f"{'cell':5} {'pytorch p50':>11} {'p99':>7} {'onnxrt p50':>10} {'p99':>7} {'prefix recompute':>16}")
    rows = []
    for cell in cells:
        r = bench_stream(shipped(cell), s["stream_samples"])
        rows.append(r)
        say(f"{cell:5} {r['pytorch_us_p50']:11.1f} {r['pytorch_us_p99']:7.1f} {r['onnxruntime_us_p50']:10.1f} "
            f"{r['onnxruntime_us_p99']:7.1f} {r['prefix_us_mean']:16.1f}")
    return rows


def _profile_table(cells, s: dict, say) -> list[dict]:
    say(f"where a fused training step's time goes, batch {s['batch_size']}, {s['threads']} threads, "
        f"{s['steps']} profiled steps (ms per step); what the recurrences move")
    say(f"{'cell':5} {'step':>6} " + " ".join(f"{part:>{max(9, len(part))}}" for part in PROFILE_PARTS)
        + f" {'recurrence MB':>13} {'GB/s':>5} {'copy GB/s':>9}")
    rows = []
    for cell in cells:
        r = bench_profile(cell, s["batch_size"], s["steps"], s["warmup"])
        rows.append(r)
        moved = (r["recurrence_forward_bytes"] + r["recurrence_backward_bytes"]) / 1e6
        say(f"{cell:5} {r['step_ms']:6.1f} " + " ".join(f"{r['parts_ms'][part]:{max(9, len(part))}.1f}"
                                                      for part in PROFILE_PARTS)
            + f" {moved:13.0f} {r['recurrence_gb_per_s'] or 0:5.1f} {r['copy_gb_per_s']:9.1f}")
    return rows


def _lengths_table(dataset, cells, s: dict, say) -> list[dict]:
    say(f"variable-length training step on {dataset.spec}, batch 16, median of {s['length_batches']} real batches "
        f"(seconds; cell steps per batch)")
    say(f"{'cell':5} " + " ".join(f"{v:>9} {'steps':>9}" for v in LENGTH_VARIANTS) + f" {'exact/padded':>12}"
        + f" {'exact/full':>10}")
    rows = []
    for cell in cells:
        r = bench_lengths(dataset, cell, batches=s["length_batches"])
        rows.append(r)
        say(f"{cell:5} " + " ".join(f"{r[v + '_s']:9.4f} {r[v + '_cell_steps_per_batch']:9.0f}" for v in LENGTH_VARIANTS)
            + f" {r['exact_s'] / r['padded_s']:12.3f} {r['exact_s'] / r['full_s']:10.3f}")
    return rows


def _train_row(r: dict) -> str:
    get = lambda key, fmt: format(r[key], fmt) if key in r else "-"  # noqa: E731
    mb = lambda key: f"{r[key] / 2**20:.1f}" if r.get(key) is not None else "-"  # noqa: E731
    return (f"{r['cell']:5} {get('fused_s', '8.4f'):>8} {r['pruned_s']:8.4f} {r['full_s']:8.4f} "
            f"{get('full_fused_s', '10.4f'):>10} {get('fused_ratio', '10.3f'):>10} {r['pruned_ratio']:11.3f} "
            f"{get('full_fused_ratio', '15.3f'):>15} {mb('fused_peak_bytes'):>9} {mb('full_peak_bytes'):>8} "
            f"{get('fused_numba_s', '11.4f'):>11}")
