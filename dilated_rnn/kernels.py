"""Fused CPU recurrences: compiled loops instead of a PyTorch op per step.

PyTorch's CPU ``nn.GRU`` and ``nn.RNN`` run a generic per-step loop, and their
backward pass builds and walks an autograd node for every small op of every
step. At 20 units and batch 128 that overhead, not arithmetic, is the cost.
Here the whole recurrence of a layer (forward or backward through time) is one
compiled call: ``native.py``'s, eight chains at a time in the vector lanes,
where the CPU (AVX2) and a C compiler allow, else a Numba function with the
chains (independent) in parallel rows; both on PyTorch's thread count. Matrix
products over all steps at once (the input projection, the weight gradients)
stay PyTorch GEMMs, so autograd sees a layer as

    gates_x = x @ W_ih^T             (PyTorch; in the native kernel for a narrow x)
    h       = recurrence(gates_x + b_ih, W_hh, b_hh)   (this module, custom backward)

Inference (no autograd) goes further: ``stack_outputs`` runs the whole pruned
stack, every layer and its input projections, in one compiled call with rows
in parallel, which is what makes batch-1 latency a fraction of a millisecond;
where the CPU (AVX2) and a C compiler allow, ``native.py``'s kernels run it
instead, eight rows at a time in the vector lanes.

tanh and the logistic use a rational approximation (|error| < 3e-7, the one
Eigen uses) that the compiler can vectorise; everything else is the cells'
equations as ``reference.py`` writes them, in PyTorch's gate order. The fast
path is float32 on the CPU only; ``run_layer`` falls back to the PyTorch module
everywhere else, and ``tests/test_kernels.py`` checks the two agree in outputs
and every gradient. Set ``DRNN_FUSED=0`` to turn it off.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch
from torch import nn

from . import native
from .cells import CELL_NAMES

try:  # an optional accelerator: without Numba every layer runs PyTorch's module
    import numba
    from numba import njit, prange

    if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
        # OpenMP first: Numba would otherwise take TBB whenever another package (OpenVINO) has loaded
        # libtbb into the process, and TBB's pool does not survive the forks of data loaders and tests.
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
except ImportError:  # pragma: no cover - exercised only where Numba is missing
    numba = None

# Approximate-math flags that keep NaN and inf propagating (no "nnan"/"ninf"),
# so a diverging run still shows a NaN loss.
_FLAGS = {"contract", "afn", "arcp", "reassoc"}


def enabled() -> bool:
    return numba is not None and os.environ.get("DRNN_FUSED", "1") != "0"


def supports(x: torch.Tensor, cell: str) -> bool:
    if not (x.is_cpu and x.dtype == torch.float32 and cell in CELL_NAMES and enabled()):
        return False
    # Tracing (ONNX export) must see PyTorch's RNN modules, which map to native ONNX ops.
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def run_layer(layer: nn.RNNBase, x: torch.Tensor, cell: str, start: torch.Tensor | None = None) -> torch.Tensor:
    """One recurrent layer from a zero state: [N, n, F] -> outputs [N, n, H].

    ``start`` [N] (fused path only): row i's steps before start[i] are padding, skipped with zero outputs.
    """
    if not supports(x, cell):
        if start is not None:
            raise ValueError("per-row start steps need the fused CPU kernels")
        return layer(x)[0]
    start = np.zeros(len(x), np.int64) if start is None else start.to(torch.int64).contiguous().numpy()
    return _Recurrence.apply(x, layer.weight_ih_l0, layer.bias_ih_l0, layer.weight_hh_l0, layer.bias_hh_l0, cell,
                             start)


def stack_outputs(rnn, x: torch.Tensor, T: int, steps: tuple[int, ...]) -> torch.Tensor:
    """Inference: the whole pruned stack in one compiled call, rows in parallel.

    ``rnn`` is a ``DilatedRNN``, ``x`` [B, T, F]; ``steps`` the steps whose top-layer outputs are wanted.
    Returns them, [B, len(steps), H_top], as ``DilatedRNN.outputs_at`` does. There is no autograd, so
    callers use it only under ``torch.no_grad`` / ``inference_mode``. One call instead of a few
    PyTorch ops per layer is what makes batch-1 latency small; a frozen stack (``freeze``) also keeps
    its native kernel per (T, steps).
    """
    return torch.from_numpy(stack_arrays(rnn, x.detach().contiguous().numpy(), T, steps))


def stack_arrays(rnn, x: np.ndarray, T: int, steps: tuple[int, ...]) -> np.ndarray:
    """``stack_outputs`` on NumPy arrays: x [B, T, F] float32, C-contiguous -> [B, len(steps), H_top]."""
    packed = rnn._cached(("packed", T, steps), lambda: pack_plan(rnn, rnn._plan(T, steps)))
    out = np.empty((x.shape[0], len(packed[-1]), rnn.hidden_sizes[-1]), np.float32)
    frozen = getattr(rnn, "_frozen_weights", None)
    weights = pack_weights(rnn) if frozen is None else frozen
    if native.available():  # rows in vector lanes (native.py)
        if frozen is None:
            kernel = native.StackKernel(weights, *packed)
        else:
            kernel = rnn._cached(("native", T, steps), lambda: native.StackKernel(weights, *packed))
        kernel.run(x, out, threads=torch.get_num_threads())
    else:
        _use_torch_threads()
        _stack_forward(x, weights, *packed, out)
    return out


def freeze(rnn):
    """Pack ``rnn``'s weights once for ``stack_outputs``, which then skips packing (a fraction of a batch-1
    call): for a model that no longer changes, such as the copy a deployment backend owns. Returns ``rnn``."""
    rnn._frozen_weights = pack_weights(rnn)
    rnn._index_cache = {k: v for k, v in rnn._index_cache.items() if k[0] != "native"}  # bound to the old weights
    return rnn


def stream_stack(rnn, x: torch.Tensor, registers: torch.Tensor, weights: np.ndarray | None = None):
    """Streaming (``streaming.py``): the stack over a chunk x [B, n, F] from its shift registers [B, M].

    Returns the top-layer outputs [B, n, H_top] and the registers after the chunk, as new tensors.
    ``weights``: ``pack_weights(rnn)`` made earlier by a caller that streams a fixed model; None packs
    the current weights. No autograd: callers use it under ``torch.no_grad`` / ``inference_mode``.
    """
    packed = pack_weights(rnn) if weights is None else weights
    out, state = stream_arrays(x.detach().numpy(), packed, rnn.cell, stream_sizes(rnn), registers.detach().numpy())
    return torch.from_numpy(out), torch.from_numpy(state)


def stream_sizes(rnn) -> np.ndarray:
    """(F, H, d) per layer, as ``stream_arrays`` reads them."""
    return rnn._cached(("stream-sizes",), lambda: np.array(
        [(layer.input_size, layer.hidden_size, d) for layer, d in zip(rnn.layers, rnn.dilations)], np.int64))


def stream_arrays(x: np.ndarray, weights: np.ndarray, cell: str, sizes: np.ndarray, registers: np.ndarray):
    """``stream_stack`` on NumPy arrays (float32): (top outputs [B, n, H_top], new registers [B, M])."""
    if native.available():  # rows one at a time, vectors across units (native.py)
        return native.stream(x, weights, CELL_CODES[cell], sizes, registers, threads=torch.get_num_threads())
    _use_torch_threads()
    state = np.array(registers, dtype=np.float32, order="C")  # a copy: the caller's state is left as it was
    out = np.empty((x.shape[0], x.shape[1], sizes[-1, 1]), np.float32)
    _stream_forward(np.ascontiguousarray(x, dtype=np.float32), weights, CELL_CODES[cell], sizes, state, out)
    return out, state


def pack_plan(rnn, plan) -> tuple:
    """A plan and the stack's shape as the flat arrays ``_stack_forward`` reads.

    The result is (cell code, sizes [L, 4] = (F, H, R, n) per layer, gather,
    readout). It depends only on the model and the plan, so callers cache it.
    """
    sizes = np.array([(layer.input_size, layer.hidden_size, len(lp.residues), lp.length)
                      for layer, lp in zip(rnn.layers, plan.layers)], np.int64)
    gather = np.concatenate([np.asarray(lp.gather, np.int64) for lp in plan.layers])
    return CELL_CODES[rnn.cell], sizes, gather, np.asarray(plan.readout, np.int64)


def pack_weights(rnn) -> np.ndarray:
    """All layers' weights in one flat array, packed afresh on every call (a new array).

    Per layer: W_ih^T [F, G*H], W_hh^T [H, G*H], b_ih, b_hh (the order
    ``_stack_forward`` reads). Packing reads NumPy views that share the
    parameters' memory, so it always sees the current values, however they were
    updated (optimizer steps, fused optimizers, ``.data`` writes); the views are
    rebuilt only when a parameter's storage moves.
    """
    params = list(rnn.layers.parameters())  # per layer: weight_ih, weight_hh, bias_ih, bias_hh
    key = tuple(p.data_ptr() for p in params)
    cached = getattr(rnn, "_weight_views", None)
    if cached is None or cached[0] != key:
        cached = (key, [p.detach().numpy() for p in params])
        rnn._weight_views = cached
    return np.concatenate([v.T.ravel() if v.ndim == 2 else v for v in cached[1]])


PROJECT_WITHIN = 4  # inputs of at most this many channels are projected inside the native recurrence
# What a profile of a training step (bench.bench_profile) calls the recurrences' kernels, forward and backward.
PROFILE_FORWARD, PROFILE_BACKWARD = "drnn::recurrence_forward", "drnn::recurrence_backward"


def projects_inside(F: int) -> bool:
    """Whether a training recurrence takes its input of F channels itself (the native kernel projects it)."""
    return native.available() and F <= PROJECT_WITHIN


class _Recurrence(torch.autograd.Function):
    """A layer, h = recurrence(x W_ih^T + b_ih, W_hh, b_hh), with its backward pass through time fused too.

    ``start`` [N]: row i begins (zero state) at step start[i]; its earlier steps are padding, output
    zero and pass no gradient. The input projection and the weight gradients over all steps are
    matrix products (PyTorch's), but for a narrow input (at most ``PROJECT_WITHIN`` channels: a pixel,
    a few sensors), which the native kernel projects itself; the biases' gradients are its sums too.
    """

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, cell, start):
        N, n, F = x.shape
        ctx.native = native.available()  # chains in vector lanes (native.py), else Numba's rows
        ctx.projected = not projects_inside(F)  # x W_ih^T made here, a matrix product
        x = x.detach().contiguous()
        if ctx.projected:
            inputs = (x.reshape(-1, F) @ w_ih.detach().T).reshape(N, n, -1)
            w_t = w_hh.detach().T
        else:
            inputs, w_t = x, torch.cat([w_ih.detach().T, w_hh.detach().T])
        w_t = np.ascontiguousarray(w_t.numpy())
        if ctx.native:
            with torch.profiler.record_function(PROFILE_FORWARD):
                h, aux = native.recurrence_forward(inputs.numpy(), w_t, b_ih.detach().numpy(), b_hh.detach().numpy(),
                                                   CELL_CODES[cell], start, ctx.projected,
                                                   threads=torch.get_num_threads())
        else:
            _use_torch_threads()
            H = w_hh.shape[1]
            h = np.empty((N, n, H), np.float32)
            aux = np.empty((_AUX[cell], N, n, H), np.float32)  # what the backward pass needs
            gx = (inputs + b_ih.detach()).numpy()
            with torch.profiler.record_function(PROFILE_FORWARD):
                _FORWARD[cell](gx, w_t, b_hh.detach().numpy(), h, aux, start)
        h = torch.from_numpy(h)
        ctx.cell, ctx.start = cell, start
        ctx.save_for_backward(x, w_ih, w_hh, h, torch.from_numpy(aux))
        return h

    @staticmethod
    def backward(ctx, grad_h):
        x, w_ih, w_hh, h, aux = ctx.saved_tensors
        N, n, H = h.shape
        dout = grad_h.contiguous().numpy()
        if ctx.native:
            with torch.profiler.record_function(PROFILE_BACKWARD):
                grads = native.recurrence_backward(
                    dout, w_ih.detach().contiguous().numpy(), w_hh.detach().contiguous().numpy(), aux.numpy(),
                    CELL_CODES[ctx.cell], ctx.start, x=None if ctx.projected else x.numpy(),
                    input_grad=ctx.needs_input_grad[0], threads=torch.get_num_threads())
            grads = {k: torch.from_numpy(v) for k, v in grads.items()}
        else:
            _use_torch_threads()
            d_gates = np.empty((N, n, w_hh.shape[0]), np.float32)  # gradient w.r.t. gates_x
            d_gates_h = np.empty_like(d_gates) if ctx.cell == "gru" else d_gates  # w.r.t. h @ W_hh^T + b_hh
            w_hh_t = np.ascontiguousarray(w_hh.detach().numpy().T)
            with torch.profiler.record_function(PROFILE_BACKWARD):
                _BACKWARD[ctx.cell](dout, w_hh_t, h.numpy(), aux.numpy(), d_gates, d_gates_h, ctx.start)
            grads = {"gates_x": torch.from_numpy(d_gates), "gates_h": torch.from_numpy(d_gates_h)}
            grads["b_ih"] = grads["gates_x"].sum((0, 1))
            grads["b_hh"] = grads["gates_h"].sum((0, 1)) if ctx.cell == "gru" else grads["b_ih"].clone()
        d_gates_x = grads["gates_x"].reshape(N * n, -1)
        if ctx.projected:
            grads["w_ih"] = d_gates_x.T @ x.reshape(N * n, -1)
            if ctx.needs_input_grad[0]:
                grads["x"] = (d_gates_x @ w_ih.detach()).reshape(x.shape)
        grad_w_hh = _state_weight_grad(grads["gates_h"], h)
        # Every gradient its own tensor: autograd may keep one as a parameter's .grad and add into it in place.
        return grads.get("x"), grads["w_ih"], grads["b_ih"], grad_w_hh, grads["b_hh"], None, None


def _state_weight_grad(d_gates_h: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """W_hh's gradient, sum over chains i and steps t of d_gates_h[i, t]^T h[i, t - 1] (a chain's first step
    read the zero state), as one product of the rows flattened, each step against the row before it: the
    pairs that straddle two chains (a chain's first step against the last of the chain before) are made
    zero by zeroing those first steps' gradients, in place (the caller is done with them), instead of
    copying the outputs shifted by a step."""
    N, n, H = h.shape
    if n < 2:
        return d_gates_h.new_zeros(d_gates_h.shape[2], H)
    d_gates_h[:, 0] = 0
    flat = d_gates_h.reshape(N * n, -1)
    return flat[1:].T @ h.reshape(N * n, H)[:-1]


_threads = threading.local()  # what this thread last gave Numba (its setting is per thread); setting it
# costs microseconds, a large share of a streamed sample's budget


def _use_torch_threads() -> None:
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if getattr(_threads, "count", None) != wanted:
        numba.set_num_threads(wanted)
        _threads.count = wanted


if numba is not None:

    @njit(inline="always", fastmath=_FLAGS)
    def _tanh(x):
        # Rational minimax approximation on [-7.9053, 7.9053] (Eigen's fast float tanh); beyond it
        # tanh rounds to +-1 in float32. min/max keep NaN (Python semantics).
        x = max(min(x, np.float32(7.90531110763549805)), np.float32(-7.90531110763549805))
        x2 = x * x
        p = np.float32(-2.76076847742355e-16)
        p = p * x2 + np.float32(2.00018790482477e-13)
        p = p * x2 + np.float32(-8.60467152213735e-11)
        p = p * x2 + np.float32(5.12229709037114e-08)
        p = p * x2 + np.float32(1.48572235717979e-05)
        p = p * x2 + np.float32(6.37261928875436e-04)
        p = p * x2 + np.float32(4.89352455891786e-03)
        q = np.float32(1.19825839466702e-06)
        q = q * x2 + np.float32(1.18534705686654e-04)
        q = q * x2 + np.float32(2.26843463243900e-03)
        q = q * x2 + np.float32(4.89352518554385e-03)
        return x * p / q

    @njit(inline="always", fastmath=_FLAGS)
    def _sigmoid(x):
        return np.float32(0.5) * _tanh(np.float32(0.5) * x) + np.float32(0.5)

    @njit(inline="always", fastmath=_FLAGS)
    def _lstm_unit(a_i, a_f, a_g, a_o, c):
        """One LSTM unit from its four gate pre-activations: (i, f, g, o, new c, tanh(new c))."""
        i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), _tanh(a_g), _sigmoid(a_o)
        c = f * c + i * g
        return i, f, g, o, c, _tanh(c)

    @njit(inline="always", fastmath=_FLAGS)
    def _gru_unit(a_r, a_z, x_n, h_n, h):
        """One GRU unit: (r, z, n, new h), n = tanh(x_n + r * h_n), h_n = (h W_hn^T + b_hn) for the unit."""
        r, z = _sigmoid(a_r), _sigmoid(a_z)
        n = _tanh(x_n + r * h_n)
        return r, z, n, n + z * (h - n)

    @njit(inline="always", fastmath=_FLAGS)
    def _recurrent_gates(gh, h, w_hh_t, b_hh):
        """gh = h @ W_hh^T + b_hh for one row."""
        for j in range(gh.shape[0]):
            gh[j] = b_hh[j]
        for k in range(h.shape[0]):
            hk = h[k]
            for j in range(gh.shape[0]):
                gh[j] += hk * w_hh_t[k, j]

    @njit(inline="always", fastmath=_FLAGS)
    def _back_to_state(dh, dg, w_hh_t):
        """dh += dg @ W_hh for one row: a dot product over the gates per state unit."""
        for k in range(dh.shape[0]):
            s = np.float32(0)
            for j in range(dg.shape[0]):
                s += dg[j] * w_hh_t[k, j]
            dh[k] += s

    @njit(inline="always")
    def _layer_weights(weights, off, F, H, G):
        """One layer's W_ih^T [F, G*H], W_hh^T [H, G*H], b_ih, b_hh in ``pack_weights``'s flat array from
        offset ``off``, and the offset of the next layer."""
        GH = G * H
        w_ih = weights[off : off + F * GH].reshape(F, GH)
        w_hh = weights[off + F * GH : off + (F + H) * GH].reshape(H, GH)
        b_ih = weights[off + (F + H) * GH : off + (F + H + 1) * GH]
        b_hh = weights[off + (F + H + 1) * GH : off + (F + H + 2) * GH]
        return w_ih, w_hh, b_ih, b_hh, off + (F + H + 2) * GH

    @njit(inline="always", fastmath=_FLAGS)
    def _cell_update(cell, gi, gh, h, c):
        """One inference step of a cell in place: h (and an LSTM's c) from the input part gi = x W_ih^T + b_ih
        and the recurrent part gh = h W_hh^T + b_hh of the gate pre-activations (cell codes as CELL_CODES)."""
        H = h.shape[0]
        if cell == 0:
            for j in range(H):
                h[j] = _tanh(gi[j] + gh[j])
        elif cell == 1:
            for j in range(H):
                _, _, _, o, c[j], tc = _lstm_unit(gi[j] + gh[j], gi[H + j] + gh[H + j], gi[2 * H + j] + gh[2 * H + j],
                                                  gi[3 * H + j] + gh[3 * H + j], c[j])
                h[j] = o * tc
        else:
            for j in range(H):
                _, _, _, h[j] = _gru_unit(gi[j] + gh[j], gi[H + j] + gh[H + j], gi[2 * H + j], gh[2 * H + j], h[j])

    # ---- vanilla RNN: h_t = tanh(gx_t + h_{t-1} W_hh^T + b_hh); aux: nothing
    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _rnn_forward(gx, w_hh_t, b_hh, hs, aux, start):
        N, n, H = hs.shape
        for b in prange(N):
            gh = np.empty(H, np.float32)
            h = np.zeros(H, np.float32)
            hs[b, : start[b]] = 0
            for t in range(start[b], n):
                _recurrent_gates(gh, h, w_hh_t, b_hh)
                for j in range(H):
                    h[j] = _tanh(gx[b, t, j] + gh[j])
                    hs[b, t, j] = h[j]

    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _rnn_backward(dout, w_hh_t, hs, aux, dgx, dgh, start):
        N, n, H = hs.shape
        for b in prange(N):
            dh = np.zeros(H, np.float32)
            dgx[b, : start[b]] = 0
            for t in range(n - 1, start[b] - 1, -1):
                for j in range(H):
                    h = hs[b, t, j]
                    dgx[b, t, j] = (dout[b, t, j] + dh[j]) * (np.float32(1) - h * h)
                    dh[j] = 0
                _back_to_state(dh, dgx[b, t], w_hh_t)

    # ---- LSTM, gates i, f, g, o: c_t = f c + i g, h_t = o tanh(c_t); aux: i, f, g, o, c, tanh(c)
    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _lstm_forward(gx, w_hh_t, b_hh, hs, aux, start):
        N, n, H = hs.shape
        for b in prange(N):
            gh = np.empty(4 * H, np.float32)
            h = np.zeros(H, np.float32)
            c = np.zeros(H, np.float32)
            hs[b, : start[b]] = 0
            aux[:, b, : start[b]] = 0  # c = 0 before the first real step, which the backward pass reads
            for t in range(start[b], n):
                _recurrent_gates(gh, h, w_hh_t, b_hh)
                for j in range(H):
                    i, f, g, o, c[j], tc = _lstm_unit(gx[b, t, j] + gh[j], gx[b, t, H + j] + gh[H + j],
                                                      gx[b, t, 2 * H + j] + gh[2 * H + j],
                                                      gx[b, t, 3 * H + j] + gh[3 * H + j], c[j])
                    h[j] = o * tc
                    hs[b, t, j] = h[j]
                    aux[0, b, t, j] = i
                    aux[1, b, t, j] = f
                    aux[2, b, t, j] = g
                    aux[3, b, t, j] = o
                    aux[4, b, t, j] = c[j]
                    aux[5, b, t, j] = tc

    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _lstm_backward(dout, w_hh_t, hs, aux, dgx, dgh, start):
        N, n, H = hs.shape
        one = np.float32(1)
        for b in prange(N):
            dh = np.zeros(H, np.float32)
            dc = np.zeros(H, np.float32)
            dgx[b, : start[b]] = 0
            for t in range(n - 1, start[b] - 1, -1):
                for j in range(H):
                    i, f, g, o = aux[0, b, t, j], aux[1, b, t, j], aux[2, b, t, j], aux[3, b, t, j]
                    tc = aux[5, b, t, j]
                    c_prev = aux[4, b, t - 1, j] if t > 0 else np.float32(0)
                    d = dout[b, t, j] + dh[j]
                    dct = dc[j] + d * o * (one - tc * tc)
                    dgx[b, t, j] = dct * g * i * (one - i)
                    dgx[b, t, H + j] = dct * c_prev * f * (one - f)
                    dgx[b, t, 2 * H + j] = dct * i * (one - g * g)
                    dgx[b, t, 3 * H + j] = d * tc * o * (one - o)
                    dc[j] = dct * f
                    dh[j] = 0
                _back_to_state(dh, dgx[b, t], w_hh_t)

    # ---- GRU, gates r, z, n: n_t = tanh(gx_n + r (h W_hn^T + b_hn)), h_t = n + z (h_{t-1} - n)
    # aux: r, z, n, (h W_hn^T + b_hn)
    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _gru_forward(gx, w_hh_t, b_hh, hs, aux, start):
        N, n, H = hs.shape
        for b in prange(N):
            gh = np.empty(3 * H, np.float32)
            h = np.zeros(H, np.float32)
            hs[b, : start[b]] = 0
            aux[:, b, : start[b]] = 0
            for t in range(start[b], n):
                _recurrent_gates(gh, h, w_hh_t, b_hh)
                for j in range(H):
                    r, z, nn_, h[j] = _gru_unit(gx[b, t, j] + gh[j], gx[b, t, H + j] + gh[H + j],
                                                gx[b, t, 2 * H + j], gh[2 * H + j], h[j])
                    hs[b, t, j] = h[j]
                    aux[0, b, t, j] = r
                    aux[1, b, t, j] = z
                    aux[2, b, t, j] = nn_
                    aux[3, b, t, j] = gh[2 * H + j]

    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _gru_backward(dout, w_hh_t, hs, aux, dgx, dgh, start):
        N, n, H = hs.shape
        one = np.float32(1)
        for b in prange(N):
            dh = np.zeros(H, np.float32)
            dgx[b, : start[b]] = 0
            dgh[b, : start[b]] = 0
            for t in range(n - 1, start[b] - 1, -1):
                for j in range(H):
                    r, z, nn_, ghn = aux[0, b, t, j], aux[1, b, t, j], aux[2, b, t, j], aux[3, b, t, j]
                    h_prev = hs[b, t - 1, j] if t > 0 else np.float32(0)
                    d = dout[b, t, j] + dh[j]
                    dn = d * (one - z) * (one - nn_ * nn_)
                    dr = dn * ghn * r * (one - r)
                    dz = d * (h_prev - nn_) * z * (one - z)
                    dgx[b, t, j] = dr
                    dgx[b, t, H + j] = dz
                    dgx[b, t, 2 * H + j] = dn
                    dgh[b, t, j] = dr
                    dgh[b, t, H + j] = dz
                    dgh[b, t, 2 * H + j] = dn * r
                    dh[j] = d * z
                _back_to_state(dh, dgh[b, t], w_hh_t)

    # ---- inference over the whole pruned stack (see stack_outputs); cell codes 0 rnn, 1 lstm, 2 gru
    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _stack_forward(x, weights, cell, sizes, gather, readout, out):
        B, T, F0 = x.shape
        L = sizes.shape[0]
        G = 1 if cell == 0 else (4 if cell == 1 else 3)
        longest = T * F0
        for l in range(L):
            longest = max(longest, sizes[l, 1] * sizes[l, 2] * sizes[l, 3])
        for b in prange(B):
            below = np.empty(longest, np.float32)  # the layer below's outputs, row-major [rows, F]
            above = np.empty(longest, np.float32)
            below[: T * F0] = x[b].reshape(-1)
            rows_below = T
            w_off = 0
            g_off = 0
            for l in range(L):
                F, H, R, n = sizes[l, 0], sizes[l, 1], sizes[l, 2], sizes[l, 3]
                GH = G * H
                w_ih, w_hh, b_ih, b_hh, w_off = _layer_weights(weights, w_off, F, H, G)
                # Input projections of every step first: independent work, off the recurrence's critical path.
                gx = np.empty((R * n, GH), np.float32)
                for p in range(R * n):
                    src = gather[g_off + p]
                    for j in range(GH):
                        gx[p, j] = b_ih[j]
                    if src < rows_below:  # else a padded step: zero input
                        for f in range(F):
                            v = below[src * F + f]
                            for j in range(GH):
                                gx[p, j] += v * w_ih[f, j]
                gh = np.empty(GH, np.float32)
                h = np.empty(H, np.float32)
                c = np.empty(H, np.float32)
                for r in range(R):
                    h[:] = 0
                    c[:] = 0
                    for k in range(n):
                        _recurrent_gates(gh, h, w_hh, b_hh)
                        _cell_update(cell, gx[r * n + k], gh, h, c)
                        base = (r * n + k) * H
                        for j in range(H):
                            above[base + j] = h[j]
                g_off += R * n
                rows_below = R * n
                below, above = above, below
            H = sizes[L - 1, 1]
            for i in range(readout.shape[0]):
                for j in range(H):
                    out[b, i, j] = below[readout[i] * H + j]

    # ---- streaming: every layer, one step at a time, on shift registers (see stream_stack)
    @njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
    def _stream_forward(x, weights, cell, sizes, state, out):
        B, n, _ = x.shape
        L = sizes.shape[0]
        G = 1 if cell == 0 else (4 if cell == 1 else 3)
        pair = 2 if cell == 1 else 1  # an LSTM's register entry is (h, c)
        widest, longest = 0, 0
        for l in range(L):
            widest = max(widest, G * sizes[l, 1])
            longest = max(longest, sizes[l, 2] * pair * sizes[l, 1])
        for b in prange(B):
            gi = np.empty(widest, np.float32)
            gh = np.empty(widest, np.float32)
            spare = np.empty(longest, np.float32)
            # Within the chunk a register is a ring: step k reads and overwrites entry k mod d, which holds
            # the state of step k - d (entry j starts as the state d - j steps before the chunk).
            for k in range(n):
                below = x[b, k]
                w_off, s_off = 0, 0
                for l in range(L):
                    F, H, d = sizes[l, 0], sizes[l, 1], sizes[l, 2]
                    GH = G * H
                    w_ih, w_hh, b_ih, b_hh, w_off = _layer_weights(weights, w_off, F, H, G)
                    slot = s_off + (k % d) * pair * H
                    h = state[b, slot : slot + H]
                    _recurrent_gates(gi[:GH], below, w_ih, b_ih)
                    _recurrent_gates(gh[:GH], h, w_hh, b_hh)
                    c = state[b, slot + H : slot + 2 * H] if cell == 1 else h  # an LSTM's cell state
                    _cell_update(cell, gi, gh, h, c)
                    below = h
                    s_off += d * pair * H
                for j in range(below.shape[0]):
                    out[b, k, j] = below[j]
            # Back to shift-register order, oldest first: entry j is ring entry (n + j) mod d, a rotation
            # of the register by m = n mod d entries: two block copies.
            s_off = 0
            for l in range(L):
                size, m = sizes[l, 2] * pair * sizes[l, 1], (n % sizes[l, 2]) * pair * sizes[l, 1]
                if m:
                    spare[:size] = state[b, s_off : s_off + size]
                    state[b, s_off : s_off + size - m] = spare[m:size]
                    state[b, s_off + size - m : s_off + size] = spare[:m]
                s_off += size

    _FORWARD = {"rnn": _rnn_forward, "lstm": _lstm_forward, "gru": _gru_forward}
    _BACKWARD = {"rnn": _rnn_backward, "lstm": _lstm_backward, "gru": _gru_backward}

_AUX = {"rnn": 0, "lstm": 6, "gru": 4}
CELL_CODES = {"rnn": 0, "lstm": 1, "gru": 2}  # what _stack_forward branches on
