"""Numba kernels: each recurrence (forward and backward through time), the pruned stack's inference and
streaming, one compiled loop each, the chains (independent) in parallel rows on PyTorch's thread count.

tanh and the logistic use a rational approximation (|error| < 3e-7, the one
Eigen uses) that the compiler can vectorise; everything else is the cells'
equations as ``model/cells.py`` writes them, in PyTorch's gate order. The engine
(``recurrence.py``, ``stack.py``) calls these where the native kernels cannot
run; ``tests/engine`` checks both against the per-step reference.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import torch
from numba import njit, prange

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    # OpenMP first: Numba would otherwise take TBB whenever another package (OpenVINO) has loaded
    # libtbb into the process, and TBB's pool does not survive the forks of data loaders and tests.
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

# Approximate-math flags that keep NaN and inf propagating (no "nnan"/"ninf"),
# so a diverging run still shows a NaN loss.
_FLAGS = {"contract", "afn", "arcp", "reassoc"}

_threads = threading.local()  # what this thread last gave Numba (its setting is per thread); setting it
# costs microseconds, a large share of a streamed sample's budget


def use_torch_threads() -> None:
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if getattr(_threads, "count", None) != wanted:
        numba.set_num_threads(wanted)
        _threads.count = wanted


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
    """One layer's W_ih^T [F, G*H], W_hh^T [H, G*H], b_ih, b_hh in ``stack.pack_weights``'s flat array from
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

# ---- inference over the whole pruned stack (stack.stack_arrays); cell codes 0 rnn, 1 lstm, 2 gru
@njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
def stack_forward(x, weights, cell, sizes, gather, readout, out):
    """x [B, T, F0] through the pruned stack; readout [read, steps]: the rows of the requested steps in each of the
    top ``read`` layers; out [B, steps, sum of their H], concatenated bottom first."""
    B, T, F0 = x.shape
    L = sizes.shape[0]
    first_read = L - readout.shape[0]
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
        out_off = 0
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
            if l >= first_read:  # this layer's outputs at the readout's steps, beside the layers read below
                for i in range(readout.shape[1]):
                    for j in range(H):
                        out[b, i, out_off + j] = above[readout[l - first_read, i] * H + j]
                out_off += H
            g_off += R * n
            rows_below = R * n
            below, above = above, below

# ---- streaming: every layer, one step at a time, on shift registers (stack.stream_arrays)
@njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
def stream_forward(x, weights, cell, sizes, state, out, read_layers=False):
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
            w_off, s_off, r_off = 0, 0, 0
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
                if read_layers:  # every layer's output, bottom first
                    for j in range(H):
                        out[b, k, r_off + j] = h[j]
                    r_off += H
            if not read_layers:
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

FORWARD = {"rnn": _rnn_forward, "lstm": _lstm_forward, "gru": _gru_forward}
BACKWARD = {"rnn": _rnn_backward, "lstm": _lstm_backward, "gru": _gru_backward}

AUX = {"rnn": 0, "lstm": 6, "gru": 4}
CELL_CODES = {"rnn": 0, "lstm": 1, "gru": 2}  # what the kernels (Numba and native) branch on
