"""Dilated recurrent neural networks (Chang et al., NeurIPS 2017) for sequence classification.

``dilated_rnn.load(path_or_name)`` gives a trained model to use on raw data; the model classes are here for
those who build their own. Everything loads on first use: ``import dilated_rnn`` alone (and the ``drnn`` CLI's
start-up) stays light.
"""

__all__ = ["DilatedRNN", "DilatedRNNClassifier", "ModelConfig", "TrainedModel", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("DilatedRNN", "DilatedRNNClassifier", "ModelConfig"):
        from . import model

        return getattr(model, name)
    if name in ("TrainedModel", "load"):
        from . import trained

        return getattr(trained, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
