import itertools

import pytest
import torch

from dilated_rnn import engine
from dilated_rnn.model import DilatedRNN, DilatedRNNClassifier, ModelConfig
from dilated_rnn.model.pruning import plan_outputs
from dilated_rnn.model.reference import reference_forward

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


@pytest.mark.parametrize("cell", CELLS)
def test_orthogonal_initialisation(cell):
    torch.manual_seed(0)
    stack = DilatedRNN(3, [20, 20], [1, 2], cell)
    stack.reset_parameters("orthogonal")
    H, G = 20, {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    tf = DilatedRNN(3, [20, 20], [1, 2], cell)  # its biases are TF's
    for layer, tf_layer, F in zip(stack.layers, tf.layers, (3, 20)):
        for g in range(G):
            rec, inp = layer.weight_hh_l0[g * H : (g + 1) * H], layer.weight_ih_l0[g * H : (g + 1) * H]
            torch.testing.assert_close(rec @ rec.T, torch.eye(H), rtol=0, atol=1e-5)  # square: orthogonal
            torch.testing.assert_close(inp.T @ inp, torch.eye(F), rtol=0, atol=1e-5)  # [H, F]: orthonormal columns
        assert not torch.equal(layer.weight_hh_l0[:H], layer.weight_hh_l0[-H:]) or G == 1  # each block its own draw
        assert torch.equal(layer.bias_ih_l0, tf_layer.bias_ih_l0) and layer.bias_hh_l0.abs().sum() == 0


def test_forget_bias_sets_the_lstm_forget_gate_only():
    stack = DilatedRNN(1, [20, 20], [1, 2], "lstm")
    stack.reset_parameters("tf", forget_bias=3.0)
    H = 20
    for layer in stack.layers:
        assert torch.equal(layer.bias_ih_l0[H : 2 * H], torch.full((H,), 3.0))
        assert layer.bias_ih_l0[:H].abs().sum() == 0 and layer.bias_ih_l0[2 * H :].abs().sum() == 0
    with pytest.raises(ValueError, match="forget_bias applies to LSTM cells only, not gru"):
        DilatedRNN(1, [20], [1], "gru").reset_parameters("tf", forget_bias=3.0)
    with pytest.raises(ValueError, match="init must be one of tf, orthogonal, got 'he'"):
        DilatedRNN(1, [20], [1], "lstm").reset_parameters("he")


def test_orthogonal_initialisation_carries_the_input_to_the_top_of_the_paper_stack():
    """Why it is offered: TF's bounds let 9 stacked 20-unit LSTM layers all but lose the input at initialisation."""
    x = torch.rand(64, 784, 1)

    def spread_at_top(init):
        torch.manual_seed(1)
        model = DilatedRNNClassifier.from_config(ModelConfig(cell="lstm")).eval()
        model.rnn.reset_parameters(init)
        with torch.no_grad():
            top = model.rnn.outputs_at(x, [783])
        return top.std(0).mean().item()  # how much the top output varies across images

    assert spread_at_top("orthogonal") > 30 * spread_at_top("tf")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(cell="tanh"), "cell must be one of rnn, lstm, gru, got 'tanh'"),
        (dict(hidden_sizes=(20, 20), dilations=(1,)), "one dilation per layer"),
        (dict(hidden_sizes=(20,), dilations=(0,)), "dilations must be positive"),
        (dict(hidden_sizes=(20,), dilations=(-2,)), "dilations must be positive"),
        (dict(hidden_sizes=(), dilations=()), "at least one layer"),
        (dict(hidden_sizes=(0,), dilations=(1,)), "hidden_sizes must be positive"),
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


def _recording_drop(masks, p=0.4):
    """A stand-in for ``DilatedRNN.drop`` that draws a 0 / 1/(1-p) mask like dropout and keeps it."""
    def drop(h):
        masks.append(torch.bernoulli(torch.full_like(h, 1 - p)) / (1 - p))
        return h * masks[-1]
    return drop


