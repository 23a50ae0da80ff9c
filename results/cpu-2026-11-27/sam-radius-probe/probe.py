"""How far the training loss rises when the weights move a distance rho along their gradient.

Picks the radius of ``--sam`` before the SAM runs of the ninth round: for the shipped permuted GRU
and LSTM, on three training batches (batch 128, training images only), the loss at the weights w
and at w + rho * g / ||g||, with g the batch gradient at w and ||g|| its global L2 norm.

    .venv/bin/python results/cpu-2026-11-27/sam-radius-probe/probe.py
"""

import torch
from torch import nn

from dilated_rnn.data import batch_indices, load_mnist, to_sequences
from dilated_rnn.pretrained import load_pretrained

RADII = (0.01, 0.03, 0.05, 0.1, 0.2, 0.5)

torch.set_num_threads(2)
train = load_mnist()["train"]
for name in ("gru-pmnist", "lstm-pmnist"):
    model, perm, _ = load_pretrained(name)
    model.train()
    params = list(model.parameters())
    with torch.no_grad():
        print(name, "weight norm", f"{torch.linalg.vector_norm(torch.cat([p.flatten() for p in params])):.2f}")
    for b in range(3):
        idx = batch_indices(len(train), 128, 1000 + b, 1)
        x, y = to_sequences(train.images[idx], perm), train.labels[idx]
        loss = nn.functional.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params)
        norm = torch.linalg.vector_norm(torch.cat([t.flatten() for t in g]))
        saved = [p.detach().clone() for p in params]
        row = [f"loss {loss.item():.4f}, |g| {norm:.3f}"]
        with torch.no_grad():
            for rho in RADII:
                for p, w, gi in zip(params, saved, g):
                    p.copy_(w + rho * gi / norm)
                row.append(f"rho {rho}: {nn.functional.cross_entropy(model(x), y).item():.4f}")
            for p, w in zip(params, saved):
                p.copy_(w)
        print("  ", "; ".join(row))
