"""Data-parallel training under torchrun: set-up from the environment, batch sharding, small collectives.

With one process every helper here is the identity, so the training loop has
a single code path. Under ``torchrun --nproc_per_node N`` each rank takes an
equal shard of every global batch (``--batch-size`` is the global batch), DDP
averages the gradients, and so every step equals a single-process step on the
whole batch. Backends: NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from ..errors import ParameterError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("device", f"{name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ParameterError("device", f"must be auto, cpu, cuda or cuda:N, got {name!r}") from None


def init_from_env(device: str = "auto") -> tuple[Context, torch.device]:
    """The process's rank and device; joins the process group when torchrun started several."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context(), dev
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world), dev


def wrap(model: torch.nn.Module, ctx: Context, dev: torch.device) -> torch.nn.Module:
    if ctx.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def shard(indices: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's equal share of a global batch."""
    if len(indices) % ctx.world:
        raise ParameterError("batch_size", f"{len(indices)} is not divisible by the {ctx.world} processes")
    return indices[ctx.rank :: ctx.world]


def mean_across(value: float, ctx: Context, dev: torch.device) -> float:
    if ctx.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.item() / ctx.world


def max_across(value: int, ctx: Context, dev: torch.device) -> int:
    if ctx.world == 1:
        return value
    t = torch.tensor([int(value)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def any_across(flag: bool, ctx: Context, dev: torch.device) -> bool:
    return bool(max_across(int(flag), ctx, dev))


def check_replicas(model: torch.nn.Module, ctx: Context, dev: torch.device) -> None:
    """Raise if any rank's weights differ from rank 0's in any bit (they must, after DDP's all-reduce)."""
    if ctx.world == 1:
        return
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    differs = any_across(not torch.equal(flat, reference), ctx, dev)
    if differs:
        raise RuntimeError("data-parallel replicas diverged: weights differ between ranks")


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()


_ran_group = False  # whether this process joined a process group (and so may hold gloo's threads)


def shutdown() -> None:
    global _ran_group
    if dist.is_initialized():
        dist.destroy_process_group()
        _ran_group = True


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``; one that ran a process group (a torchrun worker) skips the teardown.

    Data-parallel training keeps gloo's process group, and with it three native threads (``gloo_tcp_loop``,
    two ``pt_gloo_runloop``), alive after ``destroy_process_group``: any ``DistributedDataParallel`` model,
    even one deleted before, holds it (PyTorch 2.13). Those threads would be torn down by the interpreter's
    finalization and the C++ runtime's exit-time destructors, in whatever order they run, while the threads
    still run; the aborts at exit ("terminate called without an active exception": a native thread object
    destroyed while its thread runs) came from that phase, after the results were written. So such a worker,
    its files written and closed and its group destroyed, flushes its streams and leaves with ``os._exit``,
    as multiprocessing's workers do; any other process exits normally.
    """
    if _ran_group:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
