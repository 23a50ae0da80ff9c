"""Which cell steps a set of top-layer outputs depends on.

Layer l computes c_t = f(c_t^(l-1), c_{t-d_l}), so an output at step t needs
the whole chain t, t-d_l, t-2d_l, ... of its layer, and the layer below at
those same steps. Walking from the top layer down gives, per layer, the
residues (chains) to run and how many steps each needs. All chains of a layer
run as one batched RNN call, so each gets the same length n: a chain starts at
its residue r (its first real step, zero state) and runs to r + (n-1)*d; steps
at or past T take zero input, which is the paper's end padding and leaves every
real output unchanged.

With nested dilations (each dividing the next) and one output at T-1, every
layer runs the single chain t = T-1 (mod d_l), aligned to the end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerPlan:
    residues: tuple[int, ...]  # R chains, one per residue t mod d
    length: int  # n, steps per chain
    positions: tuple[int, ...]  # the R*n steps computed, chain-major; >= T means padding
    gather: tuple[int, ...]  # for each position, its row in the layer below's output (or the input)
    padded: bool  # whether some position is padding (gather then points at an extra zero row)

    @property
    def cell_steps(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class OutputPlan:
    layers: tuple[LayerPlan, ...]
    readout: tuple[int, ...]  # row of each requested step in the top layer's positions
    # Row of each requested step in every layer's positions, bottom first: a top output at step s reads the
    # layer below at s, and so on down, so every layer computes the requested steps themselves.
    layer_readouts: tuple[tuple[int, ...], ...] = ()

    @property
    def cell_steps(self) -> int:
        return sum(lp.cell_steps for lp in self.layers)


def plan_outputs(T: int, dilations, steps) -> OutputPlan:
    """Plan the chains needed for top-layer outputs at ``steps`` of a length-T input (memoized)."""
    return _plan(int(T), tuple(int(d) for d in dilations), tuple(int(s) for s in steps))


@functools.lru_cache(maxsize=256)
def _plan(T: int, dilations: tuple[int, ...], steps: tuple[int, ...]) -> OutputPlan:
    if not steps or any(not 0 <= s < T for s in steps):
        raise ValueError(f"output steps must be a non-empty subset of 0..{T - 1}, got {steps}")
    needed = sorted(set(steps))
    chains = []  # (residues, n, positions), top layer first
    for d in reversed(tuple(dilations)):
        last = {}  # residue -> last step needed on that chain
        for t in needed:
            last[t % d] = t
        residues = tuple(sorted(last))
        n = max((last[r] - r) // d + 1 for r in residues)
        positions = tuple(r + k * d for r in residues for k in range(n))
        chains.append((residues, n, positions))
        needed = sorted(p for p in positions if p < T)
    chains.reverse()

    layers = []
    below = range(T)  # the input: step t is row t
    for residues, n, positions in chains:
        row = {t: i for i, t in enumerate(below) if t < T}
        pad_row = len(below)
        gather = tuple(row[p] if p < T else pad_row for p in positions)
        layers.append(LayerPlan(residues, n, positions, gather, any(p >= T for p in positions)))
        below = positions
    rows = [{t: i for i, t in enumerate(lp.positions) if t < T} for lp in layers]
    readouts = tuple(tuple(row[s] for s in steps) for row in rows)
    return OutputPlan(tuple(layers), readouts[-1], readouts)
