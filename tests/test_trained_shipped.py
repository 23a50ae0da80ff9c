import json

import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.errors import UserError
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.trained import (
    TrainedModel,
    available,
    load_model,
    load_pretrained,
    save_pretrained,
)
from dilated_rnn.training.evaluate import evaluate

NAMES = ["gru-mnist", "gru-pmnist", "lstm-mnist", "lstm-pmnist", "rnn-mnist", "rnn-pmnist"]


def test_six_models_are_shipped():
    cards = available()
    assert [c["name"] for c in cards] == NAMES
    for card in cards:
        assert (card["permutation"] is not None) == card["name"].endswith("pmnist")
        assert card["model_config"]["cell"] == card["name"].split("-")[0]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_accuracy_is_reproduced_on_the_test_set(name, mnist):
    trained = load_pretrained(name)
    model, perm, card = trained.model, trained.transform, trained.card
    report = evaluate(model, mnist["test"], perm)
    assert report["accuracy"] == pytest.approx(card["test_accuracy"], abs=5e-4)  # GPU vs CPU rounding: <= 5 images


def test_save_and_load_round_trip(tmp_path):
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="gru"))
    perm = torch.randperm(784)
    save_pretrained(TrainedModel(model, InputTransform(perm)), {"test_accuracy": 0.5}, tmp_path, "tiny")
    trained = load_pretrained("tiny", tmp_path)
    loaded, transform, card = trained.model, trained.transform, trained.card
    loaded_perm = transform.permutation
    x = torch.rand(2, 30, 1)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert torch.equal(loaded_perm, perm) and card["test_accuracy"] == 0.5
    with pytest.raises(UserError, match="no pretrained model 'nope'; available: tiny"):
        load_pretrained("nope", tmp_path)


def test_commands_take_pretrained_models(tmp_path, mnist_dir, capsys):
    d = ["--data-dir", str(mnist_dir)]
    assert main(["pretrained"]) == 0 and "pretrained:lstm-pmnist" in capsys.readouterr().out
    assert main(["evaluate", "--pretrained", "rnn-pmnist", "--limit", "200", "-o", str(tmp_path / "e.json"), *d]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["permuted"] and report["num_examples"] == 200 and report["accuracy"] > 0.85
    assert main(["export", "--pretrained", "gru-mnist", "-o", str(tmp_path / "g.onnx"), "--check-images", "32", *d]) == 0
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "8", *d]) == 0
    assert main(["infer", "pretrained:gru-mnist", str(tmp_path / "bins"), "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "out" / "infer.json").read_text())["backend"] == "pytorch"
    capsys.readouterr()
    assert main(["evaluate", *d]) == 2
    assert "give a checkpoint path or --pretrained NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lstm-mnist", "gru-pmnist"])
def test_load_model_accepts_both_sources(name, shipped_checkpoint):
    trained = load_model(f"pretrained:{name}")
    shipped, transform, data = trained.model, trained.transform, trained.data
    trained = load_model(shipped_checkpoint(name))
    from_checkpoint, transform2, data2 = trained.model, trained.transform, trained.data
    perm, perm2 = transform.permutation, transform2.permutation
    assert data["spec"] == data2["spec"] == "mnist" and transform.mean is None is transform2.mean
    assert (perm is None) == (perm2 is None) == (name == "lstm-mnist")
    if perm is not None:
        assert torch.equal(perm, perm2) and sorted(perm.tolist()) == list(range(784))
    assert from_checkpoint.config == shipped.config
    for key, value in from_checkpoint.state_dict().items():
        assert torch.equal(shipped.state_dict()[key], value)
