"""The reference loop itself, checked against PyTorch's stacked RNNs where dilation 1 makes them equal."""

import pytest
import torch
from torch import nn

from dilated_rnn.model import DilatedRNN
from dilated_rnn.model.cells import CELLS
from dilated_rnn.model.reference import cell_step, reference_forward


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reference_with_unit_dilations_is_a_stacked_rnn(cell):
    model = DilatedRNN(3, [4, 4], [1, 1], cell).double()
    stacked = getattr(nn, CELLS[cell].module)(3, 4, num_layers=2, batch_first=True).double()
    with torch.no_grad():
        for l, layer in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(stacked, f"{name}_l{l}").copy_(getattr(layer, f"{name}_l0"))
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(reference_forward(model, x), stacked(x)[0], rtol=0, atol=1e-12)


def test_reference_dilation_skips_exactly_d_steps():
    """With dilation d, step t sees only steps t, t-d, t-2d, ...: changing another step leaves it alone."""
    model = DilatedRNN(1, [3], [3], "rnn").double()
    x = torch.randn(1, 10, 1, dtype=torch.float64)
    y = x.clone()
    y[0, 8] += 1.0  # residue 2
    a, b = reference_forward(model, x), reference_forward(model, y)
    changed = [t for t in range(10) if not torch.equal(a[0, t], b[0, t])]
    assert changed == [8]


def test_unknown_cell_is_rejected():
    with pytest.raises(ValueError, match="unknown cell"):
        cell_step("tanh", None, None, None, None, None, None)
