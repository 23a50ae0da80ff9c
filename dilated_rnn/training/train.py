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
import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import ModelConfig, TrainConfig
from ..data.augment import augment_batch, mix, mixup_pairs
from ..data.datasets import check_readout
from ..data.mnist import legacy_info, pixel_permutation
from ..data.splits import Dataset, batch_indices
from ..data.transform import InputTransform
from ..errors import ParameterError, TrainingDiverged, UserError
from ..files import append_jsonl, exclusive, read_jsonl, write_json, write_jsonl
from ..model.dilated import DilatedRNNClassifier
from ..model.pruning import plan_outputs
from .checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    transform_from_checkpoint,
)
from .distributed import (
    barrier,
    check_replicas,
    init_from_env,
    max_across,
    mean_across,
    shard,
    wrap,
)
from .evaluate import evaluate, per_example
from .optim import WeightAverage, lr_factor, make_optimizer, set_weight_decay
from .process import check_memory, keep_freed_memory

__all__ = ["ModelConfig", "Run", "TrainConfig", "TrainingDiverged", "finish", "train", "train_step"]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, clip: float = 0.0,
               label_smoothing: float = 0.0, sam: float = 0.0, lengths=None, class_weights=None,
               mixup=None) -> float:
    """One optimisation step on a batch; returns the loss (at the current weights) as a float.

    With ``sam`` > 0 the step is sharpness-aware (SAM, Foret et al., 2021): the gradient g at the
    weights w moves them to w + sam * g / ||g|| (the global L2 norm), the gradient is taken again
    there, the weights are put back exactly, and the optimizer steps with the second gradient
    (clipped, if ``clip``). It costs a second forward and backward pass. ``class_weights`` [K]: each
    example's loss weighted by its class's (the weighted mean, as ``cross_entropy`` takes it). ``mixup``:
    (partner [B], weight): the batch mixed with its partners (``augment.mix``), the loss mixed alike.
    """
    inputs, sizes = (x, lengths) if mixup is None else mix(x, lengths, *mixup)
    targets = [(y, 1.0)] if mixup is None else [(y, mixup[1]), (y[mixup[0]], 1 - mixup[1])]

    def batch_loss():
        logits = model(inputs) if sizes is None else model(inputs, sizes)
        return sum(w * nn.functional.cross_entropy(*per_example(logits, t), weight=class_weights,
                                                   label_smoothing=label_smoothing) for t, w in targets)

    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss()
    loss.backward()
    if sam > 0:
        _sharpness_aware_gradient(model, optimizer, batch_loss, sam)
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Balanced class weights [K] of a training split's labels: N / (K * count_k), 0 for an absent class."""
    counts = torch.bincount(labels.reshape(-1), minlength=num_classes).double()
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), 0.0).float()


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


