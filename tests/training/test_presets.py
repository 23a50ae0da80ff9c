"""Named recipes: what a preset sets, that explicit flags win, and the CLI wiring on real data."""

import json

import pytest

from dilated_rnn.cli import main
from dilated_rnn.trained import available
from dilated_rnn.training.presets import ADAM_LATE_WD, DEFAULTS, PRESETS, resolve

SMALL = ["--hidden-sizes", "8", "--dilations", "1,4,16", "--train-limit", "256", "--val-limit", "100",
         "--test-limit", "100", "--eval-every", "3", "--no-progress", "--threads", "1"]


def test_every_shipped_model_has_a_preset_of_its_name_that_reproduces_it():
    cards = available()
    assert len(cards) == 6
    for card in cards:
        preset = PRESETS[card["name"]]
        trained = {**DEFAULTS, **card["train_config"], **card["model_config"]}
        assert {k: trained[k] for k in preset} == preset, card["name"]
        assert card["train_config"]["steps"] == 30000 and card["train_config"]["seed"] == 92916


def test_preset_fills_unset_flags_and_explicit_flags_win():
    assert resolve("lstm-pmnist", {}) == {**DEFAULTS, "cell": "lstm", "permute": True, **ADAM_LATE_WD,
                                          "ema": 0.9995, "init": "orthogonal"}
    assert resolve("lstm-pmnist", {"init": "tf", "ema": None})["init"] == "tf"
    assert resolve("gru-pmnist", {"lr": 5e-4, "cell": None})["lr"] == 5e-4
    assert resolve(None, {}) == DEFAULTS  # no preset: the reference's recipe
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("lstm-cifar", {})


def test_train_with_a_preset_stores_the_resolved_recipe(tmp_path, mnist_dir):
    run = tmp_path / "run"
    assert main(["train", "--preset", "lstm-pmnist", "--clip", "0.5", "--steps", "3", "--batch-size", "16",
                 "--run-dir", str(run), "--data-dir", str(mnist_dir), *SMALL]) == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["model"]["cell"] == "lstm"
    t, m = stored["train"], stored["model"]
    assert (t["permute"], t["optimizer"], t["lr"], t["schedule"], t["clip"]) == (True, "adam", 2e-3, "cosine", 0.5)
    assert (t["weight_decay"], t["weight_decay_start"], t["ema"], m["init"]) == (0.1, 15000, 0.9995, "orthogonal")


def test_regulariser_flags_reach_the_run_config(tmp_path, mnist_dir):
    run = tmp_path / "run"
    assert main(["train", "--preset", "lstm-mnist", "--weight-decay", "0.05", "--weight-decay-start", "1",
                 "--dropout", "0.2", "--ema", "0.999", "--label-smoothing", "0.1", "--init", "orthogonal",
                 "--forget-bias", "2", "--sam", "0.05", "--sam-start", "1", "--steps", "2", "--batch-size", "16",
                 "--run-dir", str(run), "--data-dir", str(mnist_dir), *SMALL]) == 0
    stored = json.loads((run / "config.json").read_text())
    t, m = stored["train"], stored["model"]
    assert (t["weight_decay"], t["weight_decay_start"], m["dropout"], t["ema"]) == (0.05, 1, 0.2, 0.999)
    assert (t["label_smoothing"], m["init"], m["forget_bias"]) == (0.1, "orthogonal", 2.0)
    assert (t["sam"], t["sam_start"]) == (0.05, 1)


def test_unknown_preset_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "paper-tcn"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and len(err.strip().splitlines()) == 1
