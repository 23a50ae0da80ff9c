"""Dilated recurrent neural networks.

S. Chang, Y. Zhang, W. Han, M. Yu, X. Guo, W. Tan, X. Cui, M. Witbrock,
M. Hasegawa-Johnson, T. S. Huang. "Dilated Recurrent Neural Networks",
NeurIPS 2017, arXiv:1710.02224.

Glossary (code letter -> paper symbol)
  B   batch size
  T   sequence length (784 for pixel MNIST)
  F   input features per step (1 for pixel MNIST)
  H   hidden units of a layer (H_l for layer l; the paper's hidden_structs)
  d   dilation of a layer, d_l = s^(l) in the paper; d0 = the first layer's
  R   number of chains a layer computes (residues t mod d)
  n   steps per chain
  K   number of classes

Layer l is a dilated recurrent layer (paper eq. 1):

    c_t^(l) = f(c_t^(l-1), c_{t-d_l}^(l)),   c_t^(-1) = x_t,

with a zero state for t < d_l. ``f`` is a plain ``rnn`` (tanh), ``lstm`` or
``gru`` cell; for the LSTM the state is the pair (h, c) and the output is h.
The steps with the same residue t mod d form an independent chain, a plain
RNN over x_r, x_{r+d}, x_{r+2d}, ... A sequence whose length is not a
multiple of d is zero-padded at the end (the paper's padding): padded steps
come after every real step of a chain, so they never change a real output.

Two ways to run the stack, with identical results:

* ``DilatedRNN.forward`` computes every step: each layer folds its d chains
  into the batch and runs one recurrence over B*d rows (``engine.run_layer``:
  on the CPU in float32 one compiled call forward and one backward; else
  PyTorch's module).
* ``DilatedRNN.outputs_at`` computes only the steps that the requested
  outputs depend on (``pruning.plan_outputs``). A classifier reads the last
  step only; with nested dilations (each divides the next) layer l then needs
  the single chain t = T-1 (mod d_l): 1,568 cell steps per 784-pixel image
  for dilations 1..256 instead of 7,056. On the CPU in float32 the engine
  runs each layer's recurrence there as one compiled call, or, for inference,
  the whole stack as one (``dilated_rnn.engine``; ``engine.use("torch")``
  keeps PyTorch's modules).

A third way, ``stream``, feeds the stack a chunk of samples at a time and
carries each layer's last d_l states between calls (``model/streaming.py``); chunks
of any sizes give the outputs of the whole sequence.

A batch of sequences of different lengths (``lengths``, each padded at the
end) is read at each sequence's own last step; ``DilatedRNNClassifier.forward``
keeps that exact and pays only for the real steps.

Dropout (``dropout`` > 0, training mode only) is part of the config but acts
only in training: each layer's outputs are dropped on their way up,
into the next layer or the classifier's head, never along the recurrent
connections (Zaremba et al., arXiv:1409.2329). Both ways above apply one mask
entry per (row, step, unit) output, so they draw from the same distribution; the
pruned way draws only the entries it reads. In evaluation mode it does nothing.

Initialisation follows the TensorFlow recipe of the paper's code by default (see
``init_cell_`` and ``DilatedRNNClassifier.reset_parameters``); the config's
``init`` and ``forget_bias`` choose orthogonal blocks and another LSTM
forget-gate bias. Cells use
PyTorch's gate order and GRU formulation (the candidate applies the reset gate
after the recurrent matrix product, as cuDNN does).
"""

from __future__ import annotations

import functools
from dataclasses import fields

import torch
from torch import nn

from .. import engine
from ..config import POOLED, ModelConfig, validate_stack
from .cells import CELLS, init_cell_
from .pruning import plan_outputs
from .streaming import StreamState, stream_classifier, stream_stack

__all__ = ["DilatedRNN", "DilatedRNNClassifier"]


