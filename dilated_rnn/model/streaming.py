"""Streaming inference: a stack fed a few samples at a time, exact, with a small constant state.

Layer l computes c_t = f(c_t^(l-1), c_{t-d_l}), so between calls it needs only
its last d_l states. ``StreamState`` keeps them as one shift register per layer,
oldest first: after step t, layer l's register holds the states of steps
t-d_l+1 .. t (zero for steps before 0, which is the zero initial state). A step
reads the register's oldest entry, drops it and appends the new state; no
position arithmetic is needed, so the same update is a few slices and concats
in an ONNX graph (``deploy.stream.StepGraph``).

State layout. ``buffer`` [B, M] float concatenates, per layer, the register
[d_l, S_l] row-major, S_l = H_l (LSTM: 2 H_l, h then c); the classifier appends
its last d0-1 top-layer outputs [d0-1, H_top] (its readout reads d0 of them).
``position`` [B] int64 counts the steps each row has consumed. Rows are
independent: ``reset_rows`` starts some afresh. For 9 layers of 20 units and
dilations 1..256 the registers are 511 vectors of 20 floats (twice that for an
LSTM).

On the CPU in float32 without autograd the update runs as one compiled call per
chunk (``engine.stream_registers``); elsewhere (float64, GPU, gradients) it runs
the step below in PyTorch, one sample at a time. Streaming is inference: no
dropout is applied, whatever the model's mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch

from .. import engine
from .cells import CELLS, cell_step


class StreamState(NamedTuple):
    buffer: torch.Tensor  # [B, M]: the layers' shift registers, then the classifier's recent top outputs
    position: torch.Tensor  # [B] int64: steps consumed


@dataclass(frozen=True)
class Layout:
    """Where each layer's register lies in ``StreamState.buffer`` (module doc)."""

    depths: tuple[int, ...]  # d_l
    widths: tuple[int, ...]  # S_l: H_l, or 2 H_l for an LSTM
    top: int  # H_top
    history: int  # recent top outputs kept (the classifier's d0 - 1; 0 for a bare stack)
    features: int  # F: the input's channels, which the state does not hold but each chunk must have
    pool: int = 0  # floats of a pooled readout's running sum or maximum (H_top), after everything else

    @classmethod
    def of(cls, rnn, history: int = 0, pool: int = 0) -> "Layout":
        pair = 2 if CELLS[rnn.cell].paired_state else 1
        return cls(tuple(rnn.dilations), tuple(pair * h for h in rnn.hidden_sizes), rnn.hidden_sizes[-1], history,
                   rnn.layers[0].input_size, pool)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        ends = [0]
        for d, s in zip(self.depths, self.widths):
            ends.append(ends[-1] + d * s)
        return tuple(ends)

    @cached_property
    def size(self) -> int:
        return self.offsets[-1] + self.history * self.top + self.pool

    def register(self, buffer: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s register as a view [B, d_l, S_l], oldest first."""
        lo = self.offsets[layer]
        return buffer[:, lo : lo + self.depths[layer] * self.widths[layer]].reshape(
            -1, self.depths[layer], self.widths[layer])

    def recent(self, buffer: torch.Tensor) -> torch.Tensor:
        """The last ``history`` top-layer outputs [B, history, H_top], oldest first."""
        end = self.offsets[-1] + self.history * self.top
        return buffer[:, self.offsets[-1] : end].reshape(buffer.shape[0], self.history, self.top)


def initial_state(layout: Layout, batch: int, dtype=torch.float32, device=None) -> StreamState:
    """The state before step 0: every register zero."""
    return StreamState(torch.zeros(batch, layout.size, dtype=dtype, device=device),
                       torch.zeros(batch, dtype=torch.int64, device=device))


def reset_rows(state: StreamState, rows) -> StreamState:
    """A new state in which ``rows`` (indices or a [B] bool mask) start again at step 0; the others go on."""
    keep = torch.ones(len(state.position), dtype=torch.bool, device=state.position.device)
    keep[rows] = False
    return StreamState(state.buffer * keep.unsqueeze(1).to(state.buffer.dtype), state.position * keep)


def check_state(state: StreamState, layout: Layout, x: torch.Tensor) -> StreamState:
    """``state`` (None: the initial one) after checking it fits the model and the batch ``x`` [B, n, F]."""
    shape = x.shape
    if len(shape) != 3 or shape[1] < 1 or shape[2] != layout.features:
        raise ValueError(f"expected a chunk [B, n, {layout.features}] with n >= 1, got shape {list(shape)}")
    if state is None:
        return initial_state(layout, shape[0], x.dtype, x.device)
    if state.buffer.shape != (shape[0], layout.size) or state.position.shape != (shape[0],):
        raise ValueError(f"state of shapes {list(state.buffer.shape)} and {list(state.position.shape)} does not fit "
                         f"this model and batch: expected [{shape[0]}, {layout.size}] and [{shape[0]}]")
    return state


def step_layers(layers, cell: str, layout: Layout, x: torch.Tensor, buffer: torch.Tensor, every_layer: bool = False):
    """One step of every layer in PyTorch: sample x [B, F] -> (top output [B, H_top], new registers);
    ``every_layer``: every layer's output, concatenated bottom first [B, sum of H_l], instead of the top's.

    The new registers are returned as one [B, offsets[-1]] tensor (the buffer's layer part).
    """
    paired = CELLS[cell].paired_state
    h, parts, outputs = x, [], []
    for i, layer in enumerate(layers):
        register = layout.register(buffer, i)  # [B, d, S]
        oldest = register[:, 0]
        previous = oldest.chunk(2, dim=1) if paired else oldest
        state = cell_step(cell, h, previous, layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0,
                          layer.bias_hh_l0)
        new = torch.cat(state, dim=1) if paired else state  # [B, S]
        h = state[0] if paired else state
        outputs.append(h)
        if layout.depths[i] > 1:
            new = torch.cat([register[:, 1:], new.unsqueeze(1)], dim=1)
        parts.append(new.reshape(x.shape[0], -1))
    return torch.cat(outputs, dim=1) if every_layer else h, torch.cat(parts, dim=1)


def stream_stack(rnn, x: torch.Tensor, state: StreamState | None, weights=None):
    """``DilatedRNN.stream``: the top outputs at the chunk's steps [B, n, H_top] and the state after them.

    ``weights``: the stack's weights as ``engine.stack.pack_weights`` gives them, packed once by a caller that
    streams a fixed model; None packs the current ones.
    """
    layout = Layout.of(rnn)
    return _advance(rnn, x, check_state(state, layout, x), layout, weights)


def _advance(rnn, x: torch.Tensor, state: StreamState, layout: Layout, weights, every_layer: bool = False):
    """The stack over a chunk: top outputs [B, n, H_top] (``every_layer``: every layer's, bottom first) and the new
    state, whose history (if the layout keeps one) holds the last ``layout.history`` top outputs."""
    end = layout.offsets[-1]
    registers = state.buffer if layout.size == end else state.buffer[:, :end]
    if engine.runs(x, rnn.cell) and not torch.is_grad_enabled():
        out, registers = engine.stream_registers(rnn, x, registers, weights, every_layer)
    else:
        outs = []
        for k in range(x.shape[1]):
            h, registers = step_layers(rnn.layers, rnn.cell, layout, x[:, k], registers, every_layer)
            outs.append(h)
        out = torch.stack(outs, dim=1)
    buffer = registers
    if layout.history:  # the last `history` top outputs, across calls
        recent = torch.cat([layout.recent(state.buffer), out], dim=1)[:, -layout.history :]
        buffer = torch.cat([registers, recent.reshape(x.shape[0], -1)], dim=1)
    return out, StreamState(buffer, state.position + x.shape[1])


def classifier_layout(clf) -> Layout:
    """Where a classifier's stream keeps what: the registers, then the d0 - 1 recent top outputs its readout
    reads, or a pooled readout's running value."""
    if clf.config.readout in ("mean", "max"):
        return Layout.of(clf.rnn, 0, pool=clf.rnn.hidden_sizes[-1])
    return Layout.of(clf.rnn, clf.readout_steps - 1)


def check_streamed_readout(clf) -> None:
    """A ``ValueError`` unless the classifier's readout streams: the last step, every layer's (d0 = 1), a running
    mean or maximum, or a label at every step."""
    readout = clf.config.readout
    if readout == "layers" and clf.readout_steps != 1:
        raise ValueError(f"a readout of {readout!r} (first dilation {clf.readout_steps}) is not streamed: the state "
                         "keeps the layers' recent states only")


def stream_classifier(clf, x: torch.Tensor, state: StreamState | None, weights=None):
    """``DilatedRNNClassifier.stream``: logits at every step of the chunk [B, n, K] and the new state.

    At step t the logits read the top outputs of steps t-d0+1 .. t, so they equal ``clf(x[:, :t+1])``;
    before d0 steps exist they are NaN. ``weights`` as in ``stream_stack``.
    """
    check_streamed_readout(clf)
    if clf.config.readout in ("mean", "max"):
        return _stream_pooled(clf, x, state, weights)
    d0 = clf.readout_steps
    layout = classifier_layout(clf)
    state = check_state(state, layout, x)
    out, new_state = _advance(clf.rnn, x, state, layout, weights, clf.every_layer)  # every_layer: d0 is 1
    if d0 == 1:
        return clf.head(out), new_state
    B, n, H = out.shape
    window = torch.cat([layout.recent(state.buffer), out], dim=1).unfold(1, d0, 1)  # [B, n, H, d0]
    logits = clf.head(window.transpose(2, 3).reshape(B, n, d0 * H))
    steps = state.position.unsqueeze(1) + torch.arange(n, device=x.device)  # [B, n]: each row's step
    return logits.masked_fill((steps < d0 - 1).unsqueeze(2), float("nan")), new_state


def pool_step(readout: str, pooled: torch.Tensor, out: torch.Tensor, position: torch.Tensor):
    """A pooled readout's value at each step of a chunk: from the running value ``pooled`` [B, H] before it
    (sum for ``mean``, maximum for ``max``; any value at position 0), the top outputs ``out`` [B, n, H] and the
    steps consumed before the chunk ``position`` [B]. Returns (the pooled outputs [B, n, H], the running value
    after the chunk [B, H]). A chunk of one sample (the step graph's) needs no cumulative op, which ONNX lacks
    for the maximum."""
    started = (position > 0).view(-1, 1, 1)
    before = pooled.unsqueeze(1)  # [B, 1, H]
    if readout == "mean":
        within = out if out.shape[1] == 1 else torch.cumsum(out, dim=1)
        running = within + torch.where(started, before, torch.zeros_like(before))
        count = position.view(-1, 1, 1) + torch.arange(1, out.shape[1] + 1, device=out.device).view(1, -1, 1)
        return running / count.to(out.dtype), running[:, -1]
    within = out if out.shape[1] == 1 else torch.cummax(out, dim=1).values
    running = torch.where(started, torch.maximum(within, before), within)
    return running, running[:, -1]


def _stream_pooled(clf, x: torch.Tensor, state: StreamState | None, weights):
    """A pooled readout (``mean``, ``max``) streamed: the registers as ever, then its running sum or maximum."""
    H = clf.rnn.hidden_sizes[-1]
    layout = classifier_layout(clf)
    state = check_state(state, layout, x)
    out, advanced = _advance(clf.rnn, x, state, layout, weights)
    pooled, running = pool_step(clf.config.readout, state.buffer[:, -H:], out, state.position)
    return clf.head(pooled), StreamState(torch.cat([advanced.buffer, running], dim=1), advanced.position)
