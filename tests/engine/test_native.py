"""The native kernels (inference: rows in lanes and one row at a time; training's recurrences) against the
per-step reference and Numba's kernels; fallbacks."""

import itertools

import numpy as np
import pytest
import torch

from dilated_rnn import engine
from dilated_rnn.deploy.stream import Streamer
from dilated_rnn.engine import native, recurrence, stack
from dilated_rnn.engine import numba_kernels as nk
from dilated_rnn.errors import UserError
from dilated_rnn.model import DilatedRNN, DilatedRNNClassifier, ModelConfig, init_cell_
from dilated_rnn.model.cells import CELL_NAMES, CELLS
from dilated_rnn.model.pruning import plan_outputs
from dilated_rnn.model.reference import reference_forward
from dilated_rnn.model.streaming import Layout
from dilated_rnn.trained import TrainedModel

needs_lanes = pytest.mark.skipif(not native.available(), reason="no AVX2/FMA CPU or no C compiler")
SCHEDULES = ([1, 2, 4, 8], [1, 3, 9], [3, 2, 5], [4])


def _native(model, x, threads=2, lanes=None, every_layer=False):
    """The top layer's outputs (``every_layer``: every layer's) at the classifier's readout steps, by the native
    kernels."""
    rnn, T = model.rnn, x.shape[1]
    packed = stack.pack_plan(rnn, plan_outputs(T, rnn.dilations, range(T - rnn.dilations[0], T)), every_layer)
    width = sum(rnn.hidden_sizes) if every_layer else rnn.hidden_sizes[-1]
    out = np.full((len(x), rnn.dilations[0], width), np.nan, np.float32)
    native.stack(x.numpy(), stack.pack_weights(rnn), *packed, out, threads=threads, lanes=lanes)
    return torch.from_numpy(out)


@needs_lanes
@pytest.mark.parametrize("cell,dilations,T", list(itertools.product(CELL_NAMES, SCHEDULES, (24, 25, 7))))
def test_native_kernels_match_reference(cell, dilations, T):
    """Nested and other schedules, lengths a dilation does not divide, partial tiles, widths not a multiple
    of 4 or 8 (lanes) and wider than 8 (one row: vectors across units and a scalar tail)."""
    if T < dilations[0]:
        pytest.skip("sequence shorter than the readout")
    for B, F, H in ((1, 1, 5), (8, 3, 4), (13, 2, 6), (17, 1, 3), (3, 2, 19)):
        model = DilatedRNNClassifier(F, [H, 4, 6, 3][: len(dilations)], dilations, cell, num_classes=3).double()
        x = torch.randn(B, T, F, dtype=torch.float64)
        with torch.no_grad():
            expected = reference_forward(model.rnn, x, every_layer=True)[:, T - dilations[0]:].float()
        model = model.float()
        for lanes in (True, False):
            got = _native(model, x.float(), lanes=lanes)
            torch.testing.assert_close(got, expected[..., -model.rnn.hidden_sizes[-1]:], rtol=1e-5, atol=1e-5)
            got = _native(model, x.float(), lanes=lanes, every_layer=True)  # every layer's, bottom first
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_lanes
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_native_at_paper_scale_on_real_images_any_thread_count(cell, mnist):
    model = DilatedRNNClassifier.from_config(ModelConfig(cell=cell)).eval()
    x = mnist["test"].x[:21]
    got = [_native(model, x, threads) for threads in (1, 2, 3)]
    assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])  # tiles are independent
    rows = _native(model, x, 2, lanes=False)
    with torch.no_grad(), engine.use("torch"):
        expected = model.rnn.outputs_at(x, [783])
    torch.testing.assert_close(got[0], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rows, expected, rtol=1e-4, atol=1e-4)


