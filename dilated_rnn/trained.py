"""A trained model, whole: the classifier, its input transform and what it was trained on; and where one comes from.

``TrainedModel`` is the one shape of a trained model: what a checkpoint, a
shipped card and an export carry (the config and weights in ``model``, the
input transform, the data's description: class names, channels, lengths), so
evaluate, export, infer, stream, bench and the pipeline all take it. It takes
raw values as the data came: ``module()`` is the transform and the classifier as
one ``nn.Module``, the form that is exported and that every backend runs.

A model argument (``load_model``) is a checkpoint written by ``drnn train``
(``.pt``), a shipped model (``pretrained:NAME``, listed by ``drnn pretrained``),
or, where a command runs exported graphs, an ``.onnx`` file or an OpenVINO IR
(``.xml``): ``parse_source`` tells which, for every command.

Shipped models (``weights/``) are safetensors weights + a JSON card each. A
card holds the model config, its input transform (the pixel permutation and the
normalization, or null), its data (spec, class names), the training config and
the measured test accuracy. Nothing is unpickled: weights load with
safetensors, cards with json, each only after its SHA-256 matches the folder's
``SHA256SUMS`` (``integrity.py``); ``drnn pretrained`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import migrate_configs
from .errors import UserError
from .files import atomic_path, write_json
from .integrity import verify_in_manifest, write_manifest

PREFIX = "pretrained:"
KINDS = ("checkpoint", "pretrained", "onnx", "openvino")
GRAPH_SUFFIXES = {".onnx": "onnx", ".xml": "openvino"}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # one of KINDS
    location: str  # a path, or the shipped model's name

    def __str__(self) -> str:
        return PREFIX + self.location if self.kind == "pretrained" else self.location


def parse_source(source) -> ModelSource:
    """``pretrained:NAME``, a ``.onnx`` or ``.xml`` path, or a checkpoint path."""
    if isinstance(source, ModelSource):
        return source
    text = str(source)
    if text.startswith(PREFIX):
        return ModelSource("pretrained", text[len(PREFIX):])
    return ModelSource(GRAPH_SUFFIXES.get(Path(text).suffix, "checkpoint"), text)


def pretrained_source(name: str) -> ModelSource:
    return ModelSource("pretrained", name)


@dataclass(frozen=True)
class TrainedModel:
    """A ``DilatedRNNClassifier`` or an ``EnsembleClassifier`` of them (evaluation mode), its ``InputTransform``
    (raw inputs -> the model's), and ``data``, ``Dataset.info()`` of what it was trained on (None: not
    recorded). ``card``: what else its source recorded (a shipped model's card: name, test accuracy, training
    config)."""

    model: object
    transform: object = None  # InputTransform; None: the identity
    data: dict | None = None
    card: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.transform is None:
            from .data.transform import InputTransform

            object.__setattr__(self, "transform", InputTransform())

    @property
    def config(self):
        """The classifier's ``ModelConfig``."""
        return self.model.config

    @property
    def features(self) -> int:
        """The raw input's channels (the model's input has twice as many where the transform appends differences)."""
        return self.transform.raw_features(self.config.input_size)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in the order of the logits (class indices when the data did not record them)."""
        if self.data and self.data.get("classes"):
            return tuple(self.data["classes"])
        return tuple(str(k) for k in range(self.config.num_classes))

    @property
    def fixed_length(self) -> int | None:
        """The one sequence length the model was trained on, if the data had one."""
        return (self.data or {}).get("fixed_length")

    def module(self, full: bool = False):
        """The transform and the classifier as one module: raw [N, T, F] (and lengths [N]) -> logits [N, K].
        ``full``: the computation of every step (one graph for every length, as variable-length export needs)."""
        from .deploy.raw import RawInputClassifier

        return RawInputClassifier(self.model, self.transform, full)

    def check_inputs(self, sequences, source: str = "the data") -> None:
        """Refuse sequences that do not fit the model, in one line that says both sides: their channels, and
        their lengths where the model takes one length (a permuted model) or reads more steps than they have."""
        F, d0 = self.features, self.config.dilations[0]
        if self.config.readout == "every":
            raise UserError(f"{source}: this model labels every step (its stream gives those labels); predict gives "
                            "one class per sequence")
        channels = sorted({int(s.shape[1]) for s in sequences})
        if channels != [F]:
            raise UserError(f"{source}: sequences of {', '.join(map(str, channels))} channel(s); the model takes {F}")
        shortest, longest = min(len(s) for s in sequences), max(len(s) for s in sequences)
        if self.transform.permutation is not None and {shortest, longest} != {len(self.transform.permutation)}:
            raise UserError(f"{source}: sequences of {shortest}-{longest} steps; the model (permuted) takes exactly "
                            f"{len(self.transform.permutation)}")
        if shortest < d0:
            raise UserError(f"{source}: a sequence of {shortest} step(s); the model reads the last {d0} steps of each")

    def check_dataset(self, dataset) -> None:
        """Refuse a ``Dataset`` whose channels or classes are not the model's, saying both."""
        if dataset.num_features != self.features:
            raise UserError(f"{dataset.spec}: {dataset.num_features} channel(s); the model takes {self.features}")
        if tuple(dataset.classes) != self.classes:
            shown = lambda names: ", ".join(list(names)[:6]) + (", ..." if len(names) > 6 else "")  # noqa: E731
            raise UserError(f"{dataset.spec}: classes {shown(dataset.classes)} ({len(dataset.classes)}); the model "
                            f"predicts {shown(self.classes)} ({len(self.classes)})")

    def predict_proba(self, x, batch_size: int = 256):
        """Class probabilities [N, K] (rows sum to 1, columns in ``classes`` order) of raw sequences: an array
        [N, T, F] (or [N, T] for one channel) or a list of [T_i, F] arrays of any lengths."""
        import numpy as np
        import torch

        sequences = _as_sequences(x)
        self.check_inputs(sequences, "x")
        from .data.datasets import pad_sequences

        module, out = self.module().eval(), []
        with torch.inference_mode():
            for start in range(0, len(sequences), batch_size):
                batch, lengths = pad_sequences(sequences[start : start + batch_size])
                batch, lengths = torch.from_numpy(batch), torch.from_numpy(lengths)
                same = bool((lengths == batch.shape[1]).all())
                logits = module(batch) if same else module(batch, lengths)
                out.append(torch.softmax(logits.double(), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def predict(self, x, batch_size: int = 256):
        """The predicted class names [N] of raw sequences (as ``predict_proba`` takes them)."""
        import numpy as np

        return np.asarray(self.classes)[self.predict_proba(x, batch_size).argmax(axis=1)]

    def to(self, *args, **kwargs) -> "TrainedModel":
        """A copy whose classifier is moved or cast (``nn.Module.to``); the original is left as it was."""
        import copy

        return TrainedModel(copy.deepcopy(self.model).to(*args, **kwargs), self.transform, self.data, self.card)


def _as_sequences(x) -> list:
    """Raw input as a list of [T_i, F] float32 arrays: from [N, T, F], [N, T] (one channel) or a list."""
    import numpy as np

    if isinstance(x, (list, tuple)):
        seqs = [np.asarray(s, dtype=np.float32) for s in x]
        seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
    else:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise UserError(f"x: shape {list(x.shape)}; expected [N, T, F], [N, T] or a list of [T, F] arrays")
        seqs = list(x)
    bad = next((i for i, s in enumerate(seqs) if s.ndim != 2 or len(s) == 0 or not np.isfinite(s).all()), None)
    if not seqs or bad is not None:
        what = "no sequences" if not seqs else f"sequence {bad} is not a finite [T, F] array of T >= 1 steps"
        raise UserError(f"x: {what}")
    return seqs


def run_checkpoint(source):
    """A run directory as its ``best.pt``; any other model argument as it is."""
    path = Path(str(source)).expanduser()
    return path / "best.pt" if path.is_dir() else source


def load(source) -> TrainedModel:
    """A trained model to use on raw data: a checkpoint (``.pt``), a run directory (its ``best.pt``), or a shipped
    model's name (``lstm-mnist`` or ``pretrained:lstm-mnist``). ``predict`` and ``predict_proba`` take the
    sequences as they came; ``classes`` names the columns."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_model(run_checkpoint(path))
    if not path.exists() and not text.startswith(PREFIX) and (WEIGHTS_DIR / f"{text}.json").is_file():
        return load_pretrained(text)
    return load_model(source)


def load_model(source) -> TrainedModel:
    """A checkpoint's or a shipped model's ``TrainedModel`` (``source``: a path, ``pretrained:NAME``, or a
    ``ModelSource``)."""
    from .data.mnist import legacy_info
    from .training.checkpoint import (
        load_checkpoint,
        model_from_checkpoint,
        transform_from_checkpoint,
    )

    src = parse_source(source)
    if src.kind == "pretrained":
        return load_pretrained(src.location)
    if src.kind in GRAPH_SUFFIXES.values():
        raise UserError(f"{src.location}: an exported graph, not a checkpoint; this command needs a .pt or pretrained:NAME")
    ckpt = load_checkpoint(src.location)
    return TrainedModel(model_from_checkpoint(ckpt, src.location).eval(), transform_from_checkpoint(ckpt, src.location),
                        ckpt.get("data") or legacy_info())


# --- the models shipped inside the package: safetensors weights + a JSON card each ---

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def read_card(path: Path) -> dict:
    """A verified card in today's layout (cards written before the model config held dropout and init are
    migrated)."""
    card = json.loads(verify_in_manifest(path))
    card["model_config"], card["train_config"] = migrate_configs(card["model_config"], card.get("train_config"))
    return {"name": path.stem, **card}


def available(directory: Path = WEIGHTS_DIR) -> list[dict]:
    """Every shipped model's card, with its name, sorted by name."""
    return [read_card(p) for p in sorted(directory.glob("*.json"))]


def save_pretrained(trained: TrainedModel, card: dict, directory: Path, name: str) -> None:
    """Write ``NAME.safetensors`` and ``NAME.json`` (atomically): the weights, and ``card`` with the model's
    config, transform and data."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / f"{name}.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in trained.model.state_dict().items()}, str(tmp))
    data = {"data": trained.data} if trained.data is not None else {}
    write_json(directory / f"{name}.json", {
        **card,
        **data,
        "model_config": trained.config.to_dict(),
        **trained.transform.to_json(),
    })
    write_manifest(directory)


def load_pretrained(name: str, directory: Path = WEIGHTS_DIR) -> TrainedModel:
    """A shipped model, its card as ``card``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .data.mnist import legacy_info
    from .data.transform import InputTransform
    from .model.dilated import DilatedRNNClassifier

    card_path = directory / f"{name}.json"
    if not card_path.is_file():
        names = ", ".join(c["name"] for c in available(directory)) or "none"
        raise UserError(f"no pretrained model {name!r}; available: {names}")
    card = read_card(card_path)
    model = DilatedRNNClassifier.from_config(card["model_config"])
    weights = directory / f"{name}.safetensors"
    try:
        model.load_state_dict(load(verify_in_manifest(weights)), strict=True)
    except (SafetensorError, RuntimeError) as e:  # verified bytes that still do not fit: a wrong card
        raise UserError(f"{weights}: weights do not match its card ({str(e).splitlines()[0][:200]})") from None
    transform = InputTransform.from_parts(card["permutation"], card.get("normalization"),
                                          card.get("differences", False))
    return TrainedModel(model.eval(), transform,
                        card.get("data") or legacy_info(), card)
