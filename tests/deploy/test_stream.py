"""Online inference: the streaming step graph (export) and ``drnn stream`` over real MNIST and real series."""

import json

import numpy as np
import onnx
import pytest
import torch

from dilated_rnn import engine
from dilated_rnn.cli import main
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.deploy.export import export_step_onnx
from dilated_rnn.deploy.stream import (
    OnnxStream,
    TorchStream,
    anytime_accuracy,
    stream_sequences,
)
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.trained import TrainedModel, load_pretrained


def _prefix_logits(model, transform, sequence, first: int = 0):
    """What the prefix of every length from ``first + 1`` gives: the logits ``stream`` must reproduce."""
    x = transform(torch.from_numpy(sequence).unsqueeze(0))
    with torch.no_grad():
        return np.stack([model(x[:, : t + 1])[0].numpy() for t in range(first, len(sequence))])


@pytest.mark.parametrize("name", ["lstm-mnist", "gru-mnist", "rnn-mnist"])
def test_step_graph_streams_real_images_like_pytorch(tmp_path, mnist, name):
    trained = load_pretrained(name)
    model, transform = trained.model, trained.transform
    images = mnist["test"].subset(3)
    report = export_step_onnx(trained, tmp_path / "step.onnx", images.sequences())
    assert report["parity"]["passed"] and report["parity"]["max_abs_diff"] < 1e-4
    ops = {n.op_type for n in onnx.load(str(tmp_path / "step.onnx")).graph.node}
    assert "Mod" not in ops and not ops & {"LSTM", "GRU", "RNN", "Loop", "Scan"}  # slices and concats
    sequences = images.sequences()
    graph, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences[:1])
    prefix = _prefix_logits(model, transform, sequences[0])
    steps = [0, 1, 100, 391, 783]  # every step would run 784 pruned models
    np.testing.assert_allclose(graph[0][steps], prefix[steps], rtol=0, atol=1e-4)


def test_step_graph_of_a_normalized_model_with_a_wide_readout(tmp_path):
    """Raw samples in (the normalization is in the graph); d0 = 2: no logits at step 0, then the prefix's."""
    model = DilatedRNNClassifier(3, [6, 5], [2, 4], "gru", num_classes=4).eval()
    transform = InputTransform(None, torch.tensor([5.0, -1.0, 0.0]), torch.tensor([2.0, 0.5, 3.0]))
    sequences = [np.random.default_rng(i).normal(4, 2, (n, 3)).astype(np.float32) for i, n in enumerate((9, 14))]
    export_step_onnx(TrainedModel(model, transform), tmp_path / "step.onnx", sequences)
    got, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences, batch_size=2)
    for seq, logits in zip(sequences, got):
        assert np.isnan(logits[0]).all()
        np.testing.assert_allclose(logits[1:], _prefix_logits(model, transform, seq, first=1), rtol=0, atol=1e-5)


def test_torch_stream_in_chunks_and_batches_equals_one_sample_at_a_time():
    trained = load_pretrained("gru-mnist")
    rng = np.random.default_rng(0)
    sequences = [rng.random((n, 1), dtype=np.float32) for n in (30, 41, 17)]
    one, per_sample = stream_sequences(TorchStream(trained), sequences)
    many, _ = stream_sequences(TorchStream(trained), sequences, batch_size=3, chunk=7)
    assert len(per_sample) == 30 + 41 + 17
    for a, b, seq in zip(one, many, sequences):
        assert a.shape == (len(seq), 10)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_anytime_accuracy_reads_each_sequence_at_its_fraction():
    logits = [np.eye(3)[[0, 1, 1, 2]], np.eye(3)[[2, 2]]]  # predictions 0,1,1,2 and 2,2
    curve = anytime_accuracy(logits, np.array([2, 2]), points=4)
    assert curve["fractions"] == [0.25, 0.5, 0.75, 1.0]
    assert curve["accuracy"] == [0.5, 0.5, 0.5, 1.0]