class Interrupted(KeyboardInterrupt):
    """Training stopped between steps by a signal, ``last.pt`` saved; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Run:
    """A run in progress: what ``last.pt`` stores, plus the clock and the best weights this process holds."""

    run_dir: Path
    cfg: TrainConfig
    model: DilatedRNNClassifier
    transform: InputTransform  # raw inputs -> the model's (permutation, normalization)
    data: dict  # Dataset.info(): spec, class names, lengths
    average: WeightAverage | None = None  # with cfg.ema: what is validated, kept and tested
    step: int = 0  # steps done
    best: dict = field(default_factory=lambda: {"step": 0, "val_accuracy": -1.0})
    best_weights: dict | None = None  # the weights of ``best``, once this process validated them
    optimizer_state: dict | None = None  # from last.pt, until the optimizer exists
    started: float = field(default_factory=time.perf_counter)  # perf_counter() at training second 0

    @property
    def validated(self) -> DilatedRNNClassifier:
        return self.average.module if self.average is not None else self.model

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def state(self, optimizer, best: bool = False) -> dict:
        """The checkpoint: ``best.pt`` holds the validated weights alone; ``last.pt`` all that resuming needs."""
        state = {
            "model_config": self.model.config.to_dict(),
            "train_config": asdict(self.cfg),
            "permutation": self.transform.permutation,
            "normalization": self.transform.normalization,
            "differences": self.transform.differences,
            "data": self.data,
            "model": (self.validated if best else self.model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": self.step,
            "best": dict(self.best),
            "rng": {"torch": torch.get_rng_state()},
            "elapsed_s": self.seconds(),
        }
        if self.average is not None and not best:
            state["ema"] = self.average.state_dict()
        return state


def start_run(run_dir: Path, dataset: Dataset, model_config: ModelConfig, cfg: TrainConfig, main: bool = True) -> Run:
    """A new run: weights drawn from the seed, the input transform, ``config.json`` written."""
    if (run_dir / "last.pt").exists():
        raise UserError(f"{run_dir}: already holds a run; resume it or choose another run directory")
    torch.manual_seed(cfg.seed)
    model = DilatedRNNClassifier.from_config(model_config)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    permutation = pixel_permutation(cfg.seed, dataset.fixed_length) if cfg.permute else None
    transform = dataclasses.replace(dataset.transform, permutation=permutation)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"model": model.config.to_dict(), "train": asdict(cfg),
                                             "data": dataset.info(), **transform.to_json()})
    return Run(run_dir, cfg, model, transform, dataset.info(), average)


def _check_fit(dataset: Dataset, config: ModelConfig, cfg: TrainConfig) -> None:
    """Before anything is written or allocated: the model's input and output sizes are the data's, the readout
    fits the shortest sequence, a batch fits the training split, and a step fits the machine's memory."""
    if (config.input_size, config.num_classes) != (dataset.model_features, dataset.num_classes):
        what = " with their differences" if dataset.transform.differences else ""
        raise UserError(f"{dataset.spec}: {dataset.model_features} channels{what} and {dataset.num_classes} classes, "
                        f"but the model takes {config.input_size} and predicts {config.num_classes}")
    if cfg.permute and dataset.fixed_length is None:
        raise ParameterError("permute", "needs sequences of one length; this data's lengths vary")
    check_readout(dataset, config.dilations[0])
    train = len(dataset.splits["train"].subset(cfg.train_limit))
    if cfg.batch_size > train:
        raise ParameterError("batch_size", f"is {cfg.batch_size}, more than the {train} training sequences; "
                                           "a batch must fit the training split")
    T = dataset.train_max_length
    steps = T * len(config.dilations) if config.readout == "every" else plan_outputs(
        T, config.dilations, range(T - config.dilations[0], T)).cell_steps
    check_memory(config, cfg.batch_size, steps)


def resume_run(run_dir: Path, main: bool = True) -> Run:
    """The run that ``last.pt`` stores: config, weights, average, permutation, step, best, time, optimizer, RNG."""
    path = run_dir / "last.pt"
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    average = None
    if cfg.ema:
        if "ema" not in ckpt:
            raise UserError(f"{path}: the run averages its weights (ema {cfg.ema}) but the checkpoint has no average")
        average = WeightAverage(model_from_checkpoint({**ckpt, "model": ckpt["ema"]}, path), cfg.ema)
    run = Run(run_dir, cfg, model_from_checkpoint(ckpt, path), transform_from_checkpoint(ckpt, path),
              ckpt.get("data") or legacy_info(), average, step=ckpt["step"], best=ckpt["best"], optimizer_state=ckpt["optimizer"],
              started=time.perf_counter() - ckpt["elapsed_s"])
    torch.set_rng_state(ckpt["rng"]["torch"])  # after building the models, whose construction draws from it
    metrics = run_dir / "metrics.jsonl"
    if main and metrics.exists():  # records logged after the checkpoint will be replayed, so drop them
        write_jsonl(metrics, [r for r in read_jsonl(metrics) if r.get("step", 0) <= ckpt["step"]])
    return run


