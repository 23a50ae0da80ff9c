"""Self-describing checkpoints: weights + config + permutation + training state.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python
values, so it loads with ``torch.load(weights_only=True)``: nothing in it can
run code. The model is rebuilt from the stored config and loaded strictly.

Keys: format, format_version, model_config, train_config, permutation (int64
[T] or None), normalization (dict of float32 [F] mean and std, or None), data
(the dataset's description: spec, class names, ...), model (state_dict),
optimizer (state_dict), step (steps done), best (dict: step, val_accuracy), rng
(torch RNG state), elapsed_s; and, in a run that averages its weights
(``--ema``), ema (the average's state_dict); in an ensemble's, members (K: the model is an
``EnsembleClassifier`` of K classifiers). ``permutation`` and ``normalization`` are the model's
``InputTransform``.

Version 2 moved dropout, init and forget_bias from train_config to
model_config; version-1 files are migrated on load (``config.migrate_configs``).
Version 3 added normalization and data; earlier files are MNIST models without
them. Version 4 seals the file with its SHA-256 (``integrity.py``), verified
before anything in it is read; files of earlier versions carry no seal and are
verified by the CRC-32 of every entry of their zip container instead.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from ..config import ModelConfig, migrate_configs
from ..data.transform import InputTransform
from ..errors import UserError
from ..files import write_bytes
from ..integrity import seal, unseal
from ..model.dilated import DilatedRNNClassifier
from ..model.ensemble import EnsembleClassifier

FORMAT = "dilated-rnn-checkpoint"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
REQUIRED = ("model_config", "model", "permutation")


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (see module doc) atomically, stamped with the format and version."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, seal(buffer.getvalue()))


def load_checkpoint(path) -> dict:
    """Load and validate a checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    data = path.read_bytes()
    payload = unseal(data, path)
    try:
        if payload is None:  # written before seals: every zip entry's CRC-32 must hold
            bad = zipfile.ZipFile(io.BytesIO(data)).testzip()
            if bad is not None:
                raise ValueError(f"CRC mismatch in {bad}")
        ckpt = torch.load(io.BytesIO(data if payload is None else payload), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable dilated-rnn checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a dilated-rnn checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("format_version") not in READABLE_VERSIONS:
        raise UserError(
            f"{path}: checkpoint format version {ckpt.get('format_version')!r}, "
            f"this version of dilated-rnn reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if payload is None and ckpt["format_version"] >= 4:
        raise UserError(f"{path}: its checksum seal is missing or damaged")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if ckpt["format_version"] == 1:
        ckpt["model_config"], ckpt["train_config"] = migrate_configs(ckpt["model_config"], ckpt.get("train_config"))
    ckpt.setdefault("normalization", None)
    ckpt["format_version"] = FORMAT_VERSION
    return ckpt


def model_from_checkpoint(ckpt: dict, path="checkpoint") -> DilatedRNNClassifier:
    """Rebuild the classifier (an ``EnsembleClassifier`` where ``members`` says how many) from the stored config
    and load its weights strictly."""
    try:
        config = ModelConfig(**ckpt["model_config"])
        members = ckpt.get("members")
        model = (DilatedRNNClassifier.from_config(config) if not members
                 else EnsembleClassifier.from_config(config, int(members)))
        model.load_state_dict(ckpt["model"], strict=True)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: weights do not match the stored model config ({str(e).splitlines()[0]})") from None
    return model


def permutation_from_checkpoint(ckpt: dict, path="checkpoint") -> torch.Tensor | None:
    perm = ckpt["permutation"]
    if perm is None:
        return None
    if not isinstance(perm, torch.Tensor) or sorted(perm.tolist()) != list(range(len(perm))):
        raise UserError(f"{path}: stored pixel permutation is not a permutation")
    return perm.long()


def transform_from_checkpoint(ckpt: dict, path="checkpoint") -> InputTransform:
    """The model's input transform: the stored permutation, normalization and differences."""
    norm = ckpt.get("normalization")
    valid = norm is None or norm == {"per_sequence": True} or (
        isinstance(norm, dict) and all(isinstance(norm.get(k), torch.Tensor) for k in ("mean", "std")))
    if not valid:
        raise UserError(f"{path}: stored normalization is neither per-sequence nor a pair of mean and std tensors")
    differences = ckpt.get("differences", False)
    if not isinstance(differences, bool):
        raise UserError(f"{path}: stored differences is {differences!r}; expected true or false")
    return InputTransform.from_parts(permutation_from_checkpoint(ckpt, path), norm, differences)
