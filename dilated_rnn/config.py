"""What describes a model and how to train it (two validated dataclasses), and the choices of settings.

This module imports neither torch nor NumPy, so the CLI takes its defaults
from here and starts fast. Errors name the parameter (``ParameterError``);
the CLI turns the name into its flag.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import ParameterError
from .model.cells import CELL_NAMES, INITS

# A label per sequence from the top layer's last step(s); from every layer's last step(s), concatenated (each
# dilated layer's view at its own time scale, still on the pruned chains); from the mean or the maximum of the
# top layer's outputs over a sequence's real steps (every step computed); or one label per step (labelling).
READOUTS = ("last", "layers", "mean", "max", "every")
POOLED = ("mean", "max")
OPTIMIZERS = ("rmsprop", "adam")
SCHEDULES = ("constant", "cosine")
NORMALIZATIONS = ("none", "channel", "sequence")  # of inputs (data/transform.py)
DIFFERENCES = ("auto", "on", "off")  # whether the model reads first differences beside the values
PRECISIONS = ("fp32", "fp16", "int8")  # of exported graphs (export.py)
LAYOUTS = ("auto", "ntc", "nct")  # of a file's [N, ., .] arrays (data/readers.py)
CLASS_WEIGHTS = ("none", "balanced")  # of the training loss
AUGMENTATIONS = ("jitter", "scale", "magnitude-warp", "time-warp", "slice")  # of training batches (data/augment.py)
FORMATS = ("onnx", "openvino")  # of exported graphs: ONNX, OpenVINO IR (export.py)
DEFAULT_OPSET = 17
ATC_OPSET = 11  # the Ascend ATC tool accepts opsets 9-13 on CANN 5/6


def _one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ParameterError(name, f"must be in [0, 1), got {value}")


def validate_stack(input_size: int, hidden_sizes, dilations, cell: str) -> None:
    """The checks every stack of dilated layers needs, whether or not it has a config."""
    _one_of("cell", cell, CELL_NAMES)
    if input_size < 1:
        raise ParameterError("input_size", f"must be positive, got {input_size}")
    if len(hidden_sizes) == 0:
        raise ParameterError("hidden_sizes", "is empty; at least one layer is needed")
    if len(hidden_sizes) != len(dilations):
        raise ParameterError("dilations", f"needs one dilation per layer: {len(hidden_sizes)} hidden sizes "
                                          f"but {len(dilations)} dilations")
    if any(h < 1 for h in hidden_sizes):
        raise ParameterError("hidden_sizes", f"must be positive, got {list(hidden_sizes)}")
    if any(d < 1 for d in dilations):
        raise ParameterError("dilations", f"must be positive, got {list(dilations)}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a ``DilatedRNNClassifier``, validated on construction.

    ``dropout`` acts on each layer's outputs on their way up (training only);
    ``init`` and ``forget_bias`` say how the cells are drawn (``model.init_cell_``).
    """

    input_size: int = 1
    hidden_sizes: tuple[int, ...] = (20,) * 9
    dilations: tuple[int, ...] = tuple(2**i for i in range(9))
    cell: str = "lstm"
    num_classes: int = 10
    dropout: float = 0.0
    init: str = "tf"
    forget_bias: float = 1.0
    readout: str = "last"  # one of READOUTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "cell", str(self.cell).lower())
        validate_stack(self.input_size, self.hidden_sizes, self.dilations, self.cell)
        if self.num_classes < 1:
            raise ParameterError("num_classes", f"must be positive, got {self.num_classes}")
        _fraction("dropout", self.dropout)
        _one_of("init", self.init, INITS)
        if not math.isfinite(self.forget_bias):
            raise ParameterError("forget_bias", f"must be finite, got {self.forget_bias}")
        if self.forget_bias != 1.0 and self.cell != "lstm":
            raise ParameterError("forget_bias", f"applies to LSTM cells only, not {self.cell}")
        _one_of("readout", self.readout, READOUTS)
        if self.readout == "every" and self.dilations[0] != 1:
            raise ParameterError("dilations", f"must start at 1 for a label at every step, got {self.dilations[0]}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the reference's: batch 128, lr 1e-3, RMSProp, 30,000 steps, seed 92916."""

    steps: int = 30000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "rmsprop"  # "rmsprop" is TensorFlow's (optim.TFRMSprop)
    momentum: float = 0.0
    clip: float = 0.0  # max global gradient norm; 0 disables clipping
    weight_decay: float = 0.0  # decoupled, on weight matrices only; 0 disables it
    weight_decay_start: int = 0  # first step (0-based) with weight decay; before it, none
    # Decay of an exponential moving average of the weights (optim.WeightAverage); 0 disables it.
    # When set, validation, best.pt and the test report use the averaged weights.
    ema: float = 0.0
    # Cross-entropy against targets with this much mass spread evenly over all classes; 0 disables it.
    # Training loss only: validation and test losses stay plain cross-entropy.
    label_smoothing: float = 0.0
    # Sharpness-aware minimisation (train.train_step): the radius of the weight perturbation, 0 disables
    # it; sam_start is the first step (0-based) that uses it.
    sam: float = 0.0
    sam_start: int = 0
    schedule: str = "constant"
    warmup: int = 0  # linear warm-up steps
    permute: bool = False  # permuted MNIST (or any fixed-length data): the step order drawn from the seed
    seed: int = 92916  # initialisation, batch order, permutation and a drawn validation split
    data: str = "mnist"  # datasets.load_dataset's spec: mnist, PATH.npz, PATH_TRAIN.ts, ucr:NAME
    # Of each class, held out for validation where the data gives none (not MNIST). 0 (the default): no
    # validation, every training sequence trains, and best.pt is the last step's weights (the run's length, the
    # recipe's, is the choice: on the archive's small sets it beat a held-out fifth, results/README.md).
    val_fraction: float = 0.0
    # How inputs are standardised (data/transform.py): "auto" is "none" for MNIST (pixels stay in [0, 1]) and
    # "channel" for other data; "sequence" standardises each sequence by its own statistics.
    normalize: str = "auto"
    # Whether the model reads each channel's first differences beside its values (data/transform.py): "auto" is
    # "on" for a user's sequences and "off" for MNIST and the copy task.
    differences: str = "auto"
    layout: str = "auto"  # how a file's arrays are read (data/readers.py): auto, ntc, or nct (sktime's [N, C, T])
    # "balanced": each class's training loss weighted by N / (K * its count), so rare classes count as much
    class_weight: str = "none"
    # Augmentations of each training batch (data/augment.py), comma-separated in the order applied: jitter,
    # scale, magnitude-warp, time-warp, slice; "" for none. mixup: alpha of the Beta weight of mixup, 0 for none.
    augment: str = ""
    mixup: float = 0.0
    # Where the settings no flag gave came from: "reference" (these defaults), "data" (training/recipe.py, a
    # user's sequences) or a preset's name.
    recipe: str = "reference"
    # Which validation keeps best.pt: the highest accuracy, its ties going to the earliest step ("earliest")
    # or to the lowest validation loss ("loss": for small validation sets, where ties are common).
    select_ties: str = "earliest"
    eval_every: int = 1000
    log_every: int = 100
    eval_batch_size: int = 1000
    # Use only the first N images of a split (smoke runs); part of the run, so --resume keeps them.
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None

    @property
    def augmentations(self) -> tuple[str, ...]:
        """``augment``'s names, in the order applied."""
        return tuple(filter(None, self.augment.split(",")))

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "log_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ParameterError(name, f"must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ParameterError("lr", f"must be positive, got {self.lr}")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("normalize", self.normalize, ("auto", *NORMALIZATIONS))
        _one_of("differences", self.differences, DIFFERENCES)
        _one_of("select_ties", self.select_ties, ("earliest", "loss"))
        _one_of("layout", self.layout, LAYOUTS)
        _one_of("class_weight", self.class_weight, CLASS_WEIGHTS)
        for name in self.augmentations:
            _one_of("augment", name, AUGMENTATIONS)
        if not (math.isfinite(self.mixup) and self.mixup >= 0):
            raise ParameterError("mixup", f"must be a non-negative alpha, got {self.mixup}")
        for name in ("momentum", "clip", "warmup", "weight_decay", "weight_decay_start", "sam_start"):
            if getattr(self, name) < 0:
                raise ParameterError(name, f"must be non-negative, got {getattr(self, name)}")
        _fraction("ema", self.ema)
        if not 0 <= self.val_fraction < 1:
            raise ParameterError("val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        _fraction("label_smoothing", self.label_smoothing)
        if not (math.isfinite(self.sam) and self.sam >= 0):
            raise ParameterError("sam", f"must be a non-negative radius, got {self.sam}")
        for name in ("train_limit", "val_limit", "test_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ParameterError(name, f"must be positive, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A stored config; one stored before ``differences`` existed read values alone."""
        known = {f.name for f in fields(cls)}
        return cls(**{"differences": "off", **{k: v for k, v in d.items() if k in known}})


# Settings that lived in the training config before format version 2 of checkpoints and cards.
MOVED_TO_MODEL = ("dropout", "init", "forget_bias")


def migrate_configs(model_config: dict, train_config: dict | None) -> tuple[dict, dict | None]:
    """Old (model, train) config dicts in today's layout: the architecture's settings move to the model."""
    if train_config is None:
        return model_config, None
    moved = {k: train_config[k] for k in MOVED_TO_MODEL if k in train_config}
    return {**model_config, **moved}, {k: v for k, v in train_config.items() if k not in MOVED_TO_MODEL}