def _replaying_drop(masks, plan):
    """Applies the full path's masks to the pruned path's tensors, which hold only the plan's positions."""
    calls = iter(range(len(masks)))

    def drop(h):
        i = next(calls)
        if i == len(plan.layers) - 1:  # the head's input: the same [B, d0, H] as in the full path
            return h * masks[i]
        mask = torch.ones_like(h)
        for row, t in enumerate(plan.layers[i].positions):
            if t < masks[i].shape[1]:  # positions past the end are never read by the layer above
                mask[:, row] = masks[i][:, t]
        return h * mask
    return drop


@pytest.mark.parametrize("cell,dilations,T", [
    (cell, dilations, T) for cell, dilations, T in itertools.product(CELLS, SCHEDULES, LENGTHS)
    if len(dilations) > 1 and T >= dilations[0]  # a connection between layers, and a readout that fits
])
def test_pruned_dropout_equals_full_dropout_with_the_same_masks(cell, dilations, T):
    model = _classifier(cell, dilations).train()
    x = torch.randn(3, T, 2, dtype=torch.float64)
    masks = []
    model.rnn.drop = _recording_drop(masks)
    full = model.forward_full(x)
    assert len(masks) == len(dilations)  # into every layer but the first, and into the head
    model.rnn.drop = _replaying_drop(masks, plan_outputs(T, model.rnn.dilations, model._steps(T)))
    pruned = model(x)
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-12)
    model.rnn.drop = lambda h: h
    assert not torch.allclose(model(x), full)  # the masks did change the logits


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_drops_layer_outputs_in_training_only(cell):
    plain_model = DilatedRNNClassifier(1, [16, 16, 16], [1, 2, 4], cell)
    model = DilatedRNNClassifier(1, [16, 16, 16], [1, 2, 4], cell, dropout=0.5)
    model.load_state_dict(plain_model.state_dict())
    x = torch.rand(8, 40, 1)
    plain = plain_model.eval()(x)
    with torch.no_grad():
        compiled = plain_model(x)
    model.eval()
    torch.testing.assert_close(model(x), plain, rtol=0, atol=0)  # evaluation mode ignores dropout,
    with torch.no_grad():  # also on the compiled inference path
        torch.testing.assert_close(model(x), compiled, rtol=0, atol=0)
    model.train()
    h = torch.randn(4, 30, 16)
    dropped = model.rnn.drop(h)
    kept = dropped != 0
    assert 0.35 < kept.float().mean() < 0.65
    torch.testing.assert_close(dropped[kept], 2 * h[kept])
    assert not torch.allclose(model(x), plain)
    torch.testing.assert_close(plain_model.train()(x), plain)  # no dropout: training mode computes the same


def _reference_logits(model, x, length):
    """From the equations: the sequence alone, unpadded, read at its own last d0 steps."""
    top = reference_forward(model.rnn, x[:, :length])  # [1, L, H_top]
    return model.head(top[:, length - model.readout_steps :].reshape(1, -1))


