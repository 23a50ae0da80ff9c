"""Tuning of a process about to run many training steps (``drnn train``, ``drnn bench``): its allocator and
its garbage collector. Library callers are left as they are."""

from __future__ import annotations

import ctypes
import gc


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
