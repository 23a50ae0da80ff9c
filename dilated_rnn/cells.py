"""The recurrent cells: one table that the model, the kernels, the reference and the CLI read.

Gate order and equations are PyTorch's (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``);
this module imports nothing heavy, so the CLI can list the cells without torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int  # G: gate blocks of H rows in W_ih and W_hh
    module: str  # the torch.nn class that runs it (and that ONNX export maps to a native op)
    paired_state: bool  # the state is (h, c), the output h; else the state is the output


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", 1, "RNN", False),
    "lstm": Cell("lstm", 4, "LSTM", True),
    "gru": Cell("gru", 3, "GRU", False),
}
CELL_NAMES = tuple(CELLS)
