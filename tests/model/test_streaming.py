"""Streaming (``model/streaming.py``, ``deploy/stream.py``): fed in chunks of any sizes, a stack or classifier gives exactly what it
gives on the whole sequence, with a state of the documented size; the step graph reproduces it."""

import copy
import io
import itertools

import pytest
import torch

from dilated_rnn import engine
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.deploy.stream import Streamer
from dilated_rnn.model import DilatedRNN, DilatedRNNClassifier
from dilated_rnn.model.reference import reference_forward
from dilated_rnn.model.streaming import Layout, StreamState, reset_rows
from dilated_rnn.trained import TrainedModel

CELLS = ("rnn", "lstm", "gru")
# nested, not nested, d0 > 1, decreasing, a single layer
SCHEDULES = ((1, 2, 4, 8), (1, 3, 9), (3, 5), (2, 3, 7), (4, 2, 1), (6,))
LENGTHS = (23, 24, 5)


def _stack(cell, dilations, dtype=torch.float64):
    return DilatedRNN(2, [5, 4, 6, 3][: len(dilations)], dilations, cell).to(dtype)


def _chunks(T, seed):
    """Random chunk sizes adding up to T (1 to 9 samples each)."""
    gen, sizes = torch.Generator().manual_seed(seed), []
    while sum(sizes) < T:
        sizes.append(min(T - sum(sizes), int(torch.randint(1, 10, (1,), generator=gen))))
    return sizes


def _stream(module, x, sizes):
    outs, state, k = [], None, 0
    for n in sizes:
        out, state = module.stream(x[:, k : k + n], state)
        outs.append(out)
        k += n
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(CELLS, SCHEDULES, LENGTHS)))
def test_stream_in_random_chunks_equals_the_reference_in_float64(cell, dilations, T):
    rnn = _stack(cell, dilations)
    x = torch.randn(3, T, 2, dtype=torch.float64)
    expected = reference_forward(rnn, x)
    for seed in range(3):
        got, state = _stream(rnn, x, _chunks(T, seed))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        assert state.position.tolist() == [T] * 3
    got, _ = _stream(rnn, x, [1] * T)  # one sample per call
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELLS, SCHEDULES)))
def test_compiled_stream_equals_the_reference_and_the_pytorch_step(cell, dilations):
    rnn = _stack(cell, dilations, torch.float32)
    x = torch.randn(4, 37, 2)
    expected = reference_forward(copy.deepcopy(rnn).double(), x.double()).float()
    with torch.no_grad():
        compiled, state = _stream(rnn, x, _chunks(37, 1))
        with engine.use("torch"):
            pytorch, state_pt = _stream(rnn, x, _chunks(37, 2))
    torch.testing.assert_close(compiled, expected, rtol=0, atol=2e-6)  # the kernels' tanh: |error| < 3e-7
    torch.testing.assert_close(pytorch, expected, rtol=0, atol=2e-6)
    torch.testing.assert_close(state.buffer, state_pt.buffer, rtol=0, atol=2e-6)


@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELLS, SCHEDULES)))
def test_classifier_stream_gives_at_each_step_the_logits_of_the_prefix(cell, dilations):
    clf = DilatedRNNClassifier(2, [5, 4, 6, 3][: len(dilations)], dilations, cell, num_classes=3).double()
    x = torch.randn(2, 19, 2, dtype=torch.float64)
    logits, _ = _stream(clf, x, _chunks(19, 0))
    d0 = dilations[0]
    assert torch.isnan(logits[:, : d0 - 1]).all()  # the readout needs d0 outputs
    for t in range(d0 - 1, 19):
        torch.testing.assert_close(logits[:, t], clf(x[:, : t + 1]), rtol=0, atol=1e-12)


