"""Training: a step, a validation pass, and the loop that runs and checkpoints them.

A run directory holds:
  config.json     model and training config
  metrics.jsonl   one JSON record per logged step (train loss; validation when evaluated)
  last.pt         the latest state (for --resume)
  best.pt         the state with the best validation accuracy so far
  test.json       the best checkpoint's test-set report, written at the end
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, model_from_checkpoint, permutation_from_checkpoint, save_checkpoint
from .data import Split, batch_indices, pixel_permutation, to_sequences
from .distributed import any_across, barrier, check_replicas, init_from_env, mean_across, shard, wrap
from .errors import UserError
from .evaluate import evaluate
from .files import append_jsonl, read_jsonl, write_json, write_jsonl
from .model import INITS, DilatedRNNClassifier, ModelConfig
from .optim import OPTIMIZERS, SCHEDULES, lr_factor, make_optimizer, set_weight_decay, update_average


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the reference's: batch 128, lr 1e-3, RMSProp, 30,000 steps, seed 92916."""

    steps: int = 30000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "rmsprop"
    momentum: float = 0.0
    clip: float = 0.0  # max global gradient norm; 0 disables clipping
    weight_decay: float = 0.0  # decoupled, on weight matrices only; 0 disables it
    weight_decay_start: int = 0  # first step (0-based) with weight decay; before it, none
    # Dropout on each layer's outputs on their way up (model.py); 0 disables it. Under torchrun each
    # rank draws the masks of its own shard of the batch, so a run's digits differ from a one-process run's.
    dropout: float = 0.0
    # Decay of an exponential moving average of the weights (optim.update_average); 0 disables it.
    # When set, validation, best.pt and the test report use the averaged weights.
    ema: float = 0.0
    # Cross-entropy against targets with this much mass spread evenly over all classes; 0 disables it.
    # Training loss only: validation and test losses stay plain cross-entropy.
    label_smoothing: float = 0.0
    # Initialisation of the cells (model.init_cell_): "tf" (the paper's code) or "orthogonal";
    # forget_bias is the LSTM forget gate's initial bias.
    init: str = "tf"
    forget_bias: float = 1.0
    # Sharpness-aware minimisation (Foret et al., 2021; train_step): the radius of the weight
    # perturbation, 0 disables it; sam_start is the first step (0-based) that uses it.
    sam: float = 0.0
    sam_start: int = 0
    schedule: str = "constant"
    warmup: int = 0
    permute: bool = False
    seed: int = 92916
    eval_every: int = 1000
    log_every: int = 100
    eval_batch_size: int = 1000
    # Use only the first N images of a split (smoke runs); part of the run, so --resume keeps them.
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "log_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if min(self.clip, self.warmup, self.weight_decay, self.weight_decay_start, self.sam_start) < 0:
            raise ValueError("clip, warmup, weight_decay, weight_decay_start and sam_start must be non-negative")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {', '.join(INITS)}")
        if not (math.isfinite(self.sam) and self.sam >= 0):
            raise ValueError(f"sam must be a non-negative radius, got {self.sam}")
        if not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be finite, got {self.forget_bias}")
        for name in ("train_limit", "val_limit", "test_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def limit(self, splits: dict[str, Split]) -> dict[str, Split]:
        return {name: split.subset(getattr(self, f"{name}_limit")) for name, split in splits.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainingDiverged(UserError):
    pass


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, clip: float = 0.0,
               label_smoothing: float = 0.0, sam: float = 0.0) -> float:
    """One optimisation step on a batch; returns the loss (at the current weights) as a float.

    With ``sam`` > 0 the step is sharpness-aware (SAM, Foret et al., 2021): the gradient g at the
    weights w moves them to w + sam * g / ||g|| (the global L2 norm), the gradient is taken again
    there, the weights are put back exactly, and the optimizer steps with the second gradient
    (clipped, if ``clip``). It costs a second forward and backward pass.
    """
    def batch_loss():
        return nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss()
    loss.backward()
    if sam > 0:
        _sharpness_aware_gradient(model, optimizer, batch_loss, sam)
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


def _sharpness_aware_gradient(model, optimizer, batch_loss, radius: float) -> None:
    """Replace the gradients at w by those of ``batch_loss`` at w + radius * g / ||g||, then restore w bit for bit."""
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        scale = float(radius / (nn.utils.get_total_norm([p.grad for p in params]) + 1e-12))
        saved = [p.detach().clone() for p in params]
        for p in params:
            p.add_(p.grad, alpha=scale)
    optimizer.zero_grad(set_to_none=True)
    batch_loss().backward()
    with torch.no_grad():
        for p, w in zip(params, saved, strict=True):
            p.copy_(w)


def _state(model, optimizer, step, best, cfg: TrainConfig, permutation, elapsed, average=None) -> dict:
    state = {
        "model_config": model.config.to_dict(),
        "train_config": asdict(cfg),
        "permutation": permutation,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "best": dict(best),
        "rng": {"torch": torch.get_rng_state()},
        "elapsed_s": elapsed,
    }
    if average is not None:
        state["ema"] = average.state_dict()
    return state


def train(
    run_dir,
    splits: dict[str, Split],
    model_config: ModelConfig | None = None,
    cfg: TrainConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (or resume) a run in ``run_dir``; returns a summary with the best checkpoint's test report.

    Under torchrun every rank calls this; rank 0 alone writes files, logs and
    the progress bar, and alone returns the test report.

    ``stop_after`` ends this call after that many more steps, saving
    ``last.pt`` without finishing the run. Ctrl+C finishes the step in flight,
    saves ``last.pt`` and raises ``KeyboardInterrupt``.

    With ``cfg.ema`` the averaged weights are what is validated and what
    ``best.pt`` holds as its model; ``last.pt`` holds the trained weights as its
    model and the average under ``ema``, to resume both.
    """
    run_dir = Path(run_dir)
    ctx, dev = init_from_env(device)
    main = ctx.is_main
    if resume:
        run = _resumed_run(run_dir, main)
    else:
        run = _new_run(run_dir, model_config or ModelConfig(), cfg or TrainConfig(), main)
    cfg, model, permutation, start, best, elapsed, optimizer_state, average = run
    model.rnn.dropout = cfg.dropout
    model.to(dev).train()
    if average is not None:
        average.to(dev).eval()
    validated = average if average is not None else model  # what is validated and saved as best.pt
    net = wrap(model, ctx, dev)  # DDP when several processes, else the model itself
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    splits = cfg.limit(splits)
    train_split, val_split = splits["train"], splits["val"]
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    t0 = time.perf_counter() - elapsed
    loss_sum, loss_count, done = 0.0, 0, start

    def save(name):
        if not main:
            return
        if name == "best.pt":  # the validated weights alone; resuming reads last.pt
            weights, kept_average = validated, None
        else:
            weights, kept_average = model, average
        state = _state(weights, optimizer, done, best, cfg, permutation, time.perf_counter() - t0, kept_average)
        save_checkpoint(run_dir / name, state)

    with _progress(start, cfg.steps, progress and main) as bar, _deferred_interrupt() as interrupted:
        while done < end:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg.schedule, done, cfg.steps, cfg.warmup)
            if cfg.weight_decay:
                set_weight_decay(optimizer, cfg.weight_decay if done >= cfg.weight_decay_start else 0.0)
            idx = shard(batch_indices(len(train_split), cfg.batch_size, done, cfg.seed), ctx)
            x = to_sequences(train_split.images[idx], permutation).to(dev)
            sam = cfg.sam if done >= cfg.sam_start else 0.0
            loss = train_step(net, optimizer, x, train_split.labels[idx].to(dev), cfg.clip, cfg.label_smoothing, sam)
            loss = mean_across(loss, ctx, dev)
            if average is not None:
                update_average(average, model, cfg.ema, done)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged: loss {loss} at step {done + 1}; "
                    f"{run_dir / 'last.pt'} keeps the last good state"
                )
            done += 1
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            evaluate_now = done % cfg.eval_every == 0 or done == cfg.steps
            if evaluate_now or done % cfg.log_every == 0:
                record = {"step": done, "train_loss": loss_sum / loss_count,
                          "lr": optimizer.param_groups[0]["lr"], "elapsed_s": time.perf_counter() - t0}
                loss_sum, loss_count = 0.0, 0
                if evaluate_now:
                    check_replicas(model, ctx, dev)
                    val = evaluate(validated, val_split, permutation, cfg.eval_batch_size, dev)
                    record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                # Log before checkpointing: a crash in between makes --resume replay (and re-log) this step,
                # never lose its record.
                if main:
                    append_jsonl(run_dir / "metrics.jsonl", record)
                if evaluate_now:
                    if val["accuracy"] > best["val_accuracy"]:
                        best = {"step": done, "val_accuracy": val["accuracy"]}
                        save("best.pt")
                    save("last.pt")
                    if main:
                        bar.write(f"step {done}: val accuracy {100 * val['accuracy']:.2f}%, loss {val['loss']:.4f}")
            if any_across(interrupted(), ctx, dev):
                save("last.pt")
                raise KeyboardInterrupt
    if done < cfg.steps:
        save("last.pt")
        return {"run_dir": str(run_dir), "step": done, "finished": False, "best": best}
    if main:
        result = finish(run_dir, splits, cfg.eval_batch_size, dev)
    else:
        result = {"run_dir": str(run_dir), "step": done, "finished": True, "best": best, "rank": ctx.rank}
    barrier(ctx)  # no rank tears down the process group while rank 0 still reports
    return result


def _new_run(run_dir: Path, model_config: ModelConfig, cfg: TrainConfig, main: bool):
    if (run_dir / "last.pt").exists():
        raise UserError(f"{run_dir}: already holds a run; use --resume {run_dir} or another --run-dir")
    torch.manual_seed(cfg.seed)
    model = DilatedRNNClassifier.from_config(model_config)
    if (cfg.init, cfg.forget_bias) != ("tf", 1.0):  # a default run's draw above stays as it always was
        torch.manual_seed(cfg.seed)  # the cells drawn again from the seed; the head stays a default run's
        try:
            model.rnn.reset_parameters(cfg.init, cfg.forget_bias)
        except ValueError as e:
            raise UserError(f"--forget-bias: {e}") from None  # the one choice init_cell_ refuses
    average = copy.deepcopy(model) if cfg.ema else None
    permutation = pixel_permutation(cfg.seed) if cfg.permute else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"model": model.config.to_dict(), "train": asdict(cfg)})
    return cfg, model, permutation, 0, {"step": 0, "val_accuracy": -1.0}, 0.0, None, average


def _resumed_run(run_dir: Path, main: bool):
    """Everything ``last.pt`` stores: config, weights, permutation, step, best, time, optimizer, RNG, average."""
    path = run_dir / "last.pt"
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    average = None
    if cfg.ema:
        if "ema" not in ckpt:
            raise UserError(f"{path}: the run averages its weights (ema {cfg.ema}) but the checkpoint has no average")
        average = model_from_checkpoint({**ckpt, "model": ckpt["ema"]}, path)
    torch.set_rng_state(ckpt["rng"]["torch"])
    metrics = run_dir / "metrics.jsonl"
    if main and metrics.exists():  # records logged after the checkpoint will be replayed, so drop them
        write_jsonl(metrics, [r for r in read_jsonl(metrics) if r.get("step", 0) <= ckpt["step"]])
    return (cfg, model, permutation_from_checkpoint(ckpt, path),
            ckpt["step"], ckpt["best"], ckpt["elapsed_s"], ckpt["optimizer"], average)


def finish(run_dir: Path, splits: dict[str, Split], batch_size: int, dev) -> dict:
    """Test-set report of the best checkpoint, written to ``test.json``."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(ckpt, run_dir / "best.pt").to(dev)
    report = evaluate(model, splits["test"], permutation_from_checkpoint(ckpt), batch_size, dev)
    last = load_checkpoint(run_dir / "last.pt")
    summary = {
        "run_dir": str(run_dir),
        "step": last["step"],
        "finished": True,
        "best": ckpt["best"],
        "train_seconds": last["elapsed_s"],
        "test": report,
    }
    write_json(run_dir / "test.json", summary)
    return summary


def _progress(start: int, total: int, enabled: bool) -> tqdm:
    return tqdm(initial=start, total=total, disable=not enabled, unit="step", dynamic_ncols=True)


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn Ctrl+C into a flag the loop checks between steps, so a save never sees a half-done step."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    flag = []
    previous = signal.signal(signal.SIGINT, lambda *_: flag.append(True))
    try:
        yield lambda: bool(flag)
    finally:
        signal.signal(signal.SIGINT, previous)
