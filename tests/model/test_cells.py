"""The cell table agrees with the PyTorch modules it names and with the reference's equations."""

import pytest
import torch
from torch import nn

from dilated_rnn.model.cells import CELL_NAMES, CELLS
from dilated_rnn.model.reference import cell_step


@pytest.mark.parametrize("name", CELL_NAMES)
def test_gates_and_state_match_the_module(name):
    cell = CELLS[name]
    module = getattr(nn, cell.module)(3, 5, batch_first=True)
    assert module.weight_ih_l0.shape == (cell.gates * 5, 3) and module.weight_hh_l0.shape == (cell.gates * 5, 5)
    x = torch.randn(2, 1, 3)
    out, state = module(x)
    assert isinstance(state, tuple) == cell.paired_state  # LSTM: (h, c)
    zero = torch.zeros(2, 5)
    params = (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)
    step = cell_step(name, x[:, 0], (zero, zero) if cell.paired_state else zero, *params)
    h = step[0] if cell.paired_state else step
    torch.testing.assert_close(h, out[:, 0])
