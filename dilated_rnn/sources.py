"""What a model argument names, and the model it loads: one parser that every command calls.

A model argument is a checkpoint written by ``drnn train`` (``.pt``), a shipped
model (``pretrained:NAME``, listed by ``drnn pretrained``), or, where a command
runs exported graphs, an ``.onnx`` file or an OpenVINO IR (``.xml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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


class LoadedModel(NamedTuple):
    model: object  # DilatedRNNClassifier, in evaluation mode
    transform: object  # its InputTransform: raw inputs -> the model's
    data: dict  # datasets.Dataset.info() of the data it was trained on: spec, class names, lengths


def load_model(source) -> LoadedModel:
    """A checkpoint's or a shipped model's classifier, input transform and data description."""
    from .checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
    from .datasets import mnist_info
    from .errors import UserError
    from .pretrained import load_pretrained

    src = parse_source(source)
    if src.kind == "pretrained":
        model, transform, card = load_pretrained(src.location)
        return LoadedModel(model, transform, card.get("data") or mnist_info())
    if src.kind in GRAPH_SUFFIXES.values():
        raise UserError(f"{src.location}: an exported graph, not a checkpoint; this command needs a .pt or pretrained:NAME")
    ckpt = load_checkpoint(src.location)
    return LoadedModel(model_from_checkpoint(ckpt, src.location).eval(), transform_from_checkpoint(ckpt, src.location),
                       ckpt.get("data") or mnist_info())
