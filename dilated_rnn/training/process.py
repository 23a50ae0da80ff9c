"""The process that trains: what memory a run will need, checked before anything is allocated, and the tuning of
a process about to run many training steps (``drnn train``, ``drnn bench``): its allocator and its garbage
collector. Library callers are left as they are."""

from __future__ import annotations

import ctypes
import gc
import os

from ..errors import ResourceError
from ..model.cells import CELLS

# Bytes a training step keeps per parameter: the weight, its gradient and up to two optimizer states (float32).
BYTES_PER_PARAMETER = 16
# Floats a training recurrence keeps per cell step and unit: output, gate values, the backward's gradients.
FLOATS_PER_CELL_STEP = 14


def training_bytes(config, batch_size: int, cell_steps: int) -> int:
    """A lower estimate of the memory a training step of a ``ModelConfig`` needs: parameters with their
    gradients and optimizer states, and the recurrences' arrays for ``cell_steps`` per sequence (the widest
    layer's units, a bound on each step's)."""
    G = CELLS[config.cell].gates
    sizes = (config.input_size, *config.hidden_sizes)
    parameters = sum(G * h * (f + h + 2) for f, h in zip(sizes, sizes[1:]))
    parameters += (config.dilations[0] * sizes[-1] + 1) * config.num_classes
    widest = max(config.hidden_sizes)
    return BYTES_PER_PARAMETER * parameters + 4 * FLOATS_PER_CELL_STEP * batch_size * cell_steps * widest * G


def available_memory() -> int | None:
    """Bytes this process could still allocate: the machine's available memory (Linux), else None."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config, batch_size: int, cell_steps: int) -> None:
    """Refuse a run whose estimate (``training_bytes``) exceeds the memory available, before allocating."""
    need, have = training_bytes(config, batch_size, cell_steps), available_memory()
    if have is not None and need > have:
        raise ResourceError(f"a training step of this model needs at least {need / 2**30:.1f} GiB "
                            f"(hidden sizes {', '.join(map(str, config.hidden_sizes))}, batch {batch_size}); "
                            f"{have / 2**30:.1f} GiB are available: use fewer units or a smaller batch")


def keep_freed_memory() -> bool:
    """Have this process's allocator keep freed large blocks for reuse rather than return them to the system.

    A training step allocates and frees the same large arrays at every step (activations, gradients, the
    recurrences' work arrays). glibc returns blocks over its mmap threshold to the system when freed, so
    each comes back as fresh pages that the kernel faults in and zeroes, a large share of a CPU step.
    Raising the threshold (and the trim threshold) keeps them in the heap; the resident memory then stays
    at its peak. Returns False, changing nothing, where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def freeze_live_objects() -> None:
    """Leave every object alive now out of the cyclic garbage collector's passes (``gc.freeze``), for a
    process about to run many training steps: ``drnn train`` and ``drnn bench``, not the library's callers.

    A process that has imported PyTorch holds some 300,000 tracked objects, and the full collections that a
    step's allocations trigger every few steps walk them all: about 5 % of a fused LSTM step on MNIST.
    Objects made later are collected as before; frozen ones that become garbage are freed by their
    reference counts, or stay if they form cycles.
    """
    gc.freeze()
