import itertools

import pytest
import torch

from dilated_rnn.model import DilatedRNN, DilatedRNNClassifier, ModelConfig
from dilated_rnn.reference import reference_forward

CELLS = ("rnn", "lstm", "gru")
SCHEDULES = ([1, 2, 4, 8], [1, 3, 9], [2, 4, 8], [1, 1, 2], [3, 2, 5], [4])
LENGTHS = (24, 25, 7)  # divisible by every dilation above or not, and shorter than some


def _classifier(cell, dilations, dtype=torch.float64):
    hidden = [5, 4, 6, 3][: len(dilations)]
    return DilatedRNNClassifier(2, hidden, dilations, cell, num_classes=3).to(dtype)


@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(CELLS, SCHEDULES, LENGTHS)))
def test_full_forward_matches_per_step_reference(cell, dilations, T):
    model = _classifier(cell, dilations).rnn
    x = torch.randn(3, T, 2, dtype=torch.float64)
    torch.testing.assert_close(model(x), reference_forward(model, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(CELLS, SCHEDULES, LENGTHS)))
def test_pruned_classifier_matches_full_logits_and_gradients(cell, dilations, T):
    if T < dilations[0]:
        pytest.skip("sequence shorter than the readout")
    model = _classifier(cell, dilations)
    x = torch.randn(3, T, 2, dtype=torch.float64, requires_grad=True)
    grads = []
    for forward in (model.forward, model.forward_full):
        model.zero_grad()
        x.grad = None
        logits = forward(x)
        (logits * torch.arange(1.0, 4.0, dtype=torch.float64)).sum().backward()
        grads.append((logits.detach(), x.grad.clone(), [p.grad.clone() for p in model.parameters()]))
    (pruned, gx_p, gp_p), (full, gx_f, gp_f) = grads
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx_p, gx_f, rtol=0, atol=1e-12)
    for a, b in zip(gp_p, gp_f):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_pruned_matches_reference_at_paper_scale():
    """784 steps, 9 layers, dilations 1..256, float32, as trained."""
    model = DilatedRNNClassifier.from_config(ModelConfig(cell="lstm"))
    x = torch.rand(2, 784, 1)
    expected = model.head(reference_forward(model.rnn, x)[:, -1])
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_outputs_at_equals_forward_at_those_steps():
    rnn = DilatedRNN(3, [4, 5, 2], [1, 3, 2], "gru").double()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    steps = [0, 7, 19, 11]
    torch.testing.assert_close(rnn.outputs_at(x, steps), rnn(x)[:, steps], rtol=0, atol=1e-12)


def test_generalised_readout_concatenates_last_d0_steps():
    model = _classifier("rnn", [2, 4, 8])
    assert model.head.in_features == 2 * 6
    x = torch.randn(2, 16, 2, dtype=torch.float64)
    top = reference_forward(model.rnn, x)
    torch.testing.assert_close(model(x), model.head(top[:, -2:].reshape(2, -1)), rtol=0, atol=1e-12)


def test_state_dict_moves_between_schedules():
    a = DilatedRNNClassifier(1, [6, 6, 6], [1, 2, 4], "lstm")
    b = DilatedRNNClassifier(1, [6, 6, 6], [1, 3, 5], "lstm")
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 30, 1)
    b_as_a = DilatedRNNClassifier(1, [6, 6, 6], [1, 2, 4], "lstm")
    b_as_a.load_state_dict(b.state_dict())
    torch.testing.assert_close(b_as_a(x), a(x))
    assert not torch.allclose(b(x), a(x))  # the schedule, not the weights, changed the result


def test_logits_shape_dtype_and_finite():
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(8,) * 4, dilations=(1, 2, 4, 8), cell="gru"))
    out = model(torch.rand(5, 50, 1))
    assert out.shape == (5, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model.double()(torch.rand(2, 50, 1, dtype=torch.float64)).dtype == torch.float64


def test_tensorflow_initialisation():
    model = DilatedRNNClassifier.from_config(ModelConfig(cell="lstm"))
    layer = model.rnn.layers[3]
    H = 20
    assert torch.equal(layer.bias_ih_l0[H : 2 * H], torch.ones(H))  # forget gate
    assert layer.bias_ih_l0[:H].abs().sum() == 0 and layer.bias_hh_l0.abs().sum() == 0
    bound = (6 / (20 + 20 + 80)) ** 0.5
    assert layer.weight_hh_l0.abs().max() <= bound and layer.weight_hh_l0.abs().max() > 0.9 * bound
    gru = DilatedRNN(1, [20], [1], "gru").layers[0]
    assert torch.equal(gru.bias_ih_l0[:40], torch.ones(40)) and gru.bias_ih_l0[40:].abs().sum() == 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(cell="tanh"), "unknown cell"),
        (dict(hidden_sizes=(20, 20), dilations=(1,)), "one dilation per layer"),
        (dict(hidden_sizes=(20,), dilations=(0,)), "dilations must be positive"),
        (dict(hidden_sizes=(20,), dilations=(-2,)), "dilations must be positive"),
        (dict(hidden_sizes=(), dilations=()), "at least one layer"),
        (dict(hidden_sizes=(0,), dilations=(1,)), "hidden sizes must be positive"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_config_rejects_bad_architecture(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_config_round_trips_through_dict():
    cfg = ModelConfig(hidden_sizes=(3, 4), dilations=(1, 5), cell="GRU")
    assert cfg.cell == "gru"
    assert ModelConfig(**cfg.to_dict()) == cfg