@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELLS, SCHEDULES)))
def test_variable_length_batches_are_exact(cell, dilations):
    """Each row's logits are those of its sequence alone, whatever the padding after it holds."""
    model = _classifier(cell, dilations)
    gen = torch.Generator().manual_seed(len(dilations) * 7 + dilations[0])
    lengths = torch.randint(max(1, dilations[0]), 26, (6,), generator=gen)
    lengths[0] = 25  # the longest row sets T
    x = torch.randn(6, 25, 2, dtype=torch.float64, generator=gen)
    noisy = x.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 1e3  # padding that would ruin any real output it reached
    x.requires_grad_(True)
    grouped = model(x, lengths)
    full = model.forward_full(noisy, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(grouped[b : b + 1], alone, rtol=0, atol=1e-12)
        torch.testing.assert_close(grouped[b : b + 1], _reference_logits(model, x.detach()[b : b + 1], n),
                                   rtol=0, atol=1e-10)
    torch.testing.assert_close(full, grouped, rtol=0, atol=1e-10)
    grouped[:, 0].sum().backward()  # the gradient reaches each row's real steps only
    for b, n in enumerate(lengths.tolist()):
        assert x.grad[b, n:].abs().sum() == 0 and x.grad[b, :n].abs().sum() > 0


def test_variable_length_cost_follows_the_real_lengths(monkeypatch):
    """The cell steps run are those of each length's pruned plan, not of the padded maximum."""
    from dilated_rnn.model.pruning import plan_outputs

    model = DilatedRNNClassifier(3, [8] * 5, [1, 2, 4, 8, 16], "gru").eval()
    lengths = torch.tensor([400, 37, 120, 37, 5, 260])
    x = torch.randn(len(lengths), 400, 3)
    steps = []  # rows x steps of every recurrence call
    for layer in model.rnn.layers:
        layer.register_forward_hook(lambda module, inputs, output: steps.append(inputs[0].shape[0] * inputs[0].shape[1]))
    with torch.no_grad(), engine.use("torch"):  # PyTorch's modules, so that a hook sees every recurrence it runs
        model(x, lengths)
    expected = sum(plan_outputs(n, model.rnn.dilations, [n - 1]).cell_steps for n in lengths.tolist())
    padded = len(lengths) * plan_outputs(400, model.rnn.dilations, [399]).cell_steps
    assert sum(steps) == expected and expected < padded / 2


@pytest.mark.skipif(not engine.fused(), reason="DRNN_ENGINE=torch: no compiled backend")
@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELLS, SCHEDULES)))
def test_variable_length_fused_path_is_exact(cell, dilations):
    """On the CPU in float32 a batch is right-aligned and the kernels skip each row's front padding."""
    model = _classifier(cell, dilations, torch.float32)
    gen = torch.Generator().manual_seed(len(dilations) * 11 + dilations[-1])
    lengths = torch.randint(max(1, dilations[0]), 31, (7,), generator=gen)
    lengths[2] = 30
    x = torch.randn(7, 30, 2, generator=gen)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 1e3  # padding that would ruin any real output it reached
    x.requires_grad_(True)
    logits = model(x, lengths)
    double = _classifier(cell, dilations)
    double.load_state_dict(model.state_dict())
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(logits[b : b + 1], model(x[b : b + 1, :n]), rtol=1e-5, atol=1e-5)
        expected = _reference_logits(double, x.detach()[b : b + 1].double(), n).float()
        torch.testing.assert_close(logits[b : b + 1], expected, rtol=1e-4, atol=1e-4)
    weights = torch.randn(logits.shape, generator=gen)
    (logits * weights).sum().backward()
    fused_grads = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    x.grad = None
    with engine.use("torch"):  # PyTorch's modules, grouped by length
        pure = model(x, lengths)
    (pure * weights).sum().backward()
    for a, b in zip(fused_grads, [x.grad] + [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for b, n in enumerate(lengths.tolist()):
        assert fused_grads[0][b, n:].abs().sum() == 0


@pytest.mark.skipif(not engine.fused(), reason="DRNN_ENGINE=torch: no compiled backend")
def test_fused_variable_length_work_follows_the_real_lengths(monkeypatch):
    """The recurrences run exactly each length's pruned cell steps: one call per layer, padding skipped."""
    from dilated_rnn.model.pruning import plan_outputs

    model = DilatedRNNClassifier(3, [8] * 5, [1, 2, 4, 8, 16], "lstm")
    lengths = torch.tensor([400, 37, 120, 37, 5, 260])
    x = torch.randn(len(lengths), 400, 3)
    work, calls = [], []
    real = engine.run_layer

    def counting(layer, h, cell, start=None):
        calls.append(1)
        work.append(h.shape[0] * h.shape[1] - int(start.sum()))
        return real(layer, h, cell, start)

    monkeypatch.setattr(engine, "run_layer", counting)
    model(x, lengths).sum().backward()
    expected = sum(plan_outputs(n, model.rnn.dilations, [n - 1]).cell_steps for n in lengths.tolist())
    assert len(calls) == 5 and sum(work) == expected


def _layers_classifier(cell, dilations, dtype=torch.float64):
    hidden = [5, 4, 6, 3][: len(dilations)]
    return DilatedRNNClassifier(2, hidden, dilations, cell, num_classes=3, readout="layers").to(dtype)


@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(CELLS, SCHEDULES, LENGTHS)))
def test_every_layer_readout_matches_the_reference_on_the_pruned_chains(cell, dilations, T):
    """readout="layers": the head reads every layer's last d0 outputs, all of them on the pruned chains."""
    if T < dilations[0]:
        pytest.skip("sequence shorter than the readout")
    model = _layers_classifier(cell, dilations)
    assert model.head.in_features == dilations[0] * sum([5, 4, 6, 3][: len(dilations)])
    x = torch.randn(3, T, 2, dtype=torch.float64)
    every = reference_forward(model.rnn, x, every_layer=True)  # [3, T, sum of H_l]
    expected = model.head(every[:, T - dilations[0]:].reshape(3, -1))
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.forward_full(x), expected, rtol=0, atol=1e-10)
    plan = plan_outputs(T, dilations, range(T - dilations[0], T))
    assert all(len(rows) == dilations[0] for rows in plan.layer_readouts)  # every layer computes those steps


