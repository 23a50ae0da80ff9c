"""A recurrent layer for training on the compiled kernels: one call forward, one backward through time.

PyTorch's CPU ``nn.GRU`` and ``nn.RNN`` run a generic per-step loop, and their
backward pass builds and walks an autograd node for every small op of every
step. At 20 units and batch 128 that overhead, not arithmetic, is the cost.
Here the whole recurrence of a layer (forward or backward through time) is one
compiled call: the native kernels' (``native.py``), eight chains at a time in
the vector lanes, or Numba's (``numba_kernels.py``), the chains in parallel
rows; both on PyTorch's thread count. Matrix products over all steps at once
(the input projection, the weight gradients) stay PyTorch GEMMs, so autograd
sees a layer as

    gates_x = x @ W_ih^T             (PyTorch; in the native kernel for a narrow x)
    h       = recurrence(gates_x + b_ih, W_hh, b_hh)   (``Recurrence``, custom backward)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import native
from . import numba_kernels as nk
from .dispatch import backend, runs


def run_layer(layer: nn.RNNBase, x: torch.Tensor, cell: str, start: torch.Tensor | None = None) -> torch.Tensor:
    """One recurrent layer from a zero state: [N, n, F] -> outputs [N, n, H], on the backend in force.

    ``start`` [N] (compiled backends only): row i's steps before start[i] are padding, skipped with zero outputs.
    """
    if not runs(x, cell):
        if start is not None:
            raise ValueError("per-row start steps need the compiled CPU kernels")
        return layer(x)[0]
    start = np.zeros(len(x), np.int64) if start is None else start.to(torch.int64).contiguous().numpy()
    return Recurrence.apply(x, layer.weight_ih_l0, layer.bias_ih_l0, layer.weight_hh_l0, layer.bias_hh_l0, cell, start)


PROJECT_WITHIN = 4  # inputs of at most this many channels are projected inside the native recurrence
# What a profile of a training step (bench.bench_profile) calls the recurrences' kernels, forward and backward.
PROFILE_FORWARD, PROFILE_BACKWARD = "drnn::recurrence_forward", "drnn::recurrence_backward"


def projects_inside(F: int) -> bool:
    """Whether a training recurrence takes its input of F channels itself (the native kernel projects it)."""
    return backend() == "native" and F <= PROJECT_WITHIN


class Recurrence(torch.autograd.Function):
    """A layer, h = recurrence(x W_ih^T + b_ih, W_hh, b_hh), with its backward pass through time fused too.

    ``start`` [N]: row i begins (zero state) at step start[i]; its earlier steps are padding, output
    zero and pass no gradient. The input projection and the weight gradients over all steps are
    matrix products (PyTorch's), but for a narrow input (at most ``PROJECT_WITHIN`` channels: a pixel,
    a few sensors), which the native kernel projects itself; the biases' gradients are its sums too.
    """

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, cell, start):
        N, n, F = x.shape
        ctx.native = backend() == "native"  # chains in vector lanes (native.py), else Numba's rows
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
                                                   nk.CELL_CODES[cell], start, ctx.projected,
                                                   threads=torch.get_num_threads())
        else:
            nk.use_torch_threads()
            H = w_hh.shape[1]
            h = np.empty((N, n, H), np.float32)
            aux = np.empty((nk.AUX[cell], N, n, H), np.float32)  # what the backward pass needs
            gx = (inputs + b_ih.detach()).numpy()
            with torch.profiler.record_function(PROFILE_FORWARD):
                nk.FORWARD[cell](gx, w_t, b_hh.detach().numpy(), h, aux, start)
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
                    nk.CELL_CODES[ctx.cell], ctx.start, x=None if ctx.projected else x.numpy(),
                    input_grad=ctx.needs_input_grad[0], threads=torch.get_num_threads())
            grads = {k: torch.from_numpy(v) for k, v in grads.items()}
        else:
            nk.use_torch_threads()
            d_gates = np.empty((N, n, w_hh.shape[0]), np.float32)  # gradient w.r.t. gates_x
            d_gates_h = np.empty_like(d_gates) if ctx.cell == "gru" else d_gates  # w.r.t. h @ W_hh^T + b_hh
            w_hh_t = np.ascontiguousarray(w_hh.detach().numpy().T)
            with torch.profiler.record_function(PROFILE_BACKWARD):
                nk.BACKWARD[ctx.cell](dout, w_hh_t, h.numpy(), aux.numpy(), d_gates, d_gates_h, ctx.start)
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
