"""The recipe derived from a user's data: sizes of 16 to 500 sequences, a run with no flag on a 16-sequence set,
explicit flags and presets over it, MNIST untouched."""

import json

import numpy as np
import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.data.datasets import default_dilations, load_dataset
from dilated_rnn.errors import ParameterError
from dilated_rnn.trained import load_model
from dilated_rnn.training.recipe import (
    AUGMENT,
    CELL_STEP_BUDGET,
    EPOCHS,
    MAX_BATCH,
    MIN_EPOCHS,
    derive,
)


def _npz(path, n, T=8, F=1, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, T, F)) + y[:, None, None]  # separable: the class shifts the level
    np.savez(path, x_train=x, y_train=y, x_test=x[: max(classes, n // 2)], y_test=y[: max(classes, n // 2)])
    return str(path)


@pytest.mark.parametrize("n,T", [(16, 8), (30, 251), (53, 24), (200, 500), (500, 500), (428, 1344)])
def test_the_batch_fits_the_split_and_runs_are_counted_in_epochs(tmp_path, n, T):
    data = load_dataset(_npz(tmp_path / "d.npz", n, T))
    train = len(data["train"])
    r = derive(data, default_dilations(data.train_max_length))
    assert 1 <= r["batch_size"] <= min(train, MAX_BATCH) and train // r["batch_size"] >= min(8, train)
    assert MIN_EPOCHS <= r["epochs"] <= EPOCHS
    assert r["steps"] * r["batch_size"] >= r["epochs"] * train - r["batch_size"]  # the epochs asked, whole steps
    assert r["eval_every"] >= 1 and r["steps"] // r["eval_every"] >= 20
    if r["epochs"] < EPOCHS:  # cut short by the budget of cell steps, only for long sequences
        assert T >= 1000


def test_no_flag_on_sixteen_sequences_trains_a_model(tmp_path, capsys):
    data = _npz(tmp_path / "tiny.npz", 16)
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "recipe    data: adam lr 0.001 (cosine), batch 2," in out and "readout layers" in out
    assert "16 train, 0 validation (none drawn: best.pt is the last step)" in out  # every sequence trains
    assert f"augment {AUGMENT}," in out and "1 channel(s) and their first differences" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["recipe"] == "data" and config["train"]["batch_size"] == 2
    assert config["train"]["augment"] == AUGMENT
    assert config["differences"] and config["model"]["input_size"] == 2  # the values and their differences
    assert config["train"]["steps"] == EPOCHS * 16 // 2 and config["model"]["hidden_sizes"] == [64, 64, 64]
    assert json.loads((tmp_path / "run" / "test.json").read_text())["test"]["accuracy"] >= 0.75  # separable
    # the checkpoint's model takes raw sequences: what it predicts is its classifier on [x, x[t] - x[t-1]],
    # normalized by the stored statistics of those two channels
    trained = load_model(str(tmp_path / "run" / "best.pt"))
    x = np.load(data)["x_test"].astype(np.float32)
    built = np.concatenate([x, np.diff(x, axis=1, prepend=x[:, :1])], axis=2)
    norm = config["normalization"]
    built = (built - np.array(norm["mean"], np.float32)) / np.array(norm["std"], np.float32)
    with torch.no_grad():
        want = torch.softmax(trained.model(torch.from_numpy(built)), 1).numpy()
    np.testing.assert_allclose(trained.predict_proba(x), want, rtol=0, atol=1e-5)


def test_explicit_flags_and_presets_win_and_mnist_keeps_the_reference(tmp_path, capsys, mnist_dir):
    data = _npz(tmp_path / "d.npz", 40)
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "run"), "--steps", "3", "--batch-size", "4",
                 "--cell", "lstm", "--hidden-sizes", "5", "--readout", "last", "--lr", "0.01",
                 "--augment", "none", "--differences", "off"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert not config["differences"] and config["model"]["input_size"] == 1
    assert (config["train"]["steps"], config["train"]["batch_size"], config["train"]["lr"]) == (3, 4, 0.01)
    assert config["train"]["eval_every"] == 1  # validated over the steps asked for, not the recipe's
    assert config["train"]["augment"] == ""  # --augment none
    assert config["model"]["cell"] == "lstm" and config["model"]["readout"] == "last"
    assert config["train"]["optimizer"] == "adam" and config["train"]["recipe"] == "data"  # the rest: the data's
    assert main(["train", "--data", data, "--preset", "gru-mnist", "--run-dir", str(tmp_path / "p"), "--steps", "2",
                 "--batch-size", "4"]) == 0
    assert json.loads((tmp_path / "p" / "config.json").read_text())["train"]["recipe"] == "gru-mnist"
    from dilated_rnn.cli.commands import _configs
    from dilated_rnn.cli.parser import build_parser

    _, model, cfg = _configs(build_parser().parse_args(["train", "--data-dir", str(mnist_dir)]))
    assert (cfg.recipe, cfg.optimizer, cfg.batch_size, cfg.augment, model.cell, model.readout) == (
        "reference", "rmsprop", 128, "", "lstm", "last")
    assert model.input_size == 1  # MNIST reads the pixels alone
    with pytest.raises(ParameterError, match="differences"):
        load_dataset("mnist", str(mnist_dir), differences="on")


def test_the_budget_bounds_a_long_set_and_normalization_follows_the_scales(tmp_path):
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(-3, 3, 60))[:, None, None]  # each sequence its own scale: ~400-fold
    x = rng.normal(size=(60, 2000, 1)) * scales
    np.savez(tmp_path / "long.npz", x_train=x, y_train=np.arange(60) % 2, x_test=x[:4], y_test=np.arange(4) % 2)
    data = load_dataset(str(tmp_path / "long.npz"))
    r = derive(data, default_dilations(data.train_max_length))
    assert r["epochs"] * len(data["train"]) * 2000 <= 2 * CELL_STEP_BUDGET and data.transform.per_sequence
    flat = load_dataset(_npz(tmp_path / "flat.npz", 60, T=50))
    assert not flat.transform.per_sequence and flat.transform.mean is not None  # one scale: per channel
