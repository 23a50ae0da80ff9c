"""The input transform: permutation, per-channel and per-sequence standardisation, and its stored forms."""

import numpy as np
import pytest
import torch

from dilated_rnn.data.transform import InputTransform, fit_normalization


def _padded(rng, lengths, F=3, fill=1e3):
    x = torch.full((len(lengths), max(lengths), F), fill, dtype=torch.float64)
    seqs = [torch.from_numpy(rng.normal(2.0, 5.0, size=(n, F))) for n in lengths]
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, torch.tensor(lengths), seqs


def test_per_sequence_standardises_each_sequence_alone_whatever_the_padding():
    x, lengths, seqs = _padded(np.random.default_rng(0), [9, 4, 15])
    out = InputTransform(per_sequence=True)(x, lengths)
    for i, s in enumerate(seqs):
        alone = (s - s.mean(0)) / s.std(0, correction=0)
        torch.testing.assert_close(out[i, : len(s)], alone, rtol=0, atol=1e-12)
    constant = InputTransform(per_sequence=True)(torch.full((1, 5, 1), 4.0))
    assert torch.equal(constant, torch.zeros(1, 5, 1))  # a flat sequence becomes zeros, not NaN


def test_channel_statistics_come_from_the_real_steps():
    x, lengths, seqs = _padded(np.random.default_rng(1), [3, 7], F=2)
    t = fit_normalization(x.float(), lengths)
    real = torch.cat(seqs)
    torch.testing.assert_close(t.mean.double(), real.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t.std.double(), real.std(0, correction=0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t(x.float())[0, :3].double(), ((seqs[0] - real.mean(0)) / real.std(0, correction=0)),
                               rtol=1e-5, atol=1e-5)
    assert fit_normalization(x, lengths, "none") == InputTransform()


@pytest.mark.parametrize("transform", [
    InputTransform(torch.randperm(6)), InputTransform(None, torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])),
    InputTransform(per_sequence=True), InputTransform(),
])
def test_stored_forms_round_trip(transform):
    stored = transform.to_json()
    back = InputTransform.from_parts(stored["permutation"], stored["normalization"])
    x = torch.randn(2, 6, 2)
    torch.testing.assert_close(back(x), transform(x))
    again = InputTransform.from_parts(transform.permutation, transform.normalization)
    torch.testing.assert_close(again(x), transform(x))


def test_a_permutation_alone_is_the_permuted_mnist_transform_and_cannot_stream():
    perm = torch.randperm(784)
    x = torch.rand(2, 784, 1)
    assert torch.equal(InputTransform(perm)(x), x[:, perm]) and InputTransform()(x) is x
    assert InputTransform().streamable and not InputTransform(perm).streamable
    assert not InputTransform(per_sequence=True).streamable
