"""The engine's compiled recurrences (``engine/recurrence.py``, ``engine/stack.py``) against PyTorch's modules and
the per-step reference."""

import itertools
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from dilated_rnn import engine
from dilated_rnn.engine import native, recurrence
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig, init_cell_
from dilated_rnn.model.cells import CELL_NAMES, CELLS
from dilated_rnn.model.reference import reference_forward

pytestmark = pytest.mark.skipif(not engine.fused(), reason="DRNN_ENGINE=torch: no compiled backend")

# (rows, steps, input features, hidden units): odd sizes, one step, one row, a paper-sized layer
SHAPES = ((3, 7, 2, 5), (1, 1, 1, 4), (5, 33, 20, 20), (2, 784, 1, 20))


def _layer(cell, F, H):
    layer = getattr(nn, CELLS[cell].module)(F, H, batch_first=True)
    init_cell_(layer, cell)
    with torch.no_grad():  # non-zero biases everywhere, so every bias gradient path is exercised
        for p in (layer.bias_ih_l0, layer.bias_hh_l0):
            p.add_(0.1 * torch.randn_like(p))
    return layer


def _outputs_and_grads(layer, x, upstream, run):
    layer.zero_grad()
    x = x.detach().requires_grad_(True)
    y = run(layer, x)
    (y * upstream).sum().backward()
    return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("cell,shape", list(itertools.product(CELL_NAMES, SHAPES)))
def test_fused_layer_matches_pytorch_module(cell, shape):
    N, n, F, H = shape
    layer = _layer(cell, F, H)
    x = torch.randn(N, n, F)
    upstream = torch.randn(N, n, H)
    fused = _outputs_and_grads(layer, x, upstream, lambda m, v: engine.run_layer(m, v, cell))
    plain = _outputs_and_grads(layer, x, upstream, lambda m, v: m(v)[0])
    names = ["output", "input grad"] + [name for name, _ in layer.named_parameters()]
    for name, a, b in zip(names, fused, plain):
        scale = b.abs().max().item() or 1.0
        assert (a - b).abs().max().item() <= 2e-5 * scale + 1e-6, f"{cell} {shape}: {name} differs"


@pytest.mark.parametrize("cell,dilations,T", [
    ("rnn", [1, 2, 4, 8], 24), ("lstm", [1, 3, 9], 25), ("gru", [2, 4, 8], 7),
    ("lstm", [3, 2, 5], 24), ("gru", [1, 1, 2], 25), ("rnn", [4], 7),
])
def test_fused_classifier_matches_reference_and_pure_path(cell, dilations, T):
    """Pruned + fused (float32) vs the per-step loop written from the equations, and vs fused off."""
    model = DilatedRNNClassifier(2, [5, 4, 6, 3][: len(dilations)], dilations, cell, num_classes=3)
    x = torch.randn(3, T, 2)
    B = x.shape[0]
    expected = model.head(reference_forward(model.rnn, x)[:, T - dilations[0]:].reshape(B, -1))
    results = []
    for backend in (engine.backend(), "torch"):
        model.zero_grad()
        xi = x.clone().requires_grad_(True)
        with engine.use(backend):
            logits = model(xi)
        logits.pow(2).sum().backward()
        results.append([logits.detach(), xi.grad] + [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(results[0][0], expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(
    CELL_NAMES, ([1, 2, 4, 8], [1, 3, 9], [3, 2, 5], [4]), (24, 25, 7))))
def test_every_step_forward_is_fused_and_matches_reference_and_modules(cell, dilations, T, monkeypatch):
    """``DilatedRNN.forward`` (all steps: sequence labelling) on the fused recurrences, outputs and gradients."""
    calls = []
    monkeypatch.setattr(recurrence.Recurrence, "apply", lambda *a, f=recurrence.Recurrence.apply: calls.append(1) or f(*a))
    rnn = DilatedRNNClassifier(2, [5, 4, 6, 3][: len(dilations)], dilations, cell, num_classes=3).rnn
    x, upstream = torch.randn(3, T, 2), torch.randn(3, T, rnn.hidden_sizes[-1])
    expected = reference_forward(rnn, x)
    results = []
    for backend in (engine.backend(), "torch"):
        rnn.zero_grad()
        xi = x.clone().requires_grad_(True)
        with engine.use(backend):
            out = rnn(xi)
        (out * upstream).sum().backward()
        results.append([out.detach(), xi.grad] + [p.grad.clone() for p in rnn.parameters()])
    assert len(calls) == len(dilations)  # one fused recurrence per layer, and only when fused
    torch.testing.assert_close(results[0][0], expected, rtol=1e-5, atol=1e-5)
    # float32 gradients through up to 25 steps, relative to their scale. Some of these small vanilla stacks
    # are chaotic (gradients ~100x the upstream), which amplifies rounding: measured against float64, up to
    # 9e-5 of the scale for the native kernel and 1.3e-5 for PyTorch's modules; a wrong term gives O(1).
    for a, b in zip(*results):
        assert (a - b).abs().max().item() <= 3e-4 * b.abs().max().item() + 1e-5


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_fused_training_step_on_real_images_matches_pure_path(cell, mnist):
    """Paper scale (784 steps, dilations 1..256) on 16 real test images: loss and every gradient."""
    model = DilatedRNNClassifier.from_config(ModelConfig(cell=cell))
    x = mnist["test"].x[:16]
    y = torch.as_tensor(mnist["test"].labels[:16]).long()
    results = []
    for backend in (engine.backend(), "torch"):
        model.zero_grad()
        with engine.use(backend):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), results[0][1:], results[1][1:]):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-7, f"{cell}: gradient of {name} differs"


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_nan_input_propagates(cell):
    """Fast math must not hide a diverged run: NaN in, NaN out (so the loss check sees it)."""
    layer = _layer(cell, 1, 4)
    x = torch.zeros(2, 5, 1)
    x[0, 2, 0] = float("nan")
    y = engine.run_layer(layer, x, cell)
    assert torch.isnan(y[0, 2:]).all() and not torch.isnan(y[0, :2]).any() and not torch.isnan(y[1]).any()


