"""Inference over a whole stack in one compiled call: the pruned plan, streaming, and what the engine keeps.

``stack_outputs`` runs the whole pruned stack, every layer and its input
projections, in one call with rows in parallel, which is what makes batch-1
latency a fraction of a millisecond; the native kernels (``native.py``) run it
eight rows at a time in the vector lanes, else Numba's. ``stream_registers``
advances the stack over a chunk from its shift registers (``model/streaming.py``).

What depends only on a model's shape and a plan (the packed plan arrays), its
packed weights when it is frozen, and the native kernels bound to them belong to
the engine, kept per model here (``_ModelState``), never in the model. The model
is read through its public attributes only: ``layers``, ``dilations``, ``cell``,
``hidden_sizes``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.pruning import plan_outputs
from . import native
from . import numba_kernels as nk
from .dispatch import backend


@dataclass
class _ModelState:
    plans: dict = field(default_factory=dict)  # (T, steps, every_layer) -> pack_plan's arrays
    views: tuple | None = None  # (parameter addresses, NumPy views of the parameters)
    frozen: np.ndarray | None = None  # packed weights of a model that no longer changes (``freeze``)
    kernels: dict = field(default_factory=dict)  # (T, steps, every_layer) -> native.StackKernel bound to ``frozen``


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(rnn) -> _ModelState:
    state = _STATES.get(rnn)
    if state is None:
        state = _STATES[rnn] = _ModelState()
    return state


def freeze(rnn):
    """Pack ``rnn``'s weights once for ``stack_outputs``, which then skips packing (a fraction of a batch-1
    call): for a model that no longer changes, such as the copy a deployment backend owns. Returns ``rnn``."""
    state = _state(rnn)
    state.frozen = pack_weights(rnn)
    state.kernels.clear()  # bound to the old weights
    return rnn


def stack_outputs(rnn, x: torch.Tensor, T: int, steps: tuple[int, ...], every_layer: bool = False) -> torch.Tensor:
    """Inference: the top-layer outputs of a ``DilatedRNN`` at ``steps``, [B, T, F] -> [B, len(steps), H_top]
    (``every_layer``: every layer's, concatenated bottom first), as ``DilatedRNN.outputs_at`` gives them, in one
    compiled call. No autograd: callers use it only under ``torch.no_grad`` / ``inference_mode``."""
    return torch.from_numpy(stack_arrays(rnn, x.detach().contiguous().numpy(), T, steps, every_layer))


def stack_arrays(rnn, x: np.ndarray, T: int, steps: tuple[int, ...], every_layer: bool = False) -> np.ndarray:
    """``stack_outputs`` on NumPy arrays: x [B, T, F] float32, C-contiguous -> [B, len(steps), H_top] (or the sum of
    every layer's H)."""
    state = _state(rnn)
    key = (T, steps, every_layer)
    packed = state.plans.get(key)
    if packed is None:
        packed = state.plans[key] = pack_plan(rnn, plan_outputs(T, rnn.dilations, steps), every_layer)
    width = sum(rnn.hidden_sizes) if every_layer else rnn.hidden_sizes[-1]
    out = np.empty((x.shape[0], len(steps), width), np.float32)
    weights = pack_weights(rnn) if state.frozen is None else state.frozen
    if backend() == "native":  # rows in vector lanes (native.py)
        if state.frozen is None:
            kernel = native.StackKernel(weights, *packed)
        else:
            kernel = state.kernels.get(key)
            if kernel is None:
                kernel = state.kernels[key] = native.StackKernel(weights, *packed)
        kernel.run(x, out, threads=torch.get_num_threads())
    else:
        nk.use_torch_threads()
        nk.stack_forward(x, weights, *packed, out)
    return out


def stream_registers(rnn, x: torch.Tensor, registers: torch.Tensor, weights: np.ndarray | None = None,
                     every_layer: bool = False):
    """Streaming: the stack over a chunk x [B, n, F] from its shift registers [B, M] (``model/streaming.py``).

    Returns the top-layer outputs [B, n, H_top] (``every_layer``: every layer's, concatenated bottom first
    [B, n, sum of H]) and the registers after the chunk, as new tensors. ``weights``: ``pack_weights(rnn)`` made
    earlier by a caller that streams a fixed model; None packs the current weights. No autograd: callers use it
    under ``torch.no_grad`` / ``inference_mode``.
    """
    packed = pack_weights(rnn) if weights is None else weights
    out, state = stream_arrays(x.detach().numpy(), packed, rnn.cell, stream_sizes(rnn), registers.detach().numpy(),
                               every_layer)
    return torch.from_numpy(out), torch.from_numpy(state)


def stream_sizes(rnn) -> np.ndarray:
    """(F, H, d) per layer, as ``stream_arrays`` reads them."""
    return np.array([(layer.input_size, layer.hidden_size, d) for layer, d in zip(rnn.layers, rnn.dilations)],
                    np.int64)


def stream_arrays(x: np.ndarray, weights: np.ndarray, cell: str, sizes: np.ndarray, registers: np.ndarray,
                  every_layer: bool = False):
    """``stream_registers`` on NumPy arrays (float32): (outputs [B, n, H_top or sum of H], new registers [B, M])."""
    if backend() == "native":  # rows one at a time, vectors across units (native.py)
        return native.stream(x, weights, nk.CELL_CODES[cell], sizes, registers, threads=torch.get_num_threads(),
                             every_layer=every_layer)
    nk.use_torch_threads()
    state = np.array(registers, dtype=np.float32, order="C")  # a copy: the caller's state is left as it was
    out = np.empty((x.shape[0], x.shape[1], sizes[:, 1].sum() if every_layer else sizes[-1, 1]), np.float32)
    nk.stream_forward(np.ascontiguousarray(x, dtype=np.float32), weights, nk.CELL_CODES[cell], sizes, state, out,
                      every_layer)
    return out, state


class ClassifierStream:
    """A classifier whose readout is its last step (d0 = 1): its top output, or every layer's (``layers``), frozen
    for streaming on the compiled backends: normalized samples [B, n, F] float32 (NumPy) and the state's arrays in,
    logits [B, n, K] and the new registers out. The weights are packed once; with the native kernels a chunk is one
    call from the samples to the logits (``native.StreamKernel``, with the head), else Numba's stack then the
    head's product."""

    def __init__(self, clf):
        rnn = clf.rnn
        self.cell = rnn.cell
        self.every_layer = clf.every_layer
        self.weights = pack_weights(rnn)
        self.sizes = stream_sizes(rnn)
        head_w = clf.head.weight.detach().numpy().astype(np.float32)
        self.head_t = np.ascontiguousarray(head_w.T)
        self.head_b = clf.head.bias.detach().numpy().astype(np.float32)
        self.kernel = (native.StreamKernel(self.weights, nk.CELL_CODES[self.cell], self.sizes, head_w, self.head_b,
                                           self.every_layer)
                       if backend() == "native" else None)

    def __call__(self, x: torch.Tensor, buffer: torch.Tensor, position: torch.Tensor):
        """x [B, n, F] float32 (C-contiguous), buffer [B, M] float32, position [B] int64 -> (logits [B, n, K],
        buffer after, position after)."""
        B, n, F = x.shape
        if self.kernel is None:
            out, registers = stream_arrays(x.numpy(), self.weights, self.cell, self.sizes, buffer.numpy(),
                                           self.every_layer)
            return torch.from_numpy(out @ self.head_t + self.head_b), torch.from_numpy(registers), position + n
        after, position_after = torch.empty_like(buffer), torch.empty_like(position)
        logits = torch.empty(B, n, self.kernel.outputs)
        self.kernel.run(x.data_ptr(), B, n, F, buffer.data_ptr(), after.data_ptr(), None, logits.data_ptr(),
                        position.data_ptr(), position_after.data_ptr(), torch.get_num_threads())
        return logits, after, position_after


def pack_plan(rnn, plan, every_layer: bool = False) -> tuple:
    """A plan and the stack's shape as the flat arrays ``numba_kernels.stack_forward`` reads.

    The result is (cell code, sizes [L, 4] = (F, H, R, n) per layer, gather, readout [1, steps]: the top layer's
    rows of the plan's steps, or ``every_layer`` [L, steps]: every layer's). It depends only on the model, the
    plan and ``every_layer``, so the engine caches it.
    """
    sizes = np.array([(layer.input_size, layer.hidden_size, len(lp.residues), lp.length)
                      for layer, lp in zip(rnn.layers, plan.layers)], np.int64)
    gather = np.concatenate([np.asarray(lp.gather, np.int64) for lp in plan.layers])
    readout = np.asarray(plan.layer_readouts if every_layer else [plan.readout], np.int64).reshape(-1, len(plan.readout))
    return nk.CELL_CODES[rnn.cell], sizes, gather, readout


def pack_weights(rnn) -> np.ndarray:
    """All layers' weights in one flat array, packed afresh on every call (a new array).

    Per layer: W_ih^T [F, G*H], W_hh^T [H, G*H], b_ih, b_hh (the order the
    kernels read). Packing reads NumPy views that share the parameters' memory,
    so it always sees the current values, however they were updated (optimizer
    steps, fused optimizers, ``.data`` writes); the views are rebuilt only when a
    parameter's storage moves.
    """
    state = _state(rnn)
    params = list(rnn.layers.parameters())  # per layer: weight_ih, weight_hh, bias_ih, bias_hh
    key = tuple(p.data_ptr() for p in params)
    if state.views is None or state.views[0] != key:
        state.views = (key, [p.detach().numpy() for p in params])
    return np.concatenate([v.T.ravel() if v.ndim == 2 else v for v in state.views[1]])
