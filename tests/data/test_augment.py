"""Augmentations: a pure function of the seed and step, padding left zero, each doing what its name says; a run
with them resumes exactly."""

import json

import numpy as np
import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.config import AUGMENTATIONS
from dilated_rnn.data import augment
from dilated_rnn.data.augment import augment_batch, mix, mixup_pairs


def _batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 40, 2, generator=gen)
    lengths = torch.tensor([40, 31, 12, 40, 3])
    x = x * (torch.arange(40).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    return x, lengths


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_is_deterministic_keeps_padding_zero_and_changes_real_values(name):
    x, lengths = _batch()
    a = augment_batch(x, lengths, [name], seed=3, step=7)
    assert torch.equal(a, augment_batch(x, lengths, [name], seed=3, step=7))
    assert not torch.equal(a, augment_batch(x, lengths, [name], seed=3, step=8))
    assert a.shape == x.shape and torch.isfinite(a).all()
    for b, n in enumerate(lengths.tolist()):
        assert (a[b, n:] == 0).all()
    assert not torch.allclose(a, x)


def test_what_each_does():
    x, lengths = _batch()
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    noise = augment.jitter(x, lengths, gen(), sigma=0.03) - x
    assert 0.02 < noise[0].std() < 0.04
    ratio = augment.scale(x, lengths, gen(), sigma=0.1)[:, :3] / x[:, :3]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)  # one factor per sequence and channel
    curve = augment.magnitude_warp(torch.ones(2, 50, 1), torch.tensor([50, 50]), gen(), sigma=0.2)
    assert (curve[:, 1:] - curve[:, :-1]).abs().max() < 0.1 and (curve - 1).abs().max() > 0.01  # smooth, not flat
    ramp = torch.arange(50.0).reshape(1, 50, 1).expand(2, 50, 1).clone()
    warped = augment.time_warp(ramp, torch.tensor([50, 50]), gen())
    assert (warped[:, 1:] >= warped[:, :-1] - 1e-5).all() and warped[:, 0].eq(0).all()  # increasing, ends kept
    assert torch.allclose(warped[:, -1], torch.full((2, 1), 49.0))
    sliced = augment.slice_window(ramp, torch.tensor([50, 50]), gen(), ratio=0.5)
    assert (sliced[:, -1] - sliced[:, 0] - 24.5).abs().max() < 1e-4  # half the span, stretched over every step


def test_mixup_mixes_inputs_and_targets_alike():
    x, lengths = _batch()
    partner, weight = mixup_pairs(5, 0.4, seed=2, step=5)
    again, weight_again = mixup_pairs(5, 0.4, seed=2, step=5)
    assert torch.equal(partner, again) and weight == weight_again
    assert sorted(partner.tolist()) == list(range(5)) and 0 <= weight <= 1
    mixed, sizes = mix(x, lengths, partner, weight)
    torch.testing.assert_close(mixed, weight * x + (1 - weight) * x[partner])
    assert torch.equal(sizes, torch.maximum(lengths, lengths[partner]))


def test_a_run_with_augmentation_and_mixup_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 16, 2)) + (np.arange(24) % 2)[:, None, None]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(24) % 2, x_test=x[:6], y_test=np.arange(6) % 2)
    args = ["--data", str(tmp_path / "d.npz"), "--augment", "jitter,time-warp,slice", "--mixup", "0.2",
            "--hidden-sizes", "4", "--dilations", "1,2", "--batch-size", "4", "--steps", "6", "--eval-every", "3",
            "--schedule", "constant",
            "--threads", "1", "--no-progress"]
    assert main(["train", *args, "--run-dir", str(tmp_path / "whole")]) == 0
    assert main(["train", *args, "--run-dir", str(tmp_path / "split"), "--steps", "3"]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--steps", "6", "--no-progress"]) == 0
    whole = [json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")]
    split = [json.loads(line) for line in open(tmp_path / "split" / "metrics.jsonl")]
    strip = lambda r: {k: v for k, v in r.items() if k != "elapsed_s"}  # noqa: E731
    assert [strip(r) for r in whole] == [strip(r) for r in split]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["train"]["augment"] == "jitter,time-warp,slice"