def test_float64_and_disabled_use_the_module(monkeypatch):
    layer = _layer("gru", 2, 3).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    assert not engine.runs(x, "gru") and engine.runs(x.float(), "gru")
    torch.testing.assert_close(engine.run_layer(layer, x, "gru"), layer(x)[0], rtol=0, atol=0)
    with engine.use("torch"):
        assert not engine.runs(x.float(), "gru")
    monkeypatch.setenv("DRNN_ENGINE", "torch")
    assert not engine.runs(x.float(), "gru") and engine.backend() == "torch"


SCHEDULES = ([1, 2, 4, 8], [1, 3, 9], [2, 4, 8], [1, 1, 2], [3, 2, 5], [4])


@pytest.mark.parametrize("cell,dilations,T,readout",
                         list(itertools.product(CELL_NAMES, SCHEDULES, (24, 25, 7), ("last", "layers"))))
def test_compiled_inference_matches_reference(cell, dilations, T, readout):
    """No-grad forward (the whole stack in one compiled call, on the native and the Numba kernels) vs the per-step
    loop from the equations; the top layer's last d0 steps, or every layer's (concatenated bottom first)."""
    if T < dilations[0]:
        pytest.skip("sequence shorter than the readout")
    model = DilatedRNNClassifier(2, [5, 4, 6, 3][: len(dilations)], dilations, cell, num_classes=3, readout=readout)
    x = torch.randn(3, T, 2)
    h = reference_forward(model.rnn, x, every_layer=readout == "layers")[:, T - dilations[0]:]
    expected = model.head(h.reshape(3, -1))
    for backend in ("native", "numba") if native.available() else ("numba",):
        with torch.no_grad(), engine.use(backend):
            assert engine.runs(x, cell)
            got = model(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), engine.use("torch"):
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_compiled_inference_on_real_images_at_paper_scale(cell, mnist):
    model = DilatedRNNClassifier.from_config(ModelConfig(cell=cell))
    x = mnist["test"].x[:32]
    with torch.inference_mode():
        got = model(x)
        with engine.use("torch"):
            pure = model(x)
    torch.testing.assert_close(got, pure, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == pure.argmax(1)).all()


@pytest.mark.parametrize("update", ["sgd", "fused_adam", "data_write"])
def test_compiled_inference_sees_weight_updates(update):
    """Inference after any kind of weight update uses the new weights, never a stale copy."""
    model = DilatedRNNClassifier(1, [6, 6], [1, 2], "lstm", num_classes=4)
    x = torch.rand(5, 12, 1)
    with torch.no_grad():
        before = model(x)
    if update == "data_write":
        model.rnn.layers[0].weight_hh_l0.data.mul_(1.5)  # moves no version counter
    else:
        optimizer = (torch.optim.SGD(model.parameters(), lr=0.5) if update == "sgd"
                     else torch.optim.Adam(model.parameters(), lr=0.05, fused=True))
        nn.functional.cross_entropy(model(x), torch.arange(5) % 4).backward()
        optimizer.step()
    with torch.no_grad():
        after = model(x)
        with engine.use("torch"):
            expected = model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    fresh = DilatedRNNClassifier(1, [6, 6], [1, 2], "lstm", num_classes=4)
    with torch.no_grad():
        fresh(x)  # packs its own initial weights
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=1e-5, atol=1e-5)


def test_openmp_threading_layer_even_after_openvino_loaded_tbb():
    code = ("import openvino, numba, torch\n"
            "from dilated_rnn.model import DilatedRNNClassifier, ModelConfig\n"
            "m = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell='gru'))\n"
            "m.eval()(torch.zeros(2, 10, 1))\n"
            "print(numba.threading_layer())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    env["DRNN_ENGINE"] = "numba"  # Numba's kernels, not the native ones, run the model
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["omp"]