def test_state_holds_the_last_d_states_of_each_layer():
    """9 layers of 20 units, dilations 1..256: 511 vectors of 20 floats, twice that for an LSTM."""
    dilations = tuple(2**i for i in range(9))
    for cell, width in (("gru", 20), ("lstm", 40)):
        rnn = DilatedRNN(1, [20] * 9, dilations, cell)
        assert Layout.of(rnn).size == 511 * width
        with torch.no_grad():
            _, state = rnn.stream(torch.rand(2, 300, 1))
        assert state.buffer.shape == (2, 511 * width) and state.position.tolist() == [300, 300]
    # its register of the top layer is the top layer's states of the last 256 steps, oldest first
    rnn = _stack("gru", (1, 2, 4))
    x = torch.randn(2, 11, 2, dtype=torch.float64)
    _, state = rnn.stream(x)
    top = Layout.of(rnn).register(state.buffer, 2)  # [B, 4, H]
    torch.testing.assert_close(top, reference_forward(rnn, x)[:, -4:], rtol=0, atol=1e-12)


def test_a_reset_row_starts_afresh_and_the_others_go_on():
    rnn = _stack("lstm", (1, 2, 4))
    a, b = torch.randn(2, 15, 2, dtype=torch.float64), torch.randn(1, 6, 2, dtype=torch.float64)
    _, state = rnn.stream(a[:, :9])
    state = reset_rows(state, [1])
    assert state.position.tolist() == [9, 0]
    out, _ = rnn.stream(torch.cat([a[:1, 9:], b]), state)
    torch.testing.assert_close(out[0], reference_forward(rnn, a[:1])[0, 9:], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1], reference_forward(rnn, b)[0], rtol=0, atol=1e-12)


def test_state_is_serialisable_and_checked():
    rnn = _stack("gru", (1, 3))
    x = torch.randn(2, 10, 2, dtype=torch.float64)
    _, state = rnn.stream(x[:, :4])
    saved = io.BytesIO()
    torch.save(state._asdict(), saved)
    saved.seek(0)
    restored = StreamState(**torch.load(saved, weights_only=True))
    out, _ = rnn.stream(x[:, 4:], restored)
    torch.testing.assert_close(out, reference_forward(rnn, x)[:, 4:], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="does not fit"):
        rnn.stream(x[:1, 4:], restored)  # a batch of 1 with a state of 2 rows
    for bad in (x[:, :0], x[:, 4:, :1], x[0]):  # no step, one channel of two, no batch axis
        with pytest.raises(ValueError, match=r"expected a chunk \[B, n, 2\]"):
            rnn.float().stream(bad.float(), None)


def test_gradients_flow_through_the_stream():
    """Truncated backpropagation through time works: the stream's gradients are forward's."""
    rnn = _stack("lstm", (1, 2))
    x = torch.randn(2, 9, 2, dtype=torch.float64)
    weights = torch.randn(2, 9, 4, dtype=torch.float64)
    grads = []
    for run in (lambda: rnn(x), lambda: _stream(rnn, x, [4, 5])[0]):
        rnn.zero_grad()
        (run() * weights).sum().backward()
        grads.append([p.grad.clone() for p in rnn.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_streamer_normalizes_raw_samples_and_refuses_what_cannot_stream():
    clf = DilatedRNNClassifier(2, [4, 4], [1, 2], "gru", num_classes=3).eval()
    transform = InputTransform(None, torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5]))
    raw = torch.randn(2, 12, 2)
    logits, _ = Streamer(TrainedModel(clf, transform))(raw[:, :5])
    more, _ = Streamer(TrainedModel(clf, transform))(raw[:, 5:], _)
    with torch.no_grad():
        expected = torch.stack([clf(transform(raw[:, : t + 1])) for t in range(12)], dim=1)
    torch.testing.assert_close(torch.cat([logits, more], 1), expected, rtol=0, atol=2e-6)
    for bad in (InputTransform(torch.arange(12).flip(0)), InputTransform(per_sequence=True)):
        with pytest.raises(ValueError, match="cannot consume samples as they arrive"):
            Streamer(TrainedModel(clf, bad))
