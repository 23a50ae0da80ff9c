"""Named training recipes: ``drnn train --preset NAME`` sets cell, task and recipe in one word.

A preset fills only the flags the user did not give; an explicit flag wins.
The names match the shipped models (``drnn pretrained``), so
``drnn train --preset lstm-pmnist`` is the command that trains ``lstm-pmnist``.

The recipe (``RECIPE``) came from a measured probe, not from the paper: with the
paper's 9x20 LSTM on pixel MNIST, TensorFlow-style RMSProp at 1e-3 stayed at
chance for 8,500 steps in one run, while Adam at 2e-3 with a cosine schedule and
gradients clipped to norm 1 reached 98.64 % validation accuracy by then
(results/h100-2026-11-25-lstm-recipe-probe/). ``reference`` is the replaced
system's recipe, for comparison.
"""

from __future__ import annotations

from dataclasses import fields

from .model import ModelConfig
from .train import TrainConfig

RECIPE = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "clip": 1.0, "warmup": 0, "momentum": 0.0}

# What a flag is when neither the user nor a preset sets it: the config defaults, which are the reference's.
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
DEFAULTS = {"cell": ModelConfig.cell, "permute": _TRAIN_DEFAULTS["permute"],
            **{k: _TRAIN_DEFAULTS[k] for k in RECIPE}}

PRESETS: dict[str, dict] = {
    **{f"{cell}-mnist": {"cell": cell, "permute": False, **RECIPE} for cell in ("rnn", "lstm", "gru")},
    **{f"{cell}-pmnist": {"cell": cell, "permute": True, **RECIPE} for cell in ("rnn", "lstm", "gru")},
    "reference": {k: DEFAULTS[k] for k in RECIPE},
}


def resolve(preset: str | None, given: dict) -> dict:
    """The training flags: ``given`` (only flags the user set) over the preset over ``DEFAULTS``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset] if preset else {}
    return {**DEFAULTS, **chosen, **{k: v for k, v in given.items() if v is not None}}
