"""The input transform: permutation, per-channel and per-sequence standardisation, and its stored forms."""

import numpy as np
import pytest
import torch

from dilated_rnn.data.transform import (
    InputTransform,
    fit_normalization,
    with_differences,
)


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
    InputTransform(per_sequence=True), InputTransform(), InputTransform(per_sequence=True, differences=True),
    InputTransform(None, torch.tensor([1.0, 2.0, 0.0, -1.0]), torch.tensor([3.0, 4.0, 0.5, 2.0]), differences=True),
])
def test_stored_forms_round_trip(transform):
    stored = transform.to_json()
    back = InputTransform.from_parts(stored["permutation"], stored["normalization"], stored["differences"])
    x = torch.randn(2, 6, 2)
    torch.testing.assert_close(back(x), transform(x))
    again = InputTransform.from_parts(transform.permutation, transform.normalization, transform.differences)
    torch.testing.assert_close(again(x), transform(x))


def test_a_permutation_alone_is_the_permuted_mnist_transform_and_cannot_stream():
    perm = torch.randperm(784)
    x = torch.rand(2, 784, 1)
    assert torch.equal(InputTransform(perm)(x), x[:, perm]) and InputTransform()(x) is x
    assert InputTransform().streamable and not InputTransform(perm).streamable
    assert not InputTransform(per_sequence=True).streamable


def test_differences_are_appended_to_the_values_and_normalized_with_them():
    """Raw [x] -> [x, x[t] - x[t-1]] (0 at step 0), hand-built per sequence; the channel statistics are those of
    the 2F channels over the real steps (the differences past a length read padding, and are never counted)."""
    x, lengths, seqs = _padded(np.random.default_rng(2), [5, 8, 3], F=2)
    built = [torch.cat([s, torch.cat([torch.zeros(1, 2, dtype=s.dtype), s[1:] - s[:-1]])], dim=1) for s in seqs]
    out = with_differences(x)
    assert out.shape == (3, 8, 4)
    for i, b in enumerate(built):
        torch.testing.assert_close(out[i, : len(b)], b, rtol=0, atol=1e-12)
    previous = torch.tensor([[1.0, -2.0]], dtype=torch.float64)  # what a stream kept from its last chunk
    torch.testing.assert_close(with_differences(x[:1, 2:], previous)[0, 0, 2:], x[0, 2] - previous[0])
    t = fit_normalization(x, lengths, "channel", differences=True)
    real = torch.cat(built)
    torch.testing.assert_close(t.mean.double(), real.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t.std.double(), real.std(0, correction=0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t(x.float())[1, :8], ((built[1] - real.mean(0)) / real.std(0, correction=0)).float(),
                               rtol=1e-5, atol=1e-5)
    each = fit_normalization(x, lengths, "sequence", differences=True)(x, lengths)
    torch.testing.assert_close(each[2, :3], InputTransform(per_sequence=True)(built[2].unsqueeze(0))[0])
    assert (t.model_features(2), t.raw_features(4), InputTransform().model_features(2)) == (4, 2, 2)
    assert t.streamable and not t.identity
