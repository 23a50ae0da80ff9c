"""The model: dilated recurrent layers and their cells, the classifier, the pruning plan, streaming state.

Plain PyTorch; where a fast CPU kernel can run a recurrence, the model asks the
engine (``dilated_rnn.engine``). The classes load on first use, so the cell
table (``model.cells``) can be read without torch.
"""

__all__ = ["DilatedRNN", "DilatedRNNClassifier", "ModelConfig", "init_cell_"]


def __getattr__(name: str):
    if name in ("DilatedRNN", "DilatedRNNClassifier"):
        from . import dilated

        return getattr(dilated, name)
    if name == "ModelConfig":
        from ..config import ModelConfig

        return ModelConfig
    if name == "init_cell_":
        from .cells import init_cell_

        return init_cell_
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