class DilatedRNN(nn.Module):
    """A stack of dilated recurrent layers. Input [B, T, F], batch first.

    ``dropout``, ``init`` and ``forget_bias`` are as in ``ModelConfig``; the cells
    are drawn with that initialisation on construction.
    """

    def __init__(self, input_size: int, hidden_sizes, dilations, cell: str = "lstm", dropout: float = 0.0,
                 init: str = "tf", forget_bias: float = 1.0):
        super().__init__()
        cell = cell.lower()
        hidden_sizes, dilations = tuple(hidden_sizes), tuple(dilations)
        validate_stack(input_size, hidden_sizes, dilations, cell)
        self.cell = cell
        self.dilations = dilations
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout  # on each layer's outputs, in training mode (module doc)
        sizes = (input_size,) + hidden_sizes
        module = getattr(nn, CELLS[cell].module)
        # Parameters depend on sizes and cell only, never on the dilations.
        self.layers = nn.ModuleList(
            module(sizes[i], sizes[i + 1], batch_first=True) for i in range(len(hidden_sizes))
        )
        self.reset_parameters(init, forget_bias)

    def reset_parameters(self, init: str = "tf", forget_bias: float = 1.0) -> None:
        """Draw every cell afresh (``init_cell_``)."""
        for layer in self.layers:
            init_cell_(layer, self.cell, init, forget_bias)

    def check_input(self, x: torch.Tensor) -> None:
        """A ``ValueError`` saying what was expected unless x is [B, T, F] with the stack's F channels, T >= 1."""
        F = self.layers[0].input_size
        if x.dim() != 3 or x.shape[2] != F or x.shape[1] < 1:
            raise ValueError(f"expected input [batch, steps >= 1, {F} channel(s)], got shape {list(x.shape)}")

    def forward(self, x: torch.Tensor, every_layer: bool = False) -> torch.Tensor:
        """Every step of the top layer: [B, T, F] -> [B, T, H_top]; ``every_layer``: of every layer, concatenated
        bottom first, [B, T, sum of H_l]."""
        self.check_input(x)
        B, T, _ = x.shape
        h, outputs = x, []
        for i, (layer, d) in enumerate(zip(self.layers, self.dilations)):
            if i > 0:
                h = self.drop(h)
            n = (T + d - 1) // d  # steps per chain, ceil(T / d) (not -(-T // d): ONNX divides truncating)
            h = nn.functional.pad(h, (0, 0, 0, n * d - T))  # [B, n*d, F_l], zeros at the end
            # Step k*d + r goes to chain r: [B, n, d, F_l] -> [B, d, n, F_l] -> [B*d, n, F_l]
            h = h.reshape(B, n, d, -1).transpose(1, 2).reshape(B * d, n, -1)
            h = engine.run_layer(layer, h, self.cell)  # [B*d, n, H_l]
            # Back to time order: [B, d, n, H_l] -> [B, n, d, H_l] -> [B, n*d, H_l] -> [B, T, H_l]
            h = h.reshape(B, d, n, -1).transpose(1, 2).reshape(B, n * d, -1)[:, :T]
            outputs.append(h)
        return torch.cat(outputs, dim=2) if every_layer else h

    def stream(self, x: torch.Tensor, state: StreamState | None = None) -> tuple[torch.Tensor, StreamState]:
        """The top outputs at a chunk's steps, [B, n, F] -> [B, n, H_top], and the state after them.

        ``state=None`` is the zero state before step 0. Feeding a sequence in chunks of any sizes,
        each call given the state the previous one returned, gives exactly ``forward`` of the whole
        sequence. The state is a ``streaming.StreamState`` (its layout is in ``model/streaming.py``).
        """
        return stream_stack(self, x, state)

    def drop(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout on layer outputs on their way up (module doc); the identity in evaluation mode."""
        return nn.functional.dropout(h, self.dropout, self.training) if self.dropout else h

    def outputs_at(self, x: torch.Tensor, steps, shift: torch.Tensor | None = None,
                   every_layer: bool = False) -> torch.Tensor:
        """Top-layer outputs at ``steps`` only: [B, T, F] -> [B, len(steps), H_top].

        Equal to ``forward(x, every_layer)[:, steps]`` but computes only the chains those
        outputs depend on. ``shift`` [B] (compiled engine backends only): row b's first
        ``shift[b]`` steps are padding in front of its sequence; every chain
        skips them, so its outputs are those of the sequence alone. ``every_layer``: every layer's
        outputs at ``steps``, concatenated bottom first, [B, len(steps), sum of H_l]; every layer
        computes those steps on the way to the top's, so this costs no more cell steps.
        """
        self.check_input(x)
        B, T, _ = x.shape
        steps = tuple(steps)
        dropping = self.training and self.dropout > 0
        fast = engine.runs(x, self.cell) and shift is None and not torch.is_grad_enabled() and not dropping
        if fast:
            return engine.stack_outputs(self, x, T, steps, every_layer)
        layers_plan, readouts = _plan_indices(T, self.dilations, steps, x.device)
        h, outputs = x, []
        for i, (layer, (gather, R, n, padded, residues, d)) in enumerate(zip(self.layers, layers_plan)):
            if i > 0:  # each output the layer below computed, once, before the gather may repeat it
                h = self.drop(h)
            if padded:  # one zero row at index len(h) stands for every padded step
                h = torch.cat([h, h.new_zeros(B, 1, h.shape[2])], dim=1)
            # The chains' inputs, chain-major: [B, R*n, F_l] -> [B*R, n, F_l]
            h = (h[:, gather] if isinstance(gather, slice) else h.index_select(1, gather)).reshape(B * R, n, -1)
            if shift is not None:  # chain (b, r) reaches row b's sequence at step ceil((shift_b - r) / d)
                start = ((shift.unsqueeze(1) - residues + d - 1) // d).clamp(min=0).reshape(B * R)
                h = engine.run_layer(layer, h, self.cell, start)
            else:
                h = engine.run_layer(layer, h, self.cell)  # [B*R, n, H_l]
            h = h.reshape(B, R * n, -1)  # outputs at the layer's plan positions
            outputs.append(h.index_select(1, readouts[i]))  # [B, len(steps), H_l]
        return torch.cat(outputs, dim=2) if every_layer else outputs[-1]


@functools.lru_cache(maxsize=256)
def _plan_indices(T: int, dilations: tuple[int, ...], steps: tuple[int, ...], device: torch.device):
    """``plan_outputs``'s gathers as indices on ``device``, per layer (gather, R, n, padded, residues, d), and
    the rows of ``steps`` in each layer's outputs: what the pruned PyTorch path reads; a pure function of its
    arguments, so memoized."""
    plan = plan_outputs(T, dilations, steps)
    with torch.inference_mode(False):  # shared by every later call: never inference tensors, which autograd refuses
        layers_plan = [
            (_as_slice(lp.gather) or torch.tensor(lp.gather, device=device), len(lp.residues), lp.length,
             lp.padded, torch.tensor(lp.residues, device=device), d)
            for lp, d in zip(plan.layers, dilations)
        ]
        return layers_plan, [torch.tensor(rows, device=device) for rows in plan.layer_readouts]


def _as_slice(gather) -> slice | None:
    """A gather that is an increasing arithmetic progression (one chain's steps: every d-th) as a slice, whose
    selection is a view and whose gradient a strided copy, where an index's gradient is an index_add; else None."""
    gather = [int(g) for g in gather]
    step = gather[1] - gather[0] if len(gather) > 1 else 1
    if step < 1 or any(b - a != step for a, b in zip(gather, gather[1:])):
        return None
    return slice(gather[0], gather[-1] + 1, step)


class DilatedRNNClassifier(nn.Module):
    """Sequence classifier: logits [B, K] from the top layer's last step; with ``readout="layers"`` from every
    layer's last step, concatenated (the head sees each dilated layer's view, at its own time scale); with
    ``"mean"`` or ``"max"`` from the top layer's outputs pooled over each sequence's real steps (every step
    is computed: no pruning); with ``readout="every"`` a sequence labeller, logits [B, T, K] at every step
    (the copy-memory task), which needs d0 = 1.

    When the first dilation d0 > 1 the stack is d0 interleaved sub-networks,
    so the readout concatenates the last d0 top-layer outputs (the paper's
    generalised DilatedRNN): the linear head sees d0 * H_top features, in time
    order. Forward computes only the chains that readout needs.

    Built from a ``ModelConfig`` (``from_config``) or the same fields as arguments.
    """

    def __init__(self, input_size: int, hidden_sizes, dilations, cell: str = "lstm", num_classes: int = 10,
                 dropout: float = 0.0, init: str = "tf", forget_bias: float = 1.0, readout: str = "last"):
        super().__init__()
        self.config = ModelConfig(input_size, tuple(hidden_sizes), tuple(dilations), cell, num_classes,
                                  dropout, init, forget_bias, readout)
        c = self.config
        seeded = torch.get_rng_state()
        self.rnn = DilatedRNN(input_size, c.hidden_sizes, c.dilations, c.cell, c.dropout)
        self.readout_steps = c.dilations[0]
        self.every_layer = c.readout == "layers"  # the head reads every layer's last step(s)
        width = sum(c.hidden_sizes) if self.every_layer else c.hidden_sizes[-1]
        steps = 1 if c.readout in POOLED else self.readout_steps
        self.head = nn.Linear(steps * width, num_classes)
        self.reset_parameters()
        if (c.init, c.forget_bias) != ("tf", 1.0):
            # Drawn as a default model first, then the cells again from the generator state the
            # constructor started from: the head is the one a default model draws after the same seed.
            torch.set_rng_state(seeded)
            self.rnn.reset_parameters(c.init, c.forget_bias)

    @classmethod
    def from_config(cls, config: ModelConfig | dict) -> "DilatedRNNClassifier":
        if isinstance(config, dict):
            config = ModelConfig(**config)
        return cls(**{f.name: getattr(config, f.name) for f in fields(config)})

    def reset_parameters(self) -> None:
        """TensorFlow's recipe of the paper's code: cells as ``init_cell_``, head standard-normal."""
        self.rnn.reset_parameters()
        nn.init.normal_(self.head.weight)
        nn.init.normal_(self.head.bias)

    def _steps(self, T: int) -> range:
        if T < self.readout_steps:
            raise ValueError(f"sequence of {T} steps is shorter than the readout's {self.readout_steps}")
        return range(T - self.readout_steps, T)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, F] -> logits [B, K], computing only the needed chains (``readout="every"``: [B, T, K]).

        ``lengths`` [B]: row b is a sequence of ``lengths[b]`` steps, then padding. Its logits are
        those of the sequence run alone, read at its own last step(s), and the recurrences run only
        its real steps: on the engine's compiled backends the batch is right-aligned and one pruned plan
        runs, each chain skipping its row's front padding; elsewhere rows are grouped by length and
        each group runs the pruned plan of its length.
        """
        if self.config.readout == "every":
            return self._every_step(x, lengths)
        if self.config.readout in POOLED:
            return self._pooled(x, lengths)
        if lengths is None:
            return self._logits(x)
        if engine.runs(x, self.rnn.cell):
            return self._logits_aligned(x, lengths)
        groups, rows = [], []
        for length in torch.unique(lengths).tolist():
            same = torch.nonzero(lengths == length).squeeze(1)
            groups.append(self._logits(x.index_select(0, same)[:, :length]))  # [G, K]
            rows.append(same)
        return torch.cat(groups)[torch.argsort(torch.cat(rows))]  # back to the batch's row order

    def _pooled(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The mean or maximum of the top outputs over each row's real steps (padding at the end, which no real
        step reads), then the head: [B, T, F] -> [B, K]."""
        h = self.rnn(x)  # [B, T, H_top], every step (the engine's every-step kernels on the CPU)
        if lengths is None:
            pooled = h.mean(1) if self.config.readout == "mean" else h.amax(1)
        else:
            real = (torch.arange(h.shape[1], device=h.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
            if self.config.readout == "mean":
                pooled = (h * real).sum(1) / lengths.unsqueeze(1).to(h.dtype)
            else:
                pooled = h.masked_fill(~real, float("-inf")).amax(1)
        return self.head(self.rnn.drop(pooled))  # [B, H_top] -> [B, K]

    def _every_step(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Sequence labelling: logits at every step [B, T, K] from the top output there (d0 = 1)."""
        if lengths is not None and bool((lengths != x.shape[1]).any()):
            raise ValueError("a label at every step needs sequences of one length; got padded rows")
        return self.head(self.rnn.drop(self.rnn(x)))

    def _logits_aligned(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every row right-aligned to end at step T-1, one pruned plan for the batch; the compiled kernels
        skip each chain's steps before its row's sequence begins, so the logits are exact."""
        B, T, _ = x.shape
        shift = T - lengths  # [B] padding in front of each row once right-aligned
        source = torch.arange(T, device=x.device).unsqueeze(0) - shift.unsqueeze(1)  # [B, T] step read, < 0: pad
        x = x.gather(1, source.clamp(min=0).unsqueeze(2).expand(-1, -1, x.shape[2]))  # [B, T, F] right-aligned
        x = x * (source >= 0).unsqueeze(2)  # zeros in front (never read: the kernels skip them)
        h = self.rnn.drop(self.rnn.outputs_at(x, self._steps(T), shift, self.every_layer))  # [B, d0, H_top]
        return self.head(h.reshape(B, -1))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h = self.rnn.outputs_at(x, self._steps(x.shape[1]), every_layer=self.every_layer)  # [B, d0, H_top]
        return self.head(self.rnn.drop(h).reshape(B, -1))  # [B, d0*H_top] -> [B, K] (layers: sum of H_l)

    def stream(self, x: torch.Tensor, state: StreamState | None = None) -> tuple[torch.Tensor, StreamState]:
        """Anytime classification: logits at every step of a chunk, [B, n, F] -> [B, n, K], and the new state.

        The logits at step t equal ``self(x[:, :t+1])`` (NaN before the readout's d0 steps exist).
        """
        return stream_classifier(self, x, state)

    def forward_full(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The same logits from the full computation of every step (slow; one graph for every length).

        Padding comes after every real step of every chain, so the outputs at real steps are those
        of the unpadded sequence; each row is read at its own last step(s).
        """
        if self.config.readout == "every":
            return self._every_step(x, lengths)
        if self.config.readout in POOLED:
            return self._pooled(x, lengths)
        B, T, _ = x.shape
        h = self.rnn(x, self.every_layer)  # [B, T, H_top] (layers: sum of H_l)
        if lengths is None:
            h = h[:, self._steps(T)]  # [B, d0, H_top]
        else:  # row b reads steps lengths[b] - d0 .. lengths[b] - 1
            steps = lengths.unsqueeze(1) - self.readout_steps + torch.arange(self.readout_steps, device=x.device)
            h = h.gather(1, steps.unsqueeze(2).expand(-1, -1, h.shape[2]))  # [B, d0, H_top]
        return self.head(self.rnn.drop(h).reshape(B, -1))
