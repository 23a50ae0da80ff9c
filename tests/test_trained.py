"""Model arguments: one parser for checkpoint paths, pretrained:NAME and .onnx files."""

import pytest
import torch

from dilated_rnn.errors import UserError
from dilated_rnn.trained import ModelSource, load_model, parse_source, pretrained_source


@pytest.mark.parametrize("text,kind,location", [
    ("pretrained:gru-mnist", "pretrained", "gru-mnist"),
    ("runs/x/best.pt", "checkpoint", "runs/x/best.pt"),
    ("deploy/model-fp16.onnx", "onnx", "deploy/model-fp16.onnx"),
    ("weights", "checkpoint", "weights"),
])
def test_parse_source(text, kind, location):
    src = parse_source(text)
    assert (src.kind, src.location) == (kind, location) and str(src) == text
    assert parse_source(src) is src


def test_pretrained_source_loads_the_shipped_model():
    assert pretrained_source("rnn-pmnist") == ModelSource("pretrained", "rnn-pmnist")
    trained = load_model(pretrained_source("rnn-pmnist"))
    model, transform, data = trained.model, trained.transform, trained.data
    perm = transform.permutation
    assert data["spec"] == "mnist" and data["classes"] == [str(k) for k in range(10)]
    assert not model.training and model.config.cell == "rnn"
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))


def test_an_onnx_file_is_not_a_model_to_load(tmp_path):
    with pytest.raises(UserError, match="m.onnx: an exported graph, not a checkpoint"):
        load_model(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="nope.pt: no such checkpoint file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="no pretrained model 'nope'; available: gru-mnist"):
        load_model("pretrained:nope")
