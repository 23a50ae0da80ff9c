"""A slow, obviously correct DilatedRNN: one cell step at a time, from the equations.

Every fast path in this package is tested against ``reference_forward``. It
reads the parameters of a ``DilatedRNN`` and steps the cells' equations
(``cells.cell_step``), one step at a time; none of the stack's code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .cells import CELLS, cell_step

if TYPE_CHECKING:
    from .dilated import DilatedRNN


def reference_forward(model: "DilatedRNN", x: torch.Tensor, every_layer: bool = False) -> torch.Tensor:
    """Top-layer outputs at every step, [B, T, F] -> [B, T, H_top] (``every_layer``: every layer's, bottom
    first, concatenated: [B, T, sum of H_l]).

    Layer l: c_t = f(c_t^(l-1), c_{t-d_l}), zero state for t < d_l.
    """
    B, T, _ = x.shape
    inputs, layers = [x[:, t] for t in range(T)], []
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
        layers.append(torch.stack(inputs, dim=1))
    return torch.cat(layers, dim=2) if every_layer else layers[-1]
