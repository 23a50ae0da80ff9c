"""Named training recipes: ``drnn train --preset NAME`` sets cell, task and recipe in one word.

A preset fills only the flags the user did not give; an explicit flag wins.
The names match the shipped models (``drnn pretrained``), and each preset is the
recipe that trained the model of its name, so ``drnn train --preset lstm-pmnist``
is the command that reproduces ``lstm-pmnist`` (a test checks every card against
its preset).

The recipes came from measured runs, not from the paper (results/ holds each run):
- ``ADAM``: with the paper's 9x20 LSTM on pixel MNIST, TensorFlow-style RMSProp at
  1e-3 stayed at chance for 8,500 steps in one run, while Adam at 2e-3 with a
  cosine schedule and gradients clipped to norm 1 reached 98.64 % validation
  accuracy by then (results/h100-2026-11-25-lstm-recipe-probe/).
- ``ADAM_LATE_WD``: ``ADAM`` plus decoupled weight decay 0.1 from step 15,000.
  On ``ADAM`` the permuted LSTM was at 95.66 % validation accuracy by step 15,000
  and gained little after (best 95.80 %) while its training loss kept falling;
  with decay 0.05 from there (the same run up to step 15,000) its best was
  95.88 %, and with 0.1 (another run) 96.28 %.
- ``ADAM_WARMUP_LATE_WD``: ``ADAM`` plus a 1,000-step linear warm-up and decoupled
  weight decay 0.05 from step 5,000 (a per-step shrink of lr x 0.05, as large as
  the 0.1 that helped the RNN on RMSProp at 1e-3). The unpermuted LSTM starts on a
  plateau at chance: on ``ADAM`` it left it near step 2,000 in one run and stayed
  on it past step 5,000 in another whose losses matched the first to 8 digits
  until step 1,900; with the warm-up it left it by step 1,000 (one run each, so no
  guarantee that a warm-up always escapes). The late decay waits until the model
  has left chance (decay from step 0 kept the permuted LSTM on the plateau).
  Best validation accuracy, against the recipe each model had before: on
  ``ADAM``, LSTM 99.14 % against 98.94 % and permuted GRU 96.60 % against
  96.06 %; on RMSProp 1e-3 with a cosine schedule and decay 0.1, GRU 99.22 %
  against 99.10 %, RNN 98.76 % against 98.56 % and permuted RNN 97.26 % against
  96.58 %. ``gru-mnist`` uses it with decay 0.1 and a peak learning rate of 3e-3:
  best validation 99.24 % against 99.22 % with decay 0.1 at 2e-3, then 99.32 %
  with 3e-3 (one run each; on the permuted GRU 0.1 was below 0.05, 96.44 %
  against 96.60 %). The permuted LSTM learned more slowly with it (93.22 % against
  94.80 % at step 12,000), so ``lstm-pmnist`` uses ``ADAM_LATE_WD``
  (results/cpu-2026-11-27/README.md).
- ``gru-pmnist`` adds a moving average of the weights (``ema`` 0.999), which is
  what is validated and kept: best validation 96.74 % against 96.60 % for the
  same trained weights without it (one run), and sharpness-aware steps of radius
  0.05 from step 10,000 (``sam``, ``sam_start``; the same run up to there):
  96.76 % against 96.74 %, its validation loss falling to 0.112 where the run
  without them rose from 0.114 to 0.124 (results/cpu-2026-11-27/README.md, ninth round).
- ``lstm-pmnist`` adds orthogonal gate blocks (``init`` "orthogonal") and a
  longer average (``ema`` 0.9995). With TensorFlow's Glorot bounds the input
  all but vanishes up the 9 stacked 20-unit LSTM layers at initialisation, and
  the permuted LSTM sat at chance for thousands of steps (9,000 in one run on a
  GPU); with orthogonal blocks it was at 57.52 % validation by step 1,000 and
  reached a best of 96.70 % against 96.28 % (results/h100-2026-11-27-init-screen/ and
  results/cpu-2026-11-27/README.md, sixth round). The average alone, with
  TensorFlow's initialisation, had reached 96.22 % against 96.28 %. A longer
  average (0.9995 instead of 0.999, on the same trained weights) reached 96.74 %
  against 96.70 % (seventh round); on the permuted GRU it tied, 96.74 % both.
"""

from __future__ import annotations

from dataclasses import fields

from .model import ModelConfig
from .train import TrainConfig

ADAM = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "clip": 1.0, "warmup": 0, "momentum": 0.0,
        "weight_decay": 0.0, "weight_decay_start": 0, "dropout": 0.0, "ema": 0.0, "label_smoothing": 0.0,
        "init": "tf", "forget_bias": 1.0, "sam": 0.0, "sam_start": 0}
ADAM_LATE_WD = {**ADAM, "weight_decay": 0.1, "weight_decay_start": 15000}
ADAM_WARMUP_LATE_WD = {**ADAM, "warmup": 1000, "weight_decay": 0.05, "weight_decay_start": 5000}

# What a flag is when neither the user nor a preset sets it: the config defaults, which are the reference's.
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
DEFAULTS = {"cell": ModelConfig.cell, "permute": _TRAIN_DEFAULTS["permute"],
            **{k: _TRAIN_DEFAULTS[k] for k in ADAM}}


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


def resolve(preset: str | None, given: dict) -> dict:
    """The training flags: ``given`` (only flags the user set) over the preset over ``DEFAULTS``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset] if preset else {}
    return {**DEFAULTS, **chosen, **{k: v for k, v in given.items() if v is not None}}