def describe(dataset: Dataset, model: ModelConfig, cfg: TrainConfig) -> list[str]:
    """The data and the recipe of a run, in a few lines: what ``drnn train`` shows before its first step."""
    sizes = {name: len(split.subset(getattr(cfg, f"{name}_limit"))) for name, split in dataset.splits.items()}
    lengths = sorted({n for split in dataset.splits.values() for n in split.length_set()})
    steps = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
    classes = ", ".join(dataset.classes[:8]) + (", ..." if len(dataset.classes) > 8 else "")
    differences = " and their first differences" if dataset.transform.differences else ""
    epochs = cfg.steps * cfg.batch_size / max(1, sizes["train"])
    units = (f"{model.hidden_sizes[0]}" if len(set(model.hidden_sizes)) == 1
             else ",".join(map(str, model.hidden_sizes)))
    return [
        f"data      {dataset.spec}: {sizes['train']} train, {sizes['val']} validation ({dataset.val_source}), "
        f"{sizes['test']} test sequences",
        f"          {dataset.num_features} channel(s){differences}, {steps} steps, {dataset.num_classes} classes "
        f"({classes})",
        f"model     {model.cell}, {len(model.hidden_sizes)} layers x {units} units, dilations "
        f"{','.join(map(str, model.dilations))}, readout {model.readout}",
        f"recipe    {cfg.recipe}: {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}), batch {cfg.batch_size}, {cfg.steps} "
        f"steps (~{epochs:.1f} epochs), normalize {cfg.normalize} "
        f"({'sequence' if dataset.transform.per_sequence else 'channel' if dataset.transform.mean is not None else 'none'}"
        f"), augment {cfg.augment or 'none'}{f', mixup {cfg.mixup:g}' if cfg.mixup else ''}, class weight "
        f"{cfg.class_weight}, seed {cfg.seed}",
    ]


