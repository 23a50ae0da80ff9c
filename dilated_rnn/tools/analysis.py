"""Memory: the mean recurrent length, the paper's memory-capacity measure (Chang et al. 2017, section 4.1),
and how much gradient reaches the symbols of the copy task (``recall_gradients``).

Convention. Information enters layer 0 at time i and must reach the top
layer's output at time i+n. A path may take a recurrent edge of layer l
(advancing d_l steps, cost 1) or a feed-forward edge to the layer above at the
same time step (cost 0); it cannot go down. The recurrent length of a span n is
the fewest recurrent edges on such a path, and the mean recurrent length of a
cycle of length m is its mean over n = 1..m. A span that no path covers (with
d_0 > 1, spans that are not multiples of d_0) has infinite length.

For dilations 1, 2, ..., 2^(L-1) and m = 2^(L-1) the fewest edges for span n
is the number of ones in n's binary form, which gives (L-1)/2 + 2^-(L-1);
a plain RNN gives (m+1)/2.
"""

from __future__ import annotations

import math


def recurrent_lengths(dilations, m: int) -> list[float]:
    """Fewest recurrent edges for each span n = 1..m through a dilated stack."""
    if m < 1:
        raise ValueError(f"cycle length must be positive, got {m}")
    if not dilations or any(d < 1 for d in dilations):
        raise ValueError(f"dilations must be positive, got {list(dilations)}")
    # cost[t]: fewest recurrent edges to reach the current layer at offset t (0..m)
    cost = [0.0] + [math.inf] * m  # below layer 0: only offset 0, for free
    for d in dilations:
        # Unbounded steps of size d in one layer: relax in increasing t.
        for t in range(d, m + 1):
            cost[t] = min(cost[t], cost[t - d] + 1)
    return cost[1:]


def mean_recurrent_length(dilations, m: int) -> float:
    """Mean over spans n = 1..m of the fewest recurrent edges from input at i to top output at i+n."""
    return sum(recurrent_lengths(dilations, m)) / m


def skip_rnn_mean_recurrent_length(skip: int, m: int) -> float:
    """A single-layer RNN with edges t-1 -> t and regular skip edges t-skip -> t."""
    if skip < 1:
        raise ValueError(f"skip length must be positive, got {skip}")
    return mean_recurrent_length([1, skip] if skip > 1 else [1], m)


def curves(dilations, max_m: int) -> dict:
    """Mean recurrent length against cycle length 1..max_m: the dilated stack, a plain RNN, a skip RNN.

    The skip RNN skips by the stack's largest dilation, so both reach equally far back in one edge.
    """
    skip = max(dilations)
    ms = list(range(1, max_m + 1))
    return {
        "cycle_length": ms,
        "dilated": [mean_recurrent_length(dilations, m) for m in ms],
        "plain_rnn": [mean_recurrent_length([1], m) for m in ms],
        "skip_rnn": [skip_rnn_mean_recurrent_length(skip, m) for m in ms],
        "dilations": list(dilations),
        "skip": skip,
    }


def plot_curves(data: dict, path) -> None:
    """Write a PNG of ``curves``' output (matplotlib, headless)."""
    from .plotting import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(data["cycle_length"], data["plain_rnn"], label="plain RNN")
    ax.plot(data["cycle_length"], data["skip_rnn"], label=f"skip RNN (skip {data['skip']})")
    ax.plot(data["cycle_length"], data["dilated"], label=f"DilatedRNN ({len(data['dilations'])} layers)")
    ax.set_xlabel("cycle length m")
    ax.set_ylabel("mean recurrent length")
    ax.set_yscale("log")
    ax.set_title("Mean recurrent length (lower: shorter paths through time)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def recall_gradients(model, delay: int, count: int = 64, seed: int = 0) -> dict:
    """Copy task (``data/copy_task.py``): how much of the recall loss's gradient reaches the inputs that hold
    the symbols.

    ``model`` labels every step (``readout="every"``); the loss is the cross-entropy at the last ten
    steps, where the symbols must be recalled, over ``count`` sequences drawn from ``seed``. Returns the
    norms of its gradient with respect to the one-hot inputs at the ten symbol steps (``symbols``) and at
    the ten steps before the delimiter (``recent``): a model that cannot pass a gradient back over T
    steps (or up its layers) starts with a small ``symbols``, whatever it may learn later.
    """
    import torch

    from ..data.copy_task import SPLIT_SIZES, SYMBOLS, generate
    from ..training.evaluate import per_example

    dtype = next(model.parameters()).dtype
    x, y = generate(delay, count, seed, stream=len(SPLIT_SIZES))  # a stream apart from the splits'
    x = x.to(dtype).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(*per_example(model(x)[:, -SYMBOLS:], y[:, -SYMBOLS:]))
    (grad,) = torch.autograd.grad(loss, x)
    return {"symbols": grad[:, :SYMBOLS].norm().item(), "recent": grad[:, delay - 1 : delay + SYMBOLS - 1].norm().item()}
