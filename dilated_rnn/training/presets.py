"""Named training recipes: ``drnn train --preset NAME`` sets cell, task and recipe in one word.

A preset fills only the flags the user did not give; an explicit flag wins.
The names match the shipped models (``drnn pretrained``), and each preset is the
recipe that trained the model of its name (a test checks every card against its
preset). Why each recipe is what it is, run by run: ``results/README.md``.
"""

from __future__ import annotations

from dataclasses import fields

from ..config import ModelConfig, TrainConfig

ADAM = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "clip": 1.0, "warmup": 0, "momentum": 0.0,
        "weight_decay": 0.0, "weight_decay_start": 0, "dropout": 0.0, "ema": 0.0, "label_smoothing": 0.0,
        "init": "tf", "forget_bias": 1.0, "sam": 0.0, "sam_start": 0}
ADAM_LATE_WD = {**ADAM, "weight_decay": 0.1, "weight_decay_start": 15000}
ADAM_WARMUP_LATE_WD = {**ADAM, "warmup": 1000, "weight_decay": 0.05, "weight_decay_start": 5000}

# What a setting is when neither the user nor a preset sets it: the configs' defaults, the reference's.
_CONFIG_DEFAULTS = {f.name: f.default for cls in (TrainConfig, ModelConfig) for f in fields(cls)}
DEFAULTS = {k: _CONFIG_DEFAULTS[k] for k in ("cell", "permute", *ADAM)}
MODEL_SETTINGS = tuple(k for k in DEFAULTS if k in ModelConfig.__dataclass_fields__)  # the rest are TrainConfig's


def _preset(cell: str, permute: bool, recipe: dict) -> dict:
    return {"cell": cell, "permute": permute, **recipe}


PRESETS: dict[str, dict] = {
    "rnn-mnist": _preset("rnn", False, ADAM_WARMUP_LATE_WD),
    "lstm-mnist": _preset("lstm", False, ADAM_WARMUP_LATE_WD),
    "gru-mnist": _preset("gru", False, {**ADAM_WARMUP_LATE_WD, "lr": 3e-3, "weight_decay": 0.1}),
    "rnn-pmnist": _preset("rnn", True, ADAM_WARMUP_LATE_WD),
    "lstm-pmnist": _preset("lstm", True, {**ADAM_LATE_WD, "ema": 0.9995, "init": "orthogonal"}),
    "gru-pmnist": _preset("gru", True, {**ADAM_WARMUP_LATE_WD, "ema": 0.999, "sam": 0.05, "sam_start": 10000}),
    "reference": {k: DEFAULTS[k] for k in ADAM},
}


def resolve(preset: str | None, given: dict, derived: dict | None = None) -> dict:
    """The training settings: ``given`` (only what the user set) over the preset over ``derived`` (the recipe of a
    user's data, ``recipe.derive``) over ``DEFAULTS``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset] if preset else {}
    from_data = {k: v for k, v in (derived or {}).items() if k in DEFAULTS}
    return {**DEFAULTS, **from_data, **chosen, **{k: v for k, v in given.items() if v is not None}}
