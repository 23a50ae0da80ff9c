"""The recipe for a user's sequences, derived from the data: what ``drnn train --data FILE`` runs when neither a
flag nor a preset says otherwise. MNIST and the copy task keep the reference's defaults (``config.py``).

Every number below is a rule of the data's size, not a value tuned to a set:

* the batch is an eighth of the training split, at most 32, so an epoch is at least eight steps and a batch
  never exceeds the split (16 sequences: batches of 2);
* training is counted in epochs of the training split (300), cut short where the run would exceed a budget
  of cell steps (``CELL_STEP_BUDGET``: about 7 minutes of a 64-unit GRU on two cores), never under 20;
* a GRU of 64 units per layer (dilations by the usual rule: 1, 2, 4, ... up to half the longest sequence),
  reading every layer's last step (``readout="layers"``), Adam at 1e-3 with a cosine decay and gradients
  clipped at norm 1;
* each training batch augmented by jitter, scaling and magnitude warping (``AUGMENT``, ``data/augment.py``);
* the model reads each channel's values and their first differences: decided when the data is loaded
  (``--differences auto``, ``data/datasets.load_dataset``), since the input transform is fitted there;
* every training sequence trains and the model is the last step's (``TrainConfig.val_fraction`` 0: the
  schedule ends at a learning rate of zero); where the data gives a validation split, or ``--val-fraction``
  asks for one, 30 validations over the run choose ``best.pt``, ties at the best accuracy going to the lowest
  loss (validation sets of a few sequences tie often).

``tests/training/test_recipe.py`` checks the rules on sets of 16 to 500 sequences.
"""

from __future__ import annotations

import math

from ..model.pruning import plan_outputs

EPOCHS = 300
MIN_EPOCHS = 20
CELL_STEP_BUDGET = 2e8  # sequences x cell steps of the pruned plan, over the whole run
HIDDEN = 64
MAX_BATCH = 32
BATCHES_PER_EPOCH = 8
VALIDATIONS = 30
AUGMENT = "jitter,scale,magnitude-warp"
SETTINGS = {"cell": "gru", "optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "clip": 1.0}


def applies(dataset) -> bool:
    """Whether the data is a user's sequences (not MNIST, not labelled at every step)."""
    return dataset.spec != "mnist" and not dataset.per_step


def derive(dataset, dilations, train_limit: int | None = None) -> dict:
    """The recipe's settings for ``dataset`` with ``dilations``: those of ``SETTINGS`` and ``batch_size``,
    ``steps``, ``epochs`` (for the record), ``eval_every``, ``log_every``, ``select_ties``, ``augment``, ``hidden``
    (units per layer) and ``readout``."""
    n = len(dataset.splits["train"].subset(train_limit))
    T, d0 = dataset.train_max_length, dilations[0]
    batch = max(1, min(MAX_BATCH, n // BATCHES_PER_EPOCH))
    cell_steps = plan_outputs(T, dilations, range(T - d0, T)).cell_steps if T >= d0 else T * len(dilations)
    epochs = max(MIN_EPOCHS, min(EPOCHS, CELL_STEP_BUDGET / (n * cell_steps)))
    steps = math.ceil(epochs * n / batch)
    every = max(1, steps // VALIDATIONS)
    return {**SETTINGS, "batch_size": batch, "steps": steps, "epochs": round(epochs, 1), "eval_every": every,
            "log_every": every, "select_ties": "loss", "augment": AUGMENT, "hidden": HIDDEN, "readout": "layers"}


def configs(dataset, dilations, given: dict | None = None, preset: str | None = None):
    """The run's ``ModelConfig`` and ``TrainConfig``: the settings ``given`` (by their config names, with
    ``hidden_sizes`` of one value for every layer; None: not given), over ``preset``, over the recipe derived from
    a user's data (``derive``), over the configs' defaults (the reference's). What ``drnn train`` builds from its
    flags, and ``configs(dataset, dilations, {"seed": s, "data": spec})`` what ``drnn train --data SPEC --seed S``
    builds with no other flag."""
    from ..config import ModelConfig, TrainConfig
    from ..errors import ParameterError
    from .presets import DEFAULTS, MODEL_SETTINGS, resolve

    given = {k: v for k, v in (given or {}).items() if v is not None}
    derived = derive(dataset, dilations, given.get("train_limit")) if applies(dataset) and preset is None else {}
    if derived and "steps" in given:  # the recipe's number of validations over the run asked for
        derived["eval_every"] = derived["log_every"] = max(1, given["steps"] // VALIDATIONS)
    settings = resolve(preset, {k: given.get(k) for k in DEFAULTS}, derived)
    fields = TrainConfig.__dataclass_fields__
    train = TrainConfig(**{k: v for k, v in {**derived, **given}.items() if k in fields and k not in DEFAULTS},
                        recipe=preset or ("data" if derived else "reference"),
                        **{k: v for k, v in settings.items() if k not in MODEL_SETTINGS})
    hidden = tuple(given.get("hidden_sizes") or ((derived["hidden"],) if derived else ModelConfig.hidden_sizes[:1]))
    readout = given.get("readout", derived.get("readout"))
    if dataset.per_step:
        if readout not in (None, "every"):
            raise ParameterError("readout", f"cannot be {readout}: {dataset.spec} has a label at every step, which "
                                            "the every-step readout reads")
        readout = "every"
    model = ModelConfig(input_size=dataset.model_features, dilations=tuple(dilations), num_classes=dataset.num_classes,
                        hidden_sizes=hidden * len(dilations) if len(hidden) == 1 else hidden,
                        readout=readout or "last", **{k: settings[k] for k in MODEL_SETTINGS})
    return model, train