@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELLS, SCHEDULES)))
def test_every_layer_readout_of_variable_lengths_compiled_and_not(cell, dilations):
    model = _layers_classifier(cell, dilations, torch.float32)
    gen = torch.Generator().manual_seed(3)
    lengths = torch.randint(max(1, dilations[0]), 21, (5,), generator=gen)
    lengths[0] = 20
    x = torch.randn(5, 20, 2, generator=gen)
    double = _layers_classifier(cell, dilations)
    double.load_state_dict(model.state_dict())
    got = model(x, lengths)  # compiled: right-aligned, padding skipped (where the engine runs)
    with engine.use("torch"):
        grouped = model(x, lengths)  # PyTorch's modules, grouped by length
    for b, n in enumerate(lengths.tolist()):
        every = reference_forward(double.rnn, x[b : b + 1, :n].double(), every_layer=True)
        expected = double.head(every[:, n - dilations[0]:].reshape(1, -1)).float()
        torch.testing.assert_close(got[b : b + 1], expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(grouped[b : b + 1], expected, rtol=1e-4, atol=1e-4)
    got.sum().backward()  # gradients flow through every layer's readout
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_every_layer_readout_streams_exactly_where_d0_is_one(cell):
    model = _layers_classifier(cell, [1, 2, 4])
    x = torch.randn(2, 9, 2, dtype=torch.float64)
    first, state = model.stream(x[:, :4])
    rest, _ = model.stream(x[:, 4:], state)
    expected = torch.stack([model(x[:, : t + 1]) for t in range(9)], dim=1)
    torch.testing.assert_close(torch.cat([first, rest], 1), expected, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="not streamed"):
        _layers_classifier(cell, [2, 4]).stream(x)  # d0 = 2: the layers' recent outputs are not kept


@pytest.mark.parametrize("cell,readout", list(itertools.product(CELLS, ("mean", "max"))))
def test_pooled_readouts_match_the_reference_over_real_steps(cell, readout):
    """readout="mean" / "max": the top outputs pooled over each sequence's real steps, never its padding."""
    model = DilatedRNNClassifier(2, [5, 4, 6], [1, 2, 4], cell, num_classes=3, readout=readout).double()
    assert model.head.in_features == 6
    lengths = torch.tensor([13, 7, 2, 13])
    x = torch.randn(4, 13, 2, dtype=torch.float64)
    x[1, 7:], x[2, 2:] = 1e3, -1e3  # padding that would move any pooled value it reached
    logits, whole = model(x, lengths), model(x[:1])
    for b, n in enumerate(lengths.tolist()):
        top = reference_forward(model.rnn, x[b : b + 1, :n])[0]  # [n, H_top]
        pooled = top.mean(0) if readout == "mean" else top.amax(0)
        torch.testing.assert_close(logits[b], model.head(pooled), rtol=0, atol=1e-10)
    torch.testing.assert_close(whole, logits[:1], rtol=0, atol=1e-10)
    torch.testing.assert_close(model.forward_full(x, lengths), logits, rtol=0, atol=1e-12)
    first, state = model.stream(x[:1, :5])  # a running mean or maximum: exact at every step
    rest, _ = model.stream(x[:1, 5:], state)
    prefix = torch.stack([model(x[:1, : t + 1]) for t in range(13)], dim=1)
    torch.testing.assert_close(torch.cat([first, rest], 1), prefix, rtol=0, atol=1e-10)
    fast = DilatedRNNClassifier(2, [5, 4, 6], [1, 2, 4], cell, num_classes=3, readout=readout)
    fast.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    torch.testing.assert_close(fast(x.float(), lengths).double(), logits, rtol=1e-4, atol=1e-4)  # compiled
