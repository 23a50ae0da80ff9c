"""Native kernels, batch in the vector lanes (``csrc/``): compiled on first use, loaded with ctypes.

Numba's kernels (``numba_kernels.py``) run one row per thread, each step a
matrix-vector product whose sums form a chain of dependent additions. Here
eight rows advance together in the lanes of AVX2 registers: each weight is
broadcast once against eight rows, and a step's gate sums are independent
register accumulators (``csrc/lanes.h``). ``csrc/stack.c``: the pruned stack's
inference (``StackKernel``); batches of fewer than ``LANES`` rows (batch-1
latency) run one row at a time with the vectors across a step's units instead,
as streaming does (``StreamKernel``: the shift registers of ``streaming.py``,
and the classifier's head, in one call per chunk). A kernel object binds the
fixed arrays' addresses once, so the callers that keep one (a frozen model, a
``Streamer``) pay per call little more than the kernel itself.
``csrc/recurrence.c``: training's recurrences, one layer forward and backward
through time (``recurrence_forward``, ``recurrence_backward``). Every kernel
splits its work over the ``threads`` it is given with OpenMP, so on PyTorch's
own threads (``csrc/lanes.h``: ``OVER_PARTS``).

It needs an x86-64 CPU with AVX2 and FMA and a C compiler with OpenMP (``cc``,
or ``$CC``): the sources are compiled once into the kernel cache
(``$DRNN_KERNEL_CACHE``, else ``~/.cache/dilated-rnn/kernels``), under a name
that hashes the sources and the compiler command, with a ``.sha256`` checked
before every load. Without them ``available()`` is False, and the engine
(``dispatch.py``) runs the Numba kernels instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..integrity import verify_sidecar, write_sidecar

LANES = 8
SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCES = ("stack.c", "recurrence.c")  # with lanes.h, which both include
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-fPIC", "-shared", "-std=c11"]
_lock = threading.Lock()
_library = None  # None: not tried yet; False: unavailable


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
    source = b"".join((SOURCE_DIR / name).read_bytes() for name in (*SOURCES, "lanes.h"))
    key = hashlib.sha256(source + " ".join(compiler + FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / f"lanes-{key}.so"
    try:
        if target.is_file() and verify_sidecar(target):
            return target
    except UserError:  # changed since it was built: build it again
        pass
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"dilated-rnn: compiling the native kernels once, into {target.parent} (a minute at most)",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then renamed: never half-written
            built = Path(tmp) / target.name
            sources = [str(SOURCE_DIR / name) for name in SOURCES]
            subprocess.run([*compiler, *FLAGS, "-o", str(built), *sources], check=True, capture_output=True, timeout=120)
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
            if cpu_supported():
                path = _compile()
                if path is not None:
                    lib = ctypes.CDLL(str(path))
                    p, i = ctypes.c_void_p, ctypes.c_int64
                    lib.drnn_stack.argtypes = [p, i, i, i, p, i, i, p, p, p, i, i, p, i, i]
                    lib.drnn_stream.argtypes = [p, i, i, i, p, i, i, p, p, p, i, p, p, p, i, p, p, p, i, i]
                    lib.drnn_recurrence_forward.argtypes = [p, i, i, i, i, i, p, p, p, p, p, p, i]
                    lib.drnn_recurrence_backward.argtypes = [p, i, i, i, i, i, p, p, p, p, p, p, p, p, p, p, i]
                    for fn in (lib.drnn_stack, lib.drnn_stream, lib.drnn_recurrence_forward,
                               lib.drnn_recurrence_backward):
                        fn.restype = ctypes.c_int
                    _library = lib
    return _library


def available() -> bool:
    """Whether the native kernels can run here (compiling them on the first call)."""
    return bool(_load())


def stack(x: np.ndarray, weights: np.ndarray, cell: int, sizes: np.ndarray, gather: np.ndarray,
          readout: np.ndarray, out: np.ndarray, threads: int = 1, lanes: bool | None = None) -> None:
    """``numba_kernels.stack_forward``'s job, split over ``threads``.

    Arrays as ``numba_kernels.stack_forward`` takes them: x [B, T, F] float32, the packed weights and plan (int64;
    ``readout`` [layers read, steps]), out [B, steps, sum of H over the layers read] float32, C-contiguous.
    ``lanes``: tiles of ``LANES`` rows (the last one padded) or one row at a time; None picks tiles from ``LANES``
    rows on.
    """
    StackKernel(weights, cell, sizes, gather, readout).run(x, out, threads, lanes)


class StackKernel:
    """The pruned stack's kernel bound to fixed weights and one plan (``stack``'s arrays but x and out).

    The fixed arrays' addresses are taken once, so a caller that keeps it (a frozen model, per sequence
    length) pays at each call only for x, out and the kernel: what batch-1 latency needs.
    """

    def __init__(self, weights: np.ndarray, cell: int, sizes: np.ndarray, gather: np.ndarray, readout: np.ndarray):
        lib = _loaded()
        weights = np.ascontiguousarray(weights)
        sizes, gather, readout = (np.ascontiguousarray(a, np.int64) for a in (sizes, gather, readout))
        if weights.dtype != np.float32:
            raise ValueError("weights must be float32")
        self.arrays = (weights, sizes, gather, readout)  # kept alive: the kernel reads them through their addresses
        read, steps = readout.shape  # the top `read` layers, at `steps` steps each
        self.shape = (int(sizes[0, 0]), steps, int(sizes[len(sizes) - read :, 1].sum()))  # F, steps, width
        self._lib = lib
        self._fixed = (weights.ctypes.data, cell, len(sizes), sizes.ctypes.data, gather.ctypes.data,
                       readout.ctypes.data, steps, read)

    def run(self, x: np.ndarray, out: np.ndarray, threads: int = 1, lanes: bool | None = None) -> None:
        """x [B, T, F] float32 -> out [B, steps, width] (float32, C-contiguous, written in place)."""
        x = np.ascontiguousarray(x)
        B, T, F = x.shape
        if (x.dtype != np.float32 or out.dtype != np.float32 or not out.flags.c_contiguous
                or out.shape != (B, *self.shape[1:]) or F != self.shape[0]):
            raise ValueError(f"expected x [B, T, {self.shape[0]}] and out [B, {self.shape[1]}, {self.shape[2]}], "
                             f"float32; got {list(x.shape)} {x.dtype} and {list(out.shape)} {out.dtype}")
        lanes = B >= LANES if lanes is None else lanes
        _check(self._lib.drnn_stack(x.ctypes.data, B, T, F, *self._fixed, out.ctypes.data, int(lanes), threads))


def stream(x: np.ndarray, weights: np.ndarray, cell: int, sizes: np.ndarray, registers: np.ndarray,
           threads: int = 1, every_layer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``numba_kernels.stream_forward``'s job: a chunk x [B, n, F] (float32) from the shift registers [B, M] ->
    (top outputs [B, n, H_top], or ``every_layer``'s [B, n, sum of H], bottom first; the registers after the chunk,
    a new array); rows split over ``threads``. ``sizes`` [L, 3] = (F, H, d) per layer, int64."""
    x, registers = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(registers, np.float32)
    B, n, F = x.shape
    kernel = StreamKernel(weights, cell, sizes, every_layer=every_layer)
    out = np.empty((B, n, kernel.width), np.float32)
    after = np.empty_like(registers)
    if registers.shape != (B, kernel.state_size):
        raise ValueError(f"registers of shape {list(registers.shape)}; expected [{B}, {kernel.state_size}]")
    kernel.run(x.ctypes.data, B, n, F, registers.ctypes.data, after.ctypes.data, out=out.ctypes.data, threads=threads)
    return out, after


