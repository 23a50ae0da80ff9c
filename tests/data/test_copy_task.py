"""The copy-memory task: its sequences, its memoryless baseline, and sequence labelling end to end."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.config import ModelConfig
from dilated_rnn.data.copy_task import (
    CLASSES,
    generate,
    memoryless_loss,
    recalled,
    recalled_at_least,
)
from dilated_rnn.data.datasets import load_dataset
from dilated_rnn.errors import ParameterError, UserError
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.tools.analysis import recall_gradients
from dilated_rnn.training.evaluate import classification_report, per_example


def test_sequences_hold_ten_symbols_a_delimiter_and_the_symbols_as_the_last_targets():
    x, y = generate(30, 64, seed=5, stream=0)
    assert x.shape == (64, 50, 10) and y.shape == (64, 50)
    tokens = x.argmax(2)
    assert torch.equal(x.sum(2), torch.ones(64, 50))  # one-hot
    symbols = tokens[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (tokens[:, 10:39] == 0).all() and (tokens[:, 39] == 9).all() and (tokens[:, 40:] == 0).all()
    assert torch.equal(y[:, -10:], symbols) and (y[:, :-10] == 0).all()
    again, _ = generate(30, 64, seed=5, stream=0)
    other, _ = generate(30, 64, seed=5, stream=1)
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_the_memoryless_baseline_is_what_a_model_without_memory_scores():
    """Certain blanks where the target must be blank, a uniform guess over the 8 symbols at the end."""
    delay = 40
    _, y = generate(delay, 32, seed=0, stream=2)
    logits = torch.full((32, delay + 20, 9), -1e9)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    loss = torch.nn.functional.cross_entropy(*per_example(logits, y))
    assert loss.item() == pytest.approx(memoryless_loss(delay)) == pytest.approx(10 * math.log(8) / 60)


def test_recalled_symbols_from_the_confusion_matrix_and_a_bound_from_the_accuracy_alone():
    """Every blank right and the first k of each sequence's ten symbols: exactly k/10 recalled, and the
    bound from the all-step accuracy is exact; a wrong blank lowers the bound, not the count."""
    delay, k = 25, 7
    _, y = generate(delay, 16, seed=1, stream=0)
    guess = y.clone()
    guess[:, -10 + k:] = guess[:, -10 + k:] % 8 + 1  # another symbol
    logits = torch.nn.functional.one_hot(guess, 9).float()
    report = classification_report(logits, y, 9)
    assert recalled(report["confusion_matrix"]) == pytest.approx(k / 10)
    assert recalled_at_least(report["accuracy"], delay) == pytest.approx(k / 10, abs=1e-6)
    guess[:, 3] = 5  # a blank taken for a symbol in every sequence
    report = classification_report(torch.nn.functional.one_hot(guess, 9).float(), y, 9)
    assert recalled(report["confusion_matrix"]) == pytest.approx(k / 10)
    assert recalled_at_least(report["accuracy"], delay) == pytest.approx(k / 10 - 0.1, abs=1e-6)
    assert recalled_at_least(0.5, delay) == 0.0


def test_dataset_and_bad_specs():
    data = load_dataset("copy:12", seed=3)
    assert data.per_step and data.classes == CLASSES and data.num_features == 10
    assert data.splits["train"].labels.shape == (10000, 32) and data.fixed_length == 32
    assert not torch.equal(data.splits["train"].x[:5], data.splits["val"].x[:5])
    for bad in ("copy:", "copy:-3", "copy:ten"):
        with pytest.raises(UserError, match="expected copy:T"):
            load_dataset(bad)
    with pytest.raises(ParameterError, match="must start at 1"):
        ModelConfig(input_size=10, hidden_sizes=(4, 4), dilations=(2, 4), num_classes=9, readout="every")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_step_logits_are_the_streams_and_the_full_computations(cell):
    model = DilatedRNNClassifier(10, [6, 5, 4], [1, 2, 4], cell, num_classes=9, readout="every")
    x, _ = generate(13, 3, seed=0, stream=0)
    logits = model(x)
    assert logits.shape == (3, 33, 9)
    torch.testing.assert_close(model.forward_full(x), logits)
    with torch.no_grad():
        streamed, _ = model.stream(x)
    torch.testing.assert_close(streamed, logits.detach(), rtol=1e-5, atol=1e-5)


def test_recall_gradients_reach_the_symbols_through_dilations_not_through_a_plain_stack():
    """T = 100, six vanilla layers of 8 units as TensorFlow draws them: the plain stack's gradient fades
    over the 110 steps between symbols and recall; the dilated one (1..32) keeps it."""
    reach = {}
    for dilations in ((1,) * 6, (1, 2, 4, 8, 16, 32)):
        torch.manual_seed(0)
        model = DilatedRNNClassifier(10, [8] * 6, dilations, "rnn", num_classes=9, readout="every").double()
        reach[dilations[-1]] = recall_gradients(model, delay=100, count=16)
    plain, dilated = reach[1], reach[32]
    assert 0 < plain["symbols"] < 1e-3 * plain["recent"]
    assert dilated["symbols"] > 100 * plain["symbols"] and dilated["symbols"] > 0.1 * dilated["recent"]
    again = recall_gradients(model, delay=100, count=16)
    assert again == dilated  # the sequences come from the seed


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[2] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_on_the_copy_task_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "copy:6", "--cell", "gru", "--hidden-sizes", "8", "--dilations", "1,2,4",
                 "--steps", "30", "--batch-size", "32", "--eval-every", "15", "--log-every", "5", "--val-limit", "64",
                 "--test-limit", "64", "--optimizer", "adam", "--lr", "0.01", "--no-progress", "--run-dir",
                 str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["readout"] == "every" and config["data"]["per_step"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    test = json.loads((run / "test.json").read_text())["test"]
    assert test["num_examples"] == 64 * 26  # every step of every test sequence
    capsys.readouterr()
    plot_copy = _script("plot_copy")
    assert plot_copy.main([str(run), "-o", str(tmp_path / "copy.png")]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith("| GRU, dilated (3 x 8) | 30 |")
    assert f"{100 * recalled(test['confusion_matrix']):5.1f} %" in row and (tmp_path / "copy.png").stat().st_size > 0
    assert main(["export", str(run / "best.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "--streaming is needed" in capsys.readouterr().err
    assert main(["export", str(run / "best.pt"), "--streaming", "--check-images", "4", "-o",
                 str(tmp_path / "step.onnx")]) == 0
    capsys.readouterr()
    assert main(["make-bins", "--data", "copy:6", "-o", str(tmp_path / "bins")]) == 2
    assert "a label at every step" in capsys.readouterr().err and not (tmp_path / "bins").exists()


def test_a_readout_of_one_step_on_the_copy_task_is_refused_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", "copy:6", "--readout", "layers", "--steps", "1", "--run-dir",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--readout cannot be layers: copy:6 has a label at every step" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
