"""Native inference kernels, batch in the vector lanes (``csrc/stack.c``): compiled on first use, loaded with ctypes.

``kernels.stack_outputs`` runs the pruned stack one row per thread, each step a
matrix-vector product whose sums form a chain of dependent additions. Here
eight rows advance together in the lanes of AVX2 registers: each weight is
broadcast once against eight rows, and a step's gate sums are independent
register accumulators. Batches of fewer than ``LANES`` rows (batch-1 latency)
run one row at a time with the vectors across a step's units instead.

It needs an x86-64 CPU with AVX2 and FMA and a C compiler (``cc``, or ``$CC``):
the source is compiled once into the kernel cache (``$DRNN_KERNEL_CACHE``, else
``~/.cache/dilated-rnn/kernels``), under a name that hashes the source and the
compiler command, with a ``.sha256`` checked before every load. Without them, or with ``DRNN_NATIVE=0``, ``available()`` is
False and inference runs the Numba kernels as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shlex
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import UserError
from .integrity import verify_sidecar, write_sidecar

LANES = 8
SOURCE = Path(__file__).parent / "csrc" / "stack.c"
FLAGS = ["-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-std=c11"]
_lock = threading.Lock()
_library = None  # None: not tried yet; False: unavailable
_pool: ThreadPoolExecutor | None = None


def cpu_supported() -> bool:
    """An x86-64 CPU with AVX2 and FMA (Linux: from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return {"avx2", "fma"} <= flags
    except OSError:
        pass
    return False


def cache_dir() -> Path:
    return Path(os.environ.get("DRNN_KERNEL_CACHE") or Path.home() / ".cache" / "dilated-rnn" / "kernels")


def _compile() -> Path | None:
    """The built library, verified against its ``.sha256`` (a damaged or missing one is rebuilt); None if
    it cannot be built here (no compiler, a compile error, an unwritable cache)."""
    compiler = shlex.split(os.environ.get("CC", "cc"))
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(compiler + FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / f"stack-{key}.so"
    try:
        if target.is_file() and verify_sidecar(target):
            return target
    except UserError:  # changed since it was built: build it again
        pass
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then renamed: never half-written
            built = Path(tmp) / target.name
            subprocess.run([*compiler, *FLAGS, "-o", str(built), str(SOURCE)], check=True, capture_output=True,
                           timeout=120)
            os.replace(built, target)
        write_sidecar(target)
    except (OSError, subprocess.SubprocessError):
        return None
    return target


def _load():
    global _library
    with _lock:
        if _library is None:
            _library = False
            if os.environ.get("DRNN_NATIVE", "1") != "0" and cpu_supported():
                path = _compile()
                if path is not None:
                    lib = ctypes.CDLL(str(path))
                    p, i = ctypes.c_void_p, ctypes.c_int64
                    for fn in (lib.drnn_stack_tiles, lib.drnn_stack_rows):
                        fn.argtypes = [p, i, i, i, p, i, i, p, p, p, i, p, i, i]
                        fn.restype = ctypes.c_int
                    _library = lib
    return _library


@contextlib.contextmanager
def turned_off():
    """Within: ``available()`` is False, so inference runs the Numba kernels (for side-by-side benchmarks)."""
    global _library
    saved = _load()
    _library = False
    try:
        yield
    finally:
        _library = saved


def available() -> bool:
    """Whether the native kernels can run here (compiling it on the first call)."""
    return bool(_load())


def stack(x: np.ndarray, weights: np.ndarray, cell: int, sizes: np.ndarray, gather: np.ndarray,
          readout: np.ndarray, out: np.ndarray, threads: int = 1, lanes: bool | None = None) -> None:
    """``kernels._stack_forward``'s job, split over ``threads`` (ctypes releases the GIL).

    Arrays as ``_stack_forward`` takes them: x [B, T, F] float32, the packed weights and plan (int64),
    out [B, len(readout), H_top] float32, C-contiguous. ``lanes``: tiles of ``LANES`` rows (the last one
    padded) or one row at a time; None picks tiles from ``LANES`` rows on.
    """
    lib = _load()
    if not lib:
        raise RuntimeError("the native kernels are not available on this machine")
    x, weights, sizes, gather, readout = (np.ascontiguousarray(a) for a in (x, weights, sizes, gather, readout))
    if x.dtype != np.float32 or weights.dtype != np.float32 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("x, weights and out must be float32, out C-contiguous")
    B, T, F = x.shape
    lanes = B >= LANES if lanes is None else lanes
    fn, units = (lib.drnn_stack_tiles, -(-B // LANES)) if lanes else (lib.drnn_stack_rows, B)
    ptr = lambda a: a.ctypes.data

    def run(bounds):
        return fn(ptr(x), B, T, F, ptr(weights), cell, len(sizes), ptr(sizes), ptr(gather), ptr(readout),
                  len(readout), ptr(out), *bounds)

    parts = max(1, min(threads, units))
    edges = [units * k // parts for k in range(parts + 1)]
    bounds = list(zip(edges[:-1], edges[1:]))
    codes = list(_executor(parts).map(run, bounds)) if parts > 1 else [run(bounds[0])]
    if any(codes):
        raise MemoryError("the native kernels could not allocate their buffers")


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drnn-lanes")
    return _pool
