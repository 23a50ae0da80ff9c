"""Dilated recurrent neural networks (Chang et al., NeurIPS 2017) for sequential image classification."""

from .model import DilatedRNN, DilatedRNNClassifier, ModelConfig

__all__ = ["DilatedRNN", "DilatedRNNClassifier", "ModelConfig"]
__version__ = "0.1.0"
