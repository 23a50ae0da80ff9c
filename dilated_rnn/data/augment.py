"""Augmentations of a training batch that time-series practitioners use (Um et al. 2017; Le Guennec et al.
2016; Iwana and Uchida 2021): jitter, scaling, magnitude warping, time warping and window slicing.

Each takes a batch x [B, T, F] of normalized sequences, their ``lengths`` [B] (real steps first, padding after)
and a seeded ``torch.Generator``, and returns a new batch of the same shape whose padding stays zero: a run's
batches are a pure function of its seed and step (``augment_batch``), so resuming replays them exactly.
``mixup`` (Zhang et al. 2018) mixes pairs of sequences and their targets; it is the training step's, since the
loss mixes too.
"""

from __future__ import annotations

import torch


def _real(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, 1] mask of the real steps."""
    return (torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)


def jitter(x, lengths, gen, sigma: float = 0.03):
    """Gaussian noise of ``sigma`` on every real value."""
    return (x + sigma * torch.randn(x.shape, generator=gen).to(x)) * _real(x, lengths)


def scale(x, lengths, gen, sigma: float = 0.1):
    """Each sequence's channel multiplied by a factor drawn from N(1, sigma)."""
    return x * (1 + sigma * torch.randn(x.shape[0], 1, x.shape[2], generator=gen).to(x))


def _curves(B: int, length: torch.Tensor, T: int, F: int, gen, sigma: float, knots: int) -> torch.Tensor:
    """Smooth random curves around 1, [B, T, F]: ``knots`` + 2 values from N(1, sigma) spread over each row's real
    steps, interpolated linearly between them."""
    values = 1 + sigma * torch.randn(B, knots + 2, F, generator=gen)  # [B, knots + 2, F]
    position = torch.arange(T).unsqueeze(0) / (length.unsqueeze(1).clamp(min=2) - 1) * (knots + 1)  # [B, T]
    low = position.floor().clamp(max=knots).long()
    frac = (position - low).clamp(0, 1).unsqueeze(2)
    pick = lambda i: values.gather(1, i.unsqueeze(2).expand(-1, -1, F))  # noqa: E731
    return pick(low) * (1 - frac) + pick((low + 1).clamp(max=knots + 1)) * frac


def magnitude_warp(x, lengths, gen, sigma: float = 0.2, knots: int = 4):
    """Each sequence multiplied by a smooth random curve around 1."""
    B, T, F = x.shape
    return x * _curves(B, lengths.cpu(), T, F, gen, sigma, knots).to(x)


def _resample(x: torch.Tensor, lengths: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Each row read at fractional steps ``source`` [B, T] (clamped to its real steps), linearly interpolated;
    zero past its length."""
    last = (lengths - 1).clamp(min=0).unsqueeze(1).to(source)
    source = torch.minimum(source.clamp(min=0), last)
    low = source.floor().long()
    high = torch.minimum(low + 1, last.long())
    frac = (source - low).unsqueeze(2).to(x)
    take = lambda i: x.gather(1, i.unsqueeze(2).expand(-1, -1, x.shape[2]))  # noqa: E731
    return (take(low) * (1 - frac) + take(high) * frac) * _real(x, lengths)


def time_warp(x, lengths, gen, sigma: float = 0.2, knots: int = 4):
    """Each sequence's time axis stretched and squeezed smoothly (a random increasing map of its real steps)."""
    B, T, _ = x.shape
    speed = _curves(B, lengths.cpu(), T, 1, gen, sigma, knots)[..., 0].clamp(min=0.1)  # [B, T]
    real = _real(x, lengths.cpu())[..., 0].to(speed)
    path = torch.cumsum(speed * real, dim=1) - speed[:, :1]  # increasing, 0 at step 0
    end = path.gather(1, (lengths.cpu() - 1).clamp(min=0).unsqueeze(1)).clamp(min=1e-6)
    source = path / end * (lengths.cpu().unsqueeze(1) - 1)
    return _resample(x, lengths, source.to(x.device))


def slice_window(x, lengths, gen, ratio: float = 0.9):
    """A random window of ``ratio`` of each sequence's real steps, stretched back over them."""
    B, T, _ = x.shape
    n = lengths.cpu().to(torch.float64)
    width = (n - 1) * ratio
    start = torch.rand(B, generator=gen, dtype=torch.float64) * (n - 1 - width)
    along = torch.arange(T, dtype=torch.float64).unsqueeze(0) / (n - 1).clamp(min=1).unsqueeze(1)  # 0..1 over each row
    source = start.unsqueeze(1) + along * width.unsqueeze(1)
    return _resample(x, lengths, source.to(x.device, torch.float32))


_FUNCTIONS = {"jitter": jitter, "scale": scale, "magnitude-warp": magnitude_warp, "time-warp": time_warp,
              "slice": slice_window}


def augment_batch(x, lengths, names, seed: int, step: int):
    """The augmentations ``names`` applied in order to a training batch, drawn from (``seed``, ``step``)."""
    if not names:
        return x
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
    lengths = lengths if lengths is not None else torch.full((x.shape[0],), x.shape[1])
    for name in names:
        x = _FUNCTIONS[name](x, lengths.to(x.device), gen)
    return x


def mixup_pairs(batch: int, alpha: float, seed: int, step: int) -> tuple[torch.Tensor, float]:
    """For ``mixup``: a permutation of the batch (each row's partner) and a weight from Beta(alpha, alpha), drawn
    from (``seed``, ``step``) alone."""
    import numpy as np

    rng = np.random.default_rng([seed, step, 11])
    return torch.from_numpy(rng.permutation(batch)), float(rng.beta(alpha, alpha))


def mix(x: torch.Tensor, lengths, partner: torch.Tensor, weight: float):
    """``weight`` of each row and 1 - ``weight`` of its partner's; the mixture is as long as the longer."""
    mixed = weight * x + (1 - weight) * x[partner]
    return mixed, None if lengths is None else torch.maximum(lengths, lengths[partner])