class StreamKernel:
    """The streaming kernel bound to one frozen stack (and optionally a linear head on what it reads at each step:
    the top output, or ``every_layer``'s outputs concatenated bottom first).

    The fixed arrays' addresses are taken once, so a call costs little more than the kernel itself (what
    one sample's latency needs). ``run`` takes the addresses of C-contiguous buffers the caller owns and
    has checked: x [B, n, F] float32, registers and ``after`` [B, M] float32; optional ``out`` [B, n,
    H_top or sum of H] for what is read, ``logits`` [B, n, K] (needs the head), ``position`` and
    ``position_after`` [B] int64 (``position_after = position + n``).
    """

    def __init__(self, weights: np.ndarray, cell: int, sizes: np.ndarray, head_weight: np.ndarray | None = None,
                 head_bias: np.ndarray | None = None, every_layer: bool = False):
        lib = _loaded()
        weights, sizes = np.ascontiguousarray(weights, np.float32), np.ascontiguousarray(sizes, np.int64)
        self.arrays = [weights, sizes]  # kept alive: the kernel reads them through their addresses
        self.state_size = int(sum(d * h * (2 if cell == 1 else 1) for _, h, d in sizes))
        self._fn = lib.drnn_stream
        self._stack = (weights.ctypes.data, cell, len(sizes), sizes.ctypes.data)
        self.every_layer = int(every_layer)
        self.width = int(sizes[:, 1].sum() if every_layer else sizes[-1, 1])  # values read at each step
        self._head, self.outputs = (None, None, 0), 0  # outputs: the head's K
        if head_weight is not None:
            head_weight, head_bias = (np.ascontiguousarray(a, np.float32) for a in (head_weight, head_bias))
            if head_weight.shape[1] != self.width or head_bias.shape != head_weight.shape[:1]:
                raise ValueError(f"a head of shape {list(head_weight.shape)} does not fit the {self.width} outputs "
                                 "read at each step")
            self.arrays += [head_weight, head_bias]
            self._head, self.outputs = (head_weight.ctypes.data, head_bias.ctypes.data, len(head_bias)), len(head_bias)

    def run(self, x: int, B: int, n: int, F: int, registers: int, after: int, out: int | None = None,
            logits: int | None = None, position: int | None = None, position_after: int | None = None,
            threads: int = 1) -> None:
        if logits is not None and not self.outputs:
            raise ValueError("logits need a head")
        if (position is None) != (position_after is None):
            raise ValueError("position and position_after go together")
        head = self._head if logits is not None else (None, None, 0)
        _check(self._fn(x, B, n, F, *self._stack, registers, after, self.state_size, out, *head, logits, position,
                        position_after, self.every_layer, threads))


