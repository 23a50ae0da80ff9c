"""A DilatedRNN as an sktime classifier: ``from dilated_rnn.sktime import DilatedRNNClassifier``.

It takes what sktime passes (numpy3D [N, C, T], or for sequences of unequal length a list of [T_i, C]
frames), trains with the recipe ``drnn train --data`` uses on a user's sequences (``training/recipe.py``:
validation drawn from the training data, selection on it) and predicts through the trained model, its
normalization included. Any setting given here overrides the recipe's, as a flag does on the command line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from sktime.classification.base import BaseClassifier


class DilatedRNNClassifier(BaseClassifier):
    """Dilated RNN classifier (Chang et al., NeurIPS 2017) on the pruned chains of its last step(s).

    Parameters
    ----------
    cell : "gru", "lstm" or "rnn", default None (the recipe's: gru)
    hidden_size : int, units per layer, default None (the recipe's: 64)
    dilations : tuple of int, default None (1, 2, 4, ... up to half the longest training sequence)
    readout : "layers" or "last", default None (the recipe's: layers)
    steps, batch_size : int, default None (the recipe's: 300 epochs, an eighth of the data per batch)
    lr : float, default None (the recipe's: 1e-3, Adam, cosine decay)
    augment : str, default None (the recipe's: jitter,scale,magnitude-warp), augmentations of each training batch,
        comma-separated (``dilated_rnn.config.AUGMENTATIONS``); "" for none
    differences : "on" or "off", default None (the recipe's: on), whether the model reads each channel's first
        differences beside its values
    val_fraction : float, default 0.0 (the last step), of each class held out to choose the step
    random_state : int or None, default None: the seed of initialisation, batch order and validation split
    threads : int, default 1, PyTorch threads while fitting and predicting

    Examples
    --------
    >>> from sktime.datasets import load_unit_test
    >>> from dilated_rnn.sktime import DilatedRNNClassifier
    >>> X_train, y_train = load_unit_test(split="train", return_X_y=True)
    >>> X_test, y_test = load_unit_test(split="test", return_X_y=True)
    >>> clf = DilatedRNNClassifier(hidden_size=8, steps=40, random_state=0)
    >>> clf = clf.fit(X_train, y_train)
    >>> y_pred = clf.predict(X_test)
    >>> proba = clf.predict_proba(X_test)  # columns in the order of clf.classes_
    """

    _tags = {
        "authors": ["dilated-rnn"],
        "maintainers": ["dilated-rnn"],
        "python_dependencies": ["torch"],
        "X_inner_mtype": ["df-list", "numpy3D"],  # numpy3D kept as it comes; unequal lengths as frames
        "y_inner_mtype": "numpy1D",
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:predict_proba": True,
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }

    def __init__(self, cell=None, hidden_size=None, dilations=None, readout=None, steps=None, batch_size=None,
                 lr=None, augment=None, differences=None, val_fraction=0.0, random_state=None, threads=1):
        self.cell = cell
        self.hidden_size = hidden_size
        self.dilations = dilations
        self.readout = readout
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.augment = augment
        self.differences = differences
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.threads = threads
        super().__init__()

    def _fit(self, X, y):
        import torch

        from .data.datasets import default_dilations, from_sequences
        from .trained import load
        from .training.recipe import configs
        from .training.train import train

        torch.set_num_threads(self.threads)
        seed = 0 if self.random_state is None else int(self.random_state)
        codes = np.searchsorted(self.classes_, y)  # columns in classes_ order
        differences = self.differences or "auto"
        dataset = from_sequences(_sequences(X), codes, self.val_fraction, seed, spec="sktime", differences=differences)
        dilations = tuple(self.dilations or default_dilations(dataset.train_max_length))
        given = {"seed": seed, "data": "sktime", "cell": self.cell, "readout": self.readout, "steps": self.steps,
                 "batch_size": self.batch_size, "lr": self.lr, "augment": self.augment,
                 "differences": differences,
                 "val_fraction": self.val_fraction or 0.0,
                 "hidden_sizes": (self.hidden_size,) if self.hidden_size else None}
        model, cfg = configs(dataset, dilations, given)
        with tempfile.TemporaryDirectory() as tmp:
            train(Path(tmp) / "run", dataset, model, cfg, device="cpu", progress=False, quiet=True)
            self.trained_ = load(Path(tmp) / "run")
        return self

    def _predict_proba(self, X):
        import torch

        torch.set_num_threads(self.threads)
        return self.trained_.predict_proba(_sequences(X))

    def _predict(self, X):
        return self.classes_[self._predict_proba(X).argmax(axis=1)]

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Small, fast settings for sktime's estimator checks."""
        return [{"hidden_size": 4, "steps": 4, "batch_size": 2, "random_state": 0},
                {"cell": "lstm", "hidden_size": 3, "steps": 3, "batch_size": 2, "readout": "last", "augment": "",
                 "differences": "off", "random_state": 1}]


def _sequences(X) -> list[np.ndarray]:
    """sktime's numpy3D [N, C, T], or df-list (one [T_i, C] frame per sequence), as [T_i, C] float32 arrays."""
    if isinstance(X, np.ndarray):
        return [np.ascontiguousarray(x.T, dtype=np.float32) for x in X]
    return [np.ascontiguousarray(frame.to_numpy(dtype=np.float32)) for frame in X]
