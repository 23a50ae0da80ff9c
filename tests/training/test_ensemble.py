"""Ensembles: K members trained with their own seeds on one split, one checkpoint averaging their probabilities,
taken by evaluate, export (one graph), infer, predict and stream."""

import json

import numpy as np
import pytest
import torch

import dilated_rnn
from dilated_rnn.cli import main
from dilated_rnn.deploy.stream import Streamer
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.model.ensemble import EnsembleClassifier, mean_probabilities
from dilated_rnn.model.reference import reference_forward

TINY = ["--hidden-sizes", "6", "--dilations", "1,2", "--batch-size", "8", "--steps", "30", "--eval-every", "10",
        "--threads", "1", "--no-progress"]


def test_the_ensemble_averages_its_members_probabilities():
    members = [DilatedRNNClassifier(2, [4, 5], [1, 2], "gru", num_classes=3).double() for _ in range(3)]
    ensemble = EnsembleClassifier(members)
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    expected = torch.stack([torch.softmax(m.head(reference_forward(m.rnn, x)[:, -1]), 1) for m in members]).mean(0)
    torch.testing.assert_close(torch.softmax(ensemble(x), 1), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ensemble.forward_full(x), ensemble(x), rtol=0, atol=1e-12)
    z = torch.randn(2, 5)
    torch.testing.assert_close(mean_probabilities([z]), torch.log_softmax(z, 1))
    with pytest.raises(ValueError, match="one config"):
        EnsembleClassifier([members[0], DilatedRNNClassifier(2, [4], [1], "gru", num_classes=3)])


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    assert main(["train", "--data", "ucr:BasicMotions", "--run-dir", str(root / "run"), "--ensemble", "3",
                 *TINY]) == 0  # the data's recipe: every layer's readout, which streams (d0 = 1)
    return root


def test_a_trained_ensemble_is_one_model_to_every_command(ensemble_run, tmp_path, capsys):
    run = ensemble_run / "run"
    summary = json.loads((run / "test.json").read_text())
    assert summary["members"] == 3 and len(summary["member_tests"]) == 3
    trained = dilated_rnn.load(run)
    assert isinstance(trained.model, EnsembleClassifier) and len(trained.model.members) == 3
    assert main(["evaluate", str(run / "best.pt"), "-o", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == summary["test"]["accuracy"]
    assert main(["export", str(run / "best.pt"), "-o", str(tmp_path / "m.onnx"), "--check-images", "20"]) == 0
    data = dilated_rnn.data.datasets.load_dataset("ucr:BasicMotions")
    test = data["test"]
    np.savez(tmp_path / "new.npz", x=test.x.numpy())
    for model, out in ((str(run), "t.csv"), (str(tmp_path / "m.onnx"), "o.csv")):
        assert main(["predict", model, str(tmp_path / "new.npz"), "-o", str(tmp_path / out)]) == 0
    torch_rows = (tmp_path / "t.csv").read_text().splitlines()
    onnx_rows = (tmp_path / "o.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in torch_rows] == [r.split(",")[1] for r in onnx_rows]  # one graph, same classes
    proba = trained.predict_proba(test.x.numpy())
    streamed, _ = Streamer(trained)(test.x[:, :])  # every member streamed, probabilities averaged
    np.testing.assert_allclose(torch.softmax(streamed[:, -1].double(), 1).numpy(), proba, rtol=0, atol=1e-5)


def test_an_ensemble_streams_as_one_step_graph(ensemble_run, tmp_path):
    """drnn export --streaming: every member's step in one graph, its outputs the Streamer's at every step."""
    from dilated_rnn.deploy.stream import OnnxStream, TorchStream, stream_sequences

    run = ensemble_run / "run"
    assert main(["export", str(run / "best.pt"), "--streaming", "--check-images", "4", "-o",
                 str(tmp_path / "step.onnx")]) == 0
    trained = dilated_rnn.load(run)
    sequences = dilated_rnn.data.datasets.load_dataset("ucr:BasicMotions")["test"].subset(3).sequences()
    graph, _ = stream_sequences(OnnxStream(tmp_path / "step.onnx"), sequences, batch_size=3)
    torch_stream, _ = stream_sequences(TorchStream(trained), sequences, batch_size=3, chunk=17)
    for got, expected in zip(graph, torch_stream):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    members = [TorchStream(dilated_rnn.TrainedModel(m, trained.transform, trained.data)) for m in trained.model.members]
    single, _ = stream_sequences(members[0], sequences[:1])
    assert not np.allclose(graph[0], single[0], atol=1e-3)  # the average, not one member
