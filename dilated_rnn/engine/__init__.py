"""The CPU engine: the compiled recurrences every fast path runs, and the one place that picks them.

``dispatch`` chooses the backend (native C, Numba or PyTorch's modules) from
the hardware and ``$DRNN_ENGINE``; ``recurrence`` runs a layer for training
(forward and backward through time in one call each); ``stack`` runs a whole
pruned stack or a streamed chunk for inference and keeps, per model, what the
kernels need (packed plans and weights). The model asks these functions; it
holds none of their state, and they read only its public attributes.
"""

from .dispatch import BACKENDS, backend, can_run, fused, runs, use
from .recurrence import run_layer
from .stack import (
           ClassifierStream,
           freeze,
           pack_weights,
           stack_arrays,
           stack_outputs,
           stream_registers,
)

__all__ = ["BACKENDS", "ClassifierStream", "backend", "can_run", "freeze", "fused", "pack_weights", "run_layer",
           "runs", "stack_arrays", "stack_outputs", "stream_registers", "use"]