AUX = {0: 1, 1: 6, 2: 5}  # values per unit and step the training recurrences keep, by cell code (recurrence.c)
GATES = {0: 1, 1: 4, 2: 3}  # gate blocks by cell code (lanes.h: gate_count)


def recurrence_traffic(N: int, n: int, F: int, H: int, cell: int, projected: bool) -> tuple[int, int]:
    """Bytes the arrays of one ``recurrence_forward`` and one ``recurrence_backward`` call hold, read or written
    once each (the weights, a few kB, left out): what the two calls must move through memory at least."""
    G = GATES[cell]
    steps, lane_steps = N * n, -(-N // LANES) * LANES * n
    kept = lane_steps * AUX[cell] * H  # aux: written forward, read backward
    forward = steps * (G * H if projected else F) + kept + steps * H  # in, aux, hs
    backward = steps * H + kept + steps * G * H * (2 if cell == 2 else 1)  # dout, aux, dgx (and a GRU's dgh)
    if not projected:
        backward += 2 * steps * F  # x read, dx written
    return 4 * forward, 4 * backward


def recurrence_forward(inputs: np.ndarray, w_t: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, cell: int,
                       start: np.ndarray, projected: bool, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One layer's recurrence for training (``recurrence.Recurrence``), chains in tiles of ``LANES``.

    ``projected``: ``inputs`` is gx [N, n, G*H] = x W_ih^T (without bias) and w_t is W_hh^T [H, G*H]; else
    ``inputs`` is x [N, n, F] itself and w_t [F + H, G*H] holds W_ih^T then W_hh^T. b_ih, b_hh [G*H];
    start [N] int64 (chain i's first real step). All C-contiguous float32 but start. Returns (outputs [N, n,
    H], aux), aux being what ``recurrence_backward`` reads, in lanes.
    """
    N, n, width = inputs.shape
    GH = w_t.shape[1]
    F = 0 if projected else width
    H = w_t.shape[0] - F
    if GH != b_ih.shape[0] or (projected and width != GH):
        raise ValueError(f"inputs {list(inputs.shape)} do not fit weights {list(w_t.shape)}")
    hs = np.empty((N, n, H), np.float32)
    aux = np.empty((-(-N // LANES), n, AUX[cell] * H, LANES), np.float32)
    _check(_loaded().drnn_recurrence_forward(inputs.ctypes.data, N, n, F, H, cell, w_t.ctypes.data, b_ih.ctypes.data,
                                             b_hh.ctypes.data, start.ctypes.data, hs.ctypes.data, aux.ctypes.data,
                                             threads))
    return hs, aux


def recurrence_backward(dout: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, aux: np.ndarray, cell: int,
                        start: np.ndarray, x: np.ndarray | None = None, input_grad: bool = False,
                        threads: int = 1) -> dict:
    """The backward pass through time of ``recurrence_forward``, from dout [N, n, H] (the outputs' gradient).

    w_ih [G*H, F], w_hh [G*H, H] as PyTorch keeps them; ``x`` [N, n, F]: the input, when the forward pass
    projected it itself. Returns a dict of arrays: ``gates_x`` and ``gates_h`` [N, n, G*H], the gradients of
    the input's and the state's gate sums (one array but for a GRU); ``b_ih``, ``b_hh`` [G*H]; with ``x``
    also ``w_ih`` [G*H, F] and, if ``input_grad``, ``x`` [N, n, F].
    """
    N, n, H = dout.shape
    GH = w_hh.shape[0]
    F = 0 if x is None else x.shape[2]
    tiles = aux.shape[0]
    dgx = np.empty((N, n, GH), np.float32)
    dgh = np.empty_like(dgx) if cell == 2 else dgx
    sums = np.empty((tiles, 2, GH, LANES), np.float32)
    dw_ih = np.empty((tiles, F, GH, LANES), np.float32) if F else None
    dx = np.empty((N, n, F), np.float32) if F and input_grad else None
    address = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    _check(_loaded().drnn_recurrence_backward(dout.ctypes.data, N, n, F, H, cell, address(x), w_ih.ctypes.data,
                                              w_hh.ctypes.data, aux.ctypes.data, start.ctypes.data, dgx.ctypes.data,
                                              dgh.ctypes.data, address(dx), sums.ctypes.data, address(dw_ih),
                                              threads))
    bias = sums.sum((0, 3))
    grads = {"gates_x": dgx, "gates_h": dgh, "b_ih": bias[0], "b_hh": bias[1 if cell == 2 else 0].copy()}
    if F:
        grads["w_ih"] = dw_ih.sum((0, 3)).T.copy()
    if dx is not None:
        grads["x"] = dx
    return grads


def _loaded():
    lib = _load()
    if not lib:
        raise RuntimeError("the native kernels are not available on this machine")
    return lib


def _check(code: int) -> None:
    """A kernel's return code: 0, or -1 when it could not allocate its buffers."""
    if code:
        raise MemoryError("the native kernels could not allocate their buffers")
