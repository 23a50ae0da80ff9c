"""Dilated recurrent neural networks (Chang et al., NeurIPS 2017) for sequence classification.

The model classes import torch, so they load on first use: ``import dilated_rnn``
alone (and the ``drnn`` CLI's start-up) stays light.
"""

__all__ = ["DilatedRNN", "DilatedRNNClassifier", "ModelConfig"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
