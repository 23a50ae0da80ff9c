"""Which backend runs the recurrences: chosen here, once, from the hardware and one switch.

Three backends, fastest first:

* ``native``: the C kernels of ``csrc/`` (``native.py``), eight rows in the AVX2
  lanes; needs an x86-64 CPU with AVX2 and FMA and a C compiler with OpenMP.
* ``numba``: the Numba kernels (``numba_kernels.py``), a row per thread; any CPU
  Numba supports (ARM and Apple Silicon included). Numba is a dependency.
* ``torch``: PyTorch's own modules (``nn.LSTM``, ...), everywhere.

``auto`` (the default) takes the first that can run here. ``$DRNN_ENGINE``
(``auto``, ``native``, ``numba`` or ``torch``) sets the choice for a process;
``use(name)`` narrows it within a block (tests, side-by-side benchmarks), as
``torch.nn.attention.sdpa_kernel`` does for attention. The fast backends run
float32 on the CPU only, and never under tracing or ONNX export, which must see
PyTorch's modules (they map to native ONNX ops): ``runs`` says whether one takes
a given input. This is the only module that reads the switch.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

from ..errors import UserError
from ..model.cells import CELL_NAMES

BACKENDS = ("native", "numba", "torch")
CHOICES = ("auto", *BACKENDS)
ENVIRONMENT = "DRNN_ENGINE"

_chosen: contextvars.ContextVar[str | None] = contextvars.ContextVar("drnn_engine", default=None)


def can_run(name: str) -> bool:
    """Whether backend ``name`` can run on this machine (the native one is compiled on the first ask)."""
    if name == "native":
        from . import native

        return native.available()
    return name in ("numba", "torch")  # Numba is a dependency; PyTorch's modules run everywhere


def _resolve(choice: str) -> str:
    if choice not in CHOICES:
        raise UserError(f"${ENVIRONMENT} is {choice!r}; expected one of {', '.join(CHOICES)}")
    if choice == "auto":  # native.available() is a flag read once it has been answered
        return next(name for name in BACKENDS if can_run(name))
    if not can_run(choice):
        raise UserError(f"the {choice} engine cannot run on this machine (${ENVIRONMENT}={choice}); "
                        f"available: {', '.join(b for b in BACKENDS if can_run(b))}")
    return choice


def backend() -> str:
    """The backend in force: ``use``'s within its block, else ``$DRNN_ENGINE``'s (default ``auto``)."""
    return _resolve(_chosen.get() or os.environ.get(ENVIRONMENT, "auto"))


@contextlib.contextmanager
def use(name: str):
    """Within the block, run backend ``name`` (or ``auto``); one that cannot run here is refused."""
    _resolve(name)
    token = _chosen.set(name)
    try:
        yield
    finally:
        _chosen.reset(token)


def fused() -> bool:
    """Whether a compiled backend (native or Numba) is in force."""
    return backend() != "torch"


def runs(x, cell: str) -> bool:
    """Whether a compiled backend takes input ``x`` of a ``cell`` stack: float32 on the CPU, not traced."""
    import torch

    if not (x.is_cpu and x.dtype == torch.float32 and cell in CELL_NAMES and fused()):
        return False
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
