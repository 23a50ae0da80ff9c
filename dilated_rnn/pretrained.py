"""Pretrained models shipped inside the package: safetensors weights + a JSON card each.

A card holds the model config, its input transform (the pixel permutation and
the normalization, or null), its data (spec, class names), the training config
and the measured test accuracy. Nothing is unpickled: weights load with
safetensors, cards with json, each only after its SHA-256 matches the folder's
``SHA256SUMS`` (``integrity.py``). Anywhere a checkpoint path is accepted,
``pretrained:NAME`` names one of these (``trained.py``; ``drnn pretrained`` lists them).
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import migrate_configs
from .data.mnist import legacy_info
from .data.transform import InputTransform
from .errors import UserError
from .files import atomic_path, write_json
from .integrity import verify_in_manifest, write_manifest
from .model.dilated import DilatedRNNClassifier
from .trained import TrainedModel

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
    return TrainedModel(model.eval(), InputTransform.from_parts(card["permutation"], card.get("normalization")),
                        card.get("data") or legacy_info(), card)
