"""Training an ensemble: K members of one config, each its own run on one data split with its own seed, then
one checkpoint holding all of them (``model/ensemble.py``) and its test report.

The members share the dataset as loaded (its validation split and normalization, so one input transform serves
them all); member i trains with seed ``cfg.seed + i`` (its initialisation and batch order) in ``RUN/member-i``
and is selected on validation as any run is. ``RUN/best.pt`` is the ensemble; ``RUN/test.json`` reports it
beside its members.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ParameterError
from ..files import write_json
from ..model.ensemble import EnsembleClassifier
from .checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    transform_from_checkpoint,
)
from .evaluate import evaluate
from .train import train


def train_ensemble(run_dir, data, model_config, cfg, size: int, device: str = "auto", progress: bool = True,
                   quiet: bool = False) -> dict:
    """Train ``size`` members and write the ensemble; returns its test report beside the members'."""
    if size < 2:
        raise ParameterError("ensemble", f"must be at least 2 members, got {size}")
    if cfg.permute:
        raise ParameterError("ensemble", "cannot be used with permute: each seed would draw its own step order")
    run_dir = Path(run_dir)
    results = [train(run_dir / f"member-{i}", data, model_config, dataclasses.replace(cfg, seed=cfg.seed + i),
                     device, progress=progress, quiet=quiet) for i in range(size)]
    checkpoints = [load_checkpoint(run_dir / f"member-{i}" / "best.pt") for i in range(size)]
    ensemble = EnsembleClassifier(model_from_checkpoint(c) for c in checkpoints)
    transform = transform_from_checkpoint(checkpoints[0])
    first = checkpoints[0]
    save_checkpoint(run_dir / "best.pt", {
        "model_config": first["model_config"], "train_config": first["train_config"], "members": size,
        "permutation": first["permutation"], "normalization": first.get("normalization"),
        "differences": first.get("differences", False), "data": first.get("data"),
        "model": ensemble.state_dict(), "best": {"step": None, "val_accuracy": None},
    })
    test = evaluate(ensemble, data.splits["test"].subset(cfg.test_limit), transform, cfg.eval_batch_size)
    summary = {"run_dir": str(run_dir), "finished": True, "members": size, "test": test,
               "member_tests": [r["test"] for r in results], "member_best": [r["best"] for r in results],
               "member_seconds": [r["train_seconds"] for r in results],
               "best": {"step": None, "val_accuracy": None}}
    write_json(run_dir / "test.json", summary)
    return summary