def stored_train_config(run_dir) -> TrainConfig:
    """The training config of the run in ``run_dir`` (its ``config.json``), to load its data before resuming."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():  # written by a run's first step; without it, say what last.pt says
        return TrainConfig.from_dict(load_checkpoint(Path(run_dir) / "last.pt")["train_config"])
    return TrainConfig.from_dict(json.loads(path.read_text())["train"])


def train(
    run_dir,
    data: Dataset,
    model_config: ModelConfig | None = None,
    cfg: TrainConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    steps: int | None = None,
    quiet: bool = False,
) -> dict:
    """Train (or resume) a run in ``run_dir`` on ``data``; returns a summary with the best checkpoint's test report.

    ``data`` is a ``Dataset`` (``data.datasets.load_dataset``; MNIST: ``data.mnist.load_mnist``). ``quiet``:
    print nothing (a library caller's choice; the CLI prints a line per log and validation). Under
    torchrun every rank calls this; rank 0 alone writes files, logs and the progress bar, and alone
    returns the test report.

    ``stop_after`` ends this call after that many more steps, saving
    ``last.pt`` without finishing the run. ``steps`` (resume only) moves the run's end, a finished
    run's too; with a constant learning rate the run is then the one that had that end from the start. Ctrl+C finishes the step in flight,
    saves ``last.pt`` and raises ``Interrupted`` (a ``KeyboardInterrupt``); so does SIGTERM.

    With ``cfg.ema`` the averaged weights are what is validated and what
    ``best.pt`` holds as its model; ``last.pt`` holds the trained weights as its
    model and the average under ``ema``, to resume both.
    """
    run_dir = Path(run_dir)
    model_config, cfg = model_config or ModelConfig(), cfg or TrainConfig()
    if not resume:  # before anything is written
        _check_fit(data, model_config, cfg)
    ctx, dev = init_from_env(device)
    fresh = ctx.is_main and not resume and not run_dir.exists()
    try:
        with exclusive(run_dir) if ctx.is_main else contextlib.nullcontext():  # one process writes a run directory
            run = (resume_run(run_dir, ctx.is_main) if resume
                   else start_run(run_dir, data, model_config, cfg, ctx.is_main))
            if resume and steps is not None and steps != run.cfg.steps:
                _move_end(run, steps, ctx.is_main)
            return _train(run, data, ctx, dev, progress, stop_after, quiet)
    except Exception as e:
        if fresh and not isinstance(e, TrainingDiverged) and not (run_dir / "last.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # a run that never saved a step leaves nothing behind
        raise


def _move_end(run: Run, steps: int, main: bool) -> None:
    """Give a resumed run a new last step (its config.json follows); see ``train``."""
    if run.cfg.schedule != "constant" or run.cfg.warmup:
        raise ParameterError("steps", f"can change on resume only with a constant learning rate, not the "
                                      f"{run.cfg.schedule} schedule of {run.run_dir} (whose rates depend on its end)")
    if steps < run.step:
        raise ParameterError("steps", f"must be at least the {run.step} steps {run.run_dir} has taken, got {steps}")
    run.cfg = dataclasses.replace(run.cfg, steps=steps)
    config = run.run_dir / "config.json"
    if main and config.is_file():
        write_json(config, {**json.loads(config.read_text()), "train": asdict(run.cfg)})


def _train(run: Run, data: Dataset, ctx, dev, progress: bool, stop_after: int | None, quiet: bool = False) -> dict:
    """The loop of ``train``: steps, logs, validations and checkpoints, then the test report."""
    run_dir, main, cfg = run.run_dir, ctx.is_main, run.cfg
    keep_freed_memory()
    optimizer = _to_device(run, dev)
    net = wrap(run.model, ctx, dev)  # DDP when several processes, else the model itself
    splits = {name: split.subset(getattr(cfg, f"{name}_limit")) for name, split in data.splits.items()}
    end = cfg.steps if stop_after is None else min(cfg.steps, run.step + stop_after)
    save = (lambda name: _save(run, optimizer, name)) if main else (lambda name: None)
    losses = []
    weights = (class_weights(splits["train"].labels, run.model.config.num_classes).to(dev)
               if cfg.class_weight == "balanced" else None)  # of the whole training split, once
    bar_on = progress and main and sys.stderr.isatty()  # a bar on a terminal; plain lines in a log file
    with _progress(run.step, cfg.steps, bar_on) as bar, _deferred_interrupt() as interrupted:
        say = (bar.write if bar_on else lambda line: print(line, flush=True)) if main and not quiet else None
        while run.step < end:
            losses.append(_take_step(run, net, optimizer, splits["train"], ctx, dev, weights))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            validate_now = run.step % cfg.eval_every == 0 or run.step == cfg.steps
            if validate_now or run.step % cfg.log_every == 0:
                val = splits["val"] if validate_now and len(splits["val"]) else None  # none: val_fraction 0
                record = _log(run, losses, optimizer, val, ctx, dev, main)
                losses = []
                if validate_now:  # after the log: a crash in between replays this step, never loses its record
                    _checkpoint(run, record, save, say)
                elif say is not None and not bar_on:
                    say(f"step {run.step}/{cfg.steps}: train loss {record['train_loss']:.4f}")
            signum = max_across(interrupted(), ctx, dev)  # every rank stops at the same step
            if signum:
                save("last.pt")
                raise Interrupted(signum)
    if run.step < cfg.steps:
        save("last.pt")
        return {"run_dir": str(run_dir), "step": run.step, "finished": False, "best": run.best}
    result = finish(run, splits["test"], dev) if main else {
        "run_dir": str(run_dir), "step": run.step, "finished": True, "best": run.best, "rank": ctx.rank}
    barrier(ctx)  # no rank tears down the process group while rank 0 still reports
    return result


def _to_device(run: Run, dev: torch.device) -> torch.optim.Optimizer:
    """Move the run's models to ``dev`` and make its optimizer there (restored when resuming)."""
    cfg = run.cfg
    run.model.to(dev).train()
    if run.average is not None:
        run.average.module.to(dev).eval()
    optimizer = make_optimizer(cfg.optimizer, run.model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    if run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
        run.optimizer_state = None
    return optimizer


def _take_step(run: Run, net: nn.Module, optimizer, train_split, ctx, dev, weights=None) -> float:
    """Training step number ``run.step`` at its scheduled settings; returns its loss (mean over ranks).
    ``weights``: the class weights of the loss (``class_weights``), or None."""
    cfg, step = run.cfg, run.step
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(cfg.schedule, step, cfg.steps, cfg.warmup)
    if cfg.weight_decay:
        set_weight_decay(optimizer, cfg.weight_decay if step >= cfg.weight_decay_start else 0.0)
    idx = shard(batch_indices(len(train_split), cfg.batch_size, step, cfg.seed), ctx)
    x, lengths = train_split.batch(idx)
    x, lengths = run.transform(x, lengths).to(dev), None if lengths is None else lengths.to(dev)
    x = augment_batch(x, lengths, cfg.augmentations, cfg.seed, step)
    mixup = mixup_pairs(len(idx), cfg.mixup, cfg.seed, step) if cfg.mixup > 0 else None
    sam = cfg.sam if step >= cfg.sam_start else 0.0
    loss = train_step(net, optimizer, x, train_split.labels[idx].to(dev), cfg.clip, cfg.label_smoothing, sam,
                      lengths=lengths, class_weights=weights, mixup=mixup)
    loss = mean_across(loss, ctx, dev)
    if run.average is not None:
        run.average.update(run.model, step)
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: loss {loss} at step {step + 1}; {run.run_dir / 'last.pt'} keeps the last good state"
        )
    run.step += 1
    return loss


def _log(run: Run, losses: list[float], optimizer, val_split, ctx, dev, main: bool) -> dict:
    """The metrics record of this step (mean training loss since the last; validation if ``val_split``)."""
    record = {"step": run.step, "train_loss": sum(losses) / len(losses), "lr": optimizer.param_groups[0]["lr"],
              "elapsed_s": run.seconds()}
    if val_split is not None:
        check_replicas(run.model, ctx, dev)
        val = evaluate(run.validated, val_split, run.transform, run.cfg.eval_batch_size, dev)
        record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    if main:
        append_jsonl(run.run_dir / "metrics.jsonl", record)
    return record


def _checkpoint(run: Run, record: dict, save, say) -> None:
    """After a validation: ``best.pt`` if it is the best yet, then ``last.pt``, then a line for the user."""
    _keep_if_best(run, record, save)
    save("last.pt")
    if say is not None and "val_accuracy" not in record:
        say(f"step {run.step}: train loss {record['train_loss']:.4f} (no validation split: best.pt is this step)")
    elif say is not None:
        say(f"step {run.step}: train loss {record['train_loss']:.4f}, val accuracy {100 * record['val_accuracy']:.2f}%, "
            f"loss {record['val_loss']:.4f}")


def _keep_if_best(run: Run, record: dict, save) -> None:
    """Keep the validated weights if their accuracy is the best yet (ties: ``cfg.select_ties``); without a
    validation split (``val_fraction`` 0), the latest weights."""
    if "val_accuracy" not in record:
        run.best = {"step": run.step, "val_accuracy": None}
        run.best_weights = {k: v.detach().clone() for k, v in run.validated.state_dict().items()}
        save("best.pt")
        return
    accuracy, loss = record["val_accuracy"], record["val_loss"]
    tie_won = (run.cfg.select_ties == "loss" and accuracy == run.best["val_accuracy"]
               and loss < run.best.get("val_loss", math.inf))
    if accuracy > run.best["val_accuracy"] or tie_won:
        run.best = {"step": run.step, "val_accuracy": accuracy, "val_loss": loss}
        run.best_weights = {k: v.detach().clone() for k, v in run.validated.state_dict().items()}
        save("best.pt")


def _save(run: Run, optimizer, name: str) -> None:
    save_checkpoint(run.run_dir / name, run.state(optimizer, best=name == "best.pt"))


def finish(run: Run, test, dev) -> dict:
    """Test-set report of the best validated weights, written to ``test.json``."""
    if run.best_weights is not None:
        model = copy.deepcopy(run.model)
        model.load_state_dict(run.best_weights)
    else:  # a resumed run whose best came before this process
        model = model_from_checkpoint(load_checkpoint(run.run_dir / "best.pt"), run.run_dir / "best.pt")
    summary = {
        "run_dir": str(run.run_dir),
        "step": run.step,
        "finished": True,
        "best": run.best,
        "train_seconds": run.seconds(),
        "test": evaluate(model.to(dev), test, run.transform, run.cfg.eval_batch_size, dev),
    }
    write_json(run.run_dir / "test.json", summary)
    return summary


def _progress(start: int, total: int, enabled: bool) -> tqdm:
    return tqdm(initial=start, total=total, disable=not enabled, unit="step", dynamic_ncols=True)


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn Ctrl+C (SIGINT) and a scheduler's SIGTERM into a flag the loop checks between steps, so a
    save never sees a half-done step; the flag is the signal's number (0: none)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    caught = []
    handlers = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: caught[0] if caught else 0
    finally:
        for s, previous in handlers.items():
            signal.signal(s, previous)