@needs_lanes
@pytest.mark.parametrize("every_layer", [False, True])
@pytest.mark.parametrize("cell,dilations", list(itertools.product(CELL_NAMES, SCHEDULES + ([2, 7, 3],))))
def test_native_stream_matches_reference_and_numba_in_any_chunks(cell, dilations, every_layer):
    """Chunks shorter than, equal to and longer than a dilation (the registers' ring and its rotation), one
    row and several, widths over 8 (a masked tail), one and two threads; the caller's registers untouched;
    the top layer's outputs or every layer's (``readout layers``)."""
    T = 29
    rnn = DilatedRNN(2, [19, 4, 6, 3][: len(dilations)], dilations, cell).double()
    x = torch.randn(5, T, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_forward(rnn, x, every_layer).float()
    rnn, x = rnn.float(), x.float()
    weights, sizes = stack.pack_weights(rnn), stack.stream_sizes(rnn)
    for rows, chunks, threads in ((5, (1,) * T, 1), (5, (3, 9, 1, 16), 2), (1, (4, 25), 1), (2, (T,), 2)):
        state = np.zeros((rows, Layout.of(rnn).size), np.float32)
        outs, numba_state, k = [], state.copy(), 0
        for n in chunks:
            before = state.copy()
            out, state = native.stream(x[:rows, k : k + n].numpy(), weights, nk.CELL_CODES[cell], sizes,
                                       state, threads=threads, every_layer=every_layer)
            with engine.use("numba"):
                numba_out, numba_state = stack.stream_arrays(x[:rows, k : k + n].numpy(), weights, cell, sizes,
                                                             numba_state, every_layer)
            np.testing.assert_allclose(out, numba_out, rtol=0, atol=2e-6)
            np.testing.assert_allclose(state, numba_state, rtol=0, atol=2e-6)
            assert not np.shares_memory(before, state)
            outs.append(out)
            k += n
        torch.testing.assert_close(torch.from_numpy(np.concatenate(outs, 1)), expected[:rows], rtol=0, atol=2e-6)


def _layer_with_grads(layer, x, start, upstream, cell, fused=True):
    """A layer's outputs and the gradients of (outputs * upstream).sum() w.r.t. x and every parameter."""
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    if fused:
        out = engine.run_layer(layer, x, cell, start)
    else:  # the float64 reference: each row from a zero state at its start, zeros before it
        out = torch.stack([torch.cat([torch.zeros(int(s), layer.hidden_size, dtype=x.dtype), layer(x[i:i + 1, s:])[0][0]])
                           for i, s in enumerate(start.tolist())])
    (out * upstream).sum().backward()
    assert len({p.grad.data_ptr() for p in layer.parameters()}) == 4  # no two share memory (in-place updates)
    return [out.detach(), x.grad] + [p.grad.clone() for p in layer.parameters()]


@needs_lanes
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_native_training_recurrences_match_reference_and_numba(cell):
    """``Recurrence`` forward and backward on the native kernels (chains in lanes): outputs and every gradient
    against a float64 module run row by row, and Numba's kernels; partial tiles, widths that are not a
    multiple of 8 (the transposes' tails), chains of one and two steps, per-row starts (padding), one and two
    threads; inputs narrow enough for the kernel to project them and wider ones it receives projected."""
    shapes = ((1, 9, 2, 5), (8, 24, 6, 8), (13, 25, 1, 20), (17, 7, 4, 3), (9, 11, 5, 12), (5, 1, 2, 4), (6, 2, 7, 3))
    assert {F <= recurrence.PROJECT_WITHIN for _, _, F, _ in shapes} == {True, False}
    for N, n, F, H in shapes:
        layer = getattr(torch.nn, CELLS[cell].module)(F, H, batch_first=True)
        init_cell_(layer, cell)
        with torch.no_grad():
            for p in (layer.bias_ih_l0, layer.bias_hh_l0):
                p.add_(0.1 * torch.randn_like(p))
        x, upstream = torch.randn(N, n, F), torch.randn(N, n, H)
        start = torch.randint(0, n, (N,))
        start[0] = 0
        expected = _layer_with_grads(layer.double(), x.double(), start, upstream.double(), cell, fused=False)
        layer.float()
        with engine.use("numba"):
            numba_path = _layer_with_grads(layer, x, start, upstream, cell)
        for threads in (1, 2):
            saved = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                got = _layer_with_grads(layer, x, start, upstream, cell)
            finally:
                torch.set_num_threads(saved)
            for a, b, c in zip(got, expected, numba_path):
                scale = b.abs().max().item()
                assert (a.double() - b).abs().max().item() <= 2e-5 * scale + 1e-6
                assert (a - c).abs().max().item() <= 2e-5 * scale + 1e-6
            padding = torch.arange(n)[None, :] < start[:, None]
            assert (got[0][padding] == 0).all() and (got[1][padding] == 0).all()  # padding: no output, no gradient


@needs_lanes
@needs_lanes
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("projected", [False, True])
def test_recurrence_traffic_counts_the_arrays_each_kernel_reads_and_writes(cell, projected):
    """``recurrence_traffic`` (the profile's bytes) equals the bytes of the arrays the two calls take and give."""
    N, n, F, H, code, G = 11, 6, 3, 5, nk.CELL_CODES[cell], CELLS[cell].gates
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((N, n, G * H if projected else F), dtype=np.float32)
    w_ih, w_hh = rng.standard_normal((G * H, F), dtype=np.float32), rng.standard_normal((G * H, H), dtype=np.float32)
    w_t = np.ascontiguousarray(w_hh.T if projected else np.concatenate([w_ih.T, w_hh.T]))
    b = np.zeros(G * H, np.float32)
    start = np.zeros(N, np.int64)
    hs, aux = native.recurrence_forward(inputs, w_t, b, b, code, start, projected)
    dout = rng.standard_normal(hs.shape, dtype=np.float32)
    grads = native.recurrence_backward(dout, w_ih, w_hh, aux, code, start, x=None if projected else inputs,
                                       input_grad=True)
    written = {id(a): a for a in (grads["gates_x"], grads["gates_h"], grads.get("x")) if a is not None}
    forward, backward = native.recurrence_traffic(N, n, F, H, code, projected)
    assert forward == inputs.nbytes + aux.nbytes + hs.nbytes
    assert backward == dout.nbytes + aux.nbytes + sum(a.nbytes for a in written.values()) + (0 if projected else inputs.nbytes)


def test_streamer_runs_native_kernels(monkeypatch):
    model = DilatedRNNClassifier(1, [6, 6], [1, 2], "lstm", num_classes=4).eval()
    calls = []
    real = native.StreamKernel.run
    monkeypatch.setattr(native.StreamKernel, "run", lambda self, *a, **k: calls.append(a[1:4]) or real(self, *a, **k))
    x = torch.randn(3, 10, 1)
    streamer = Streamer(TrainedModel(model))
    first, state = streamer(x[:, :4])
    rest, state = streamer(x[:, 4:], state)
    with torch.no_grad():
        expected = torch.stack([model(x[:, : t + 1]) for t in range(10)], 1)
    assert calls == [(3, 4, 1), (3, 6, 1)]  # one call per chunk: registers, head and positions
    torch.testing.assert_close(torch.cat([first, rest], 1), expected, rtol=1e-5, atol=1e-5)
    assert state.position.tolist() == [10] * 3
    with engine.use("numba"):
        numba = Streamer(TrainedModel(model))
        assert numba.compiled.kernel is None
        numba_logits, numba_state = numba(x)
    torch.testing.assert_close(numba_logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(numba_state.buffer, state.buffer, rtol=0, atol=2e-6)


@needs_lanes
def test_classifier_runs_native_kernels(monkeypatch):
    model = DilatedRNNClassifier(2, [6, 6], [1, 2], "gru", num_classes=4).eval()
    calls = []
    real = native.StackKernel.run
    monkeypatch.setattr(native.StackKernel, "run", lambda self, x, *a, **k: calls.append(len(x)) or real(self, x, *a, **k))
    x = torch.randn(9, 11, 2)
    with torch.no_grad():
        many, few = model(x), model(x[:7])
        with engine.use("torch"):
            expected = model(x)
    assert calls == [9, 7]
    torch.testing.assert_close(many, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(few, expected[:7], rtol=1e-5, atol=1e-5)


@needs_lanes
def test_a_frozen_stack_keeps_its_kernel_per_length_until_frozen_again():
    model = DilatedRNNClassifier(2, [6, 6], [1, 2], "lstm", num_classes=4).eval()
    engine.freeze(model.rnn)
    x = torch.randn(3, 11, 2)
    bound = lambda: list(stack._state(model.rnn).kernels.values())
    with torch.no_grad():
        first = model(x)
        model(x)
        model(x[:, :9])
        assert len(bound()) == 2  # one per length
        model.rnn.layers[0].weight_hh_l0.mul_(0.5)
        assert torch.equal(model(x), first)  # frozen: a later change is not seen ...
        engine.freeze(model.rnn)
        changed = model(x)  # ... until it is frozen again
        with engine.use("torch"):
            expected = model(x)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(changed, expected, rtol=1e-5, atol=1e-5)


def test_unavailable_without_a_compiler_or_switched_off_by_drnn_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setenv("DRNN_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    assert not native.available() and list(tmp_path.iterdir()) == []  # nothing half-built left behind
    assert engine.backend() == "numba" and not engine.can_run("native")
    with pytest.raises(UserError, match="native engine cannot run"):
        with engine.use("native"):
            pass
    model = DilatedRNNClassifier(1, [4, 4], [1, 2], "lstm", num_classes=3).eval()
    x = torch.randn(10, 9, 1)
    with torch.no_grad():
        got = model(x)  # Numba's kernel
        with engine.use("torch"):
            torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="not available"):
        _native(model, x)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.delenv("CC")
    monkeypatch.setenv("DRNN_ENGINE", "numba")  # turned off: the native kernels never run, wherever they could
    calls = []
    monkeypatch.setattr(native.StackKernel, "run", lambda *a, **k: calls.append(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), got, rtol=1e-5, atol=1e-5)
    assert engine.backend() == "numba" and calls == []


@needs_lanes
def test_a_damaged_build_is_rebuilt_not_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DRNN_KERNEL_CACHE", str(tmp_path))
    built = native._compile()
    assert built.parent == tmp_path and (tmp_path / (built.name + ".sha256")).is_file()
    assert "compiling the native kernels once" in capsys.readouterr().err  # said before the one-off wait
    assert native._compile() == built and capsys.readouterr().err == ""  # built: nothing to say
    data = built.read_bytes()
    built.write_bytes(data[: len(data) // 2])  # truncated after it was built
    assert native._compile() == built and len(built.read_bytes()) > len(data) // 2  # rebuilt whole
    (tmp_path / (built.name + ".sha256")).unlink()
    assert native._compile() == built and (tmp_path / (built.name + ".sha256")).is_file()