def test_drnn_stream_cli_predicts_every_step(tmp_path, mnist_dir, capsys, shipped_checkpoint):
    d = str(mnist_dir)
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "12", "--data-dir", d]) == 0
    ckpt = str(shipped_checkpoint("lstm-mnist"))
    assert main(["stream", ckpt, str(tmp_path / "bins"), "-o", str(tmp_path / "s.npz"), "--labels",
                 str(tmp_path / "bins" / "labels.npy"), "--batch-size", "4", "--chunk", "16"]) == 0
    out = capsys.readouterr().out
    assert "per step of the batch" in out and "accuracy after" in out
    saved = np.load(tmp_path / "s.npz", allow_pickle=False)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert saved["predictions"].shape == (12, 784) and (saved["lengths"] == 784).all()
    # the last step's prediction is the classifier's on the whole image
    assert main(["infer", ckpt, str(tmp_path / "bins"), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    final = [np.fromfile(tmp_path / "out" / f"{n}_output_0.bin", np.float32).argmax() for n in saved["names"]]
    assert saved["predictions"][:, -1].tolist() == final
    labels = np.load(tmp_path / "bins" / "labels.npy")
    assert summary["accuracy_at_end"] == (saved["predictions"][:, -1] == labels).mean()
    assert summary["anytime"]["accuracy"][0] < summary["accuracy_at_end"]  # 5% of an image says little


def test_drnn_stream_refuses_what_it_cannot_run(tmp_path, mnist_dir, capsys, shipped_checkpoint):
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "2", "--data-dir", str(mnist_dir)]) == 0
    capsys.readouterr()
    assert main(["stream", str(shipped_checkpoint("lstm-pmnist")), str(tmp_path / "bins"), "-o",
                 str(tmp_path / "s.npz")]) == 2
    assert "cannot consume samples as they arrive" in capsys.readouterr().err
    assert main(["export", "--pretrained", "lstm-mnist", "-o", str(tmp_path / "batch.onnx"), "--check-images", "8",
                 "--data-dir", str(mnist_dir)]) == 0
    capsys.readouterr()
    assert main(["stream", str(tmp_path / "batch.onnx"), str(tmp_path / "bins"), "-o", str(tmp_path / "s.npz")]) == 2
    assert "not a streaming step graph" in capsys.readouterr().err
    assert main(["export", "--pretrained", "rnn-mnist", "--streaming", "--check-images", "2", "-o",
                 str(tmp_path / "step.onnx"), "--data-dir", str(mnist_dir)]) == 0
    (tmp_path / "step.onnx.sha256").unlink()
    assert main(["stream", str(tmp_path / "step.onnx"), str(tmp_path / "bins"), "-o", str(tmp_path / "s.npz")]) == 2
    assert "sha256 is missing" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_layer_readout_streams_compiled_and_as_a_step_graph(tmp_path, cell):
    """readout="layers" (d0 = 1): every layer's output at each step, concatenated, on the compiled stream (native
    and Numba, in chunks and batches) and in the step graph, equal to the prefix's logits."""
    model = DilatedRNNClassifier(2, [5, 11], [1, 3], cell, num_classes=3, readout="layers").eval()
    sequences = [np.random.default_rng(i).normal(size=(n, 2)).astype(np.float32) for i, n in enumerate((7, 12))]
    expected = [_prefix_logits(model, InputTransform(), seq) for seq in sequences]
    for backend in ("native", "numba"):
        with engine.use(backend):
            stream = TorchStream(TrainedModel(model))
            assert stream.streamer.compiled is not None  # one compiled call per chunk, the head included
            for batch, chunk in ((1, 1), (2, 5)):
                got, _ = stream_sequences(stream, sequences, batch_size=batch, chunk=chunk)
                for logits, want in zip(got, expected):
                    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)
    report = export_step_onnx(TrainedModel(model), tmp_path / "step.onnx", sequences)
    assert report["parity"]["passed"]
    got, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences, batch_size=2)
    for logits, want in zip(got, expected):
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_step_graph_of_a_pooled_readout(tmp_path, readout):
    """A running mean (its sum in the state) or maximum, one sample at a time, on ONNX Runtime."""
    model = DilatedRNNClassifier(2, [5, 4], [1, 3], "gru", num_classes=3, readout=readout).eval()
    sequences = [np.random.default_rng(i).normal(size=(n, 2)).astype(np.float32) for i, n in enumerate((7, 12))]
    assert export_step_onnx(TrainedModel(model), tmp_path / "step.onnx", sequences)["parity"]["passed"]
    got, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences, batch_size=2)
    for seq, logits in zip(sequences, got):
        np.testing.assert_allclose(logits, _prefix_logits(model, InputTransform(), seq), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_model_reading_differences_streams_raw_samples(tmp_path, cell):
    """The transform appends first differences: the stream keeps the last raw sample in its state (none at a
    row's first step), so raw samples in any chunks, batches, on the compiled kernels, in an ensemble and in the
    step graph give the prefix's logits."""
    from dilated_rnn.model.ensemble import EnsembleClassifier

    torch.manual_seed(0)
    transform = InputTransform(None, torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([2.0, 3.0, 1.5, 0.7]),
                               differences=True)
    single, other = (DilatedRNNClassifier(4, [6, 5], [1, 3], cell, num_classes=3, readout="layers").eval()
                     for _ in range(2))
    ensemble = EnsembleClassifier([single, other])
    sequences = [np.random.default_rng(i).normal(1, 2, size=(n, 2)).astype(np.float32) for i, n in enumerate((8, 13))]
    for model in (single, ensemble):
        trained = TrainedModel(model, transform)
        assert trained.features == 2
        expected = [_prefix_logits(trained.module(), InputTransform(), seq) for seq in sequences]
        for backend in ("native", "numba"):
            with engine.use(backend):
                stream = TorchStream(trained)
                assert model is ensemble or stream.streamer.inner.compiled is not None
                for batch, chunk in ((1, 1), (2, 5), (2, 64)):
                    got, _ = stream_sequences(stream, sequences, batch_size=batch, chunk=chunk)
                    for logits, want in zip(got, expected):
                        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)
        assert export_step_onnx(trained, tmp_path / "step.onnx", sequences)["parity"]["passed"]
        got, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences, batch_size=2)
        for logits, want in zip(got, expected):
            np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, n, 2\]"):
        TorchStream(TrainedModel(single, transform))(np.zeros((1, 3, 4), np.float32), None)
