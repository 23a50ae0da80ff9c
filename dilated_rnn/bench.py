"""Benchmarks: training-step time of the pruned classifier against the full computation.

Synthetic data (speed does not depend on pixel values), warm-up excluded,
median of several timed steps, both variants in the same process, interleaved
so that drifting machine load affects them alike. Returns data; printing is the
CLI's job.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
from torch import nn

from .model import DilatedRNNClassifier, ModelConfig
from .optim import TFRMSprop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: DilatedRNNClassifier, full: bool, x, y):
    optimizer = TFRMSprop(model.parameters(), lr=1e-3)
    forward = model.forward_full if full else model.forward

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward(x), y).backward()
        optimizer.step()

    return step


def bench_train_step(cell: str, batch_size: int = 128, steps: int = 5, warmup: int = 2,
                     device: str = "cpu", config: ModelConfig | None = None, seq_len: int = 784) -> dict:
    """Median seconds per training step (forward + backward + RMSProp) for pruned and full."""
    dev = torch.device(device)
    config = config or ModelConfig(cell=cell)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, seq_len, config.input_size, generator=gen).to(dev)
    y = torch.randint(0, config.num_classes, (batch_size,), generator=gen).to(dev)
    torch.manual_seed(0)
    fns = {name: _step_fn(DilatedRNNClassifier.from_config(config).to(dev), name == "full", x, y)
           for name in ("pruned", "full")}
    times = {name: [] for name in fns}
    peak = {}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            _sync(dev)
            start = time.perf_counter()
            fn()
            _sync(dev)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    for name in fns:
        peak[name] = _peak_memory(fns[name], dev)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "cell": cell,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "pruned_s": med["pruned"],
        "full_s": med["full"],
        "ratio": med["pruned"] / med["full"],
        "pruned_times_s": times["pruned"],
        "full_times_s": times["full"],
        "pruned_peak_bytes": peak["pruned"],
        "full_peak_bytes": peak["full"],
    }


def _peak_memory(step, dev: torch.device) -> int | None:
    """Peak bytes allocated by one step: CUDA's allocator stats, or PyTorch's CPU profiler."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        step()
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # Walk the allocation events in order, tracking live bytes; the maximum is the peak.
    live = peak = 0
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def environment(device: str = "cpu") -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
