"""A slow, obviously correct DilatedRNN: one cell step at a time, from the equations.

Every fast path in this package is tested against ``reference_forward``. It
reads the parameters of a ``DilatedRNN`` but none of its code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .cells import CELLS

if TYPE_CHECKING:  # the model's streaming step reuses cell_step; the reference reads no model code
    from .model import DilatedRNN


def cell_step(cell: str, x, state, w_ih, w_hh, b_ih, b_hh):
    """One step of a cell, PyTorch's equations and gate order.

    x [B, F]; state h [B, H] (LSTM: a pair (h, c)); returns the new state.
    """
    if cell == "lstm":
        h, c = state
        i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        xr, xz, xn = (x @ w_ih.T + b_ih).chunk(3, dim=1)
        hr, hz, hn = (state @ w_hh.T + b_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * state
    if cell == "rnn":
        return torch.tanh(x @ w_ih.T + b_ih + state @ w_hh.T + b_hh)
    raise ValueError(f"unknown cell {cell!r}")


def reference_forward(model: "DilatedRNN", x: torch.Tensor) -> torch.Tensor:
    """Top-layer outputs at every step, [B, T, F] -> [B, T, H_top].

    Layer l: c_t = f(c_t^(l-1), c_{t-d_l}), zero state for t < d_l.
    """
    B, T, _ = x.shape
    inputs = [x[:, t] for t in range(T)]
    for layer, d in zip(model.layers, model.dilations):
        H = layer.hidden_size
        params = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
        zero = x.new_zeros(B, H)
        paired = CELLS[model.cell].paired_state  # LSTM: the state is (h, c), the output h
        initial = (zero, zero) if paired else zero
        states = []
        for t in range(T):
            previous = states[t - d] if t >= d else initial
            states.append(cell_step(model.cell, inputs[t], previous, *params))
        inputs = [s[0] if paired else s for s in states]
    return torch.stack(inputs, dim=1)
