"""Named recipes: what a preset sets, that explicit flags win, and the CLI wiring on real data."""

import json

import pytest

from dilated_rnn.cli import main
from dilated_rnn.presets import DEFAULTS, PRESETS, RECIPE, resolve
from dilated_rnn.pretrained import available

SMALL = ["--hidden-sizes", "8", "--dilations", "1,4,16", "--train-limit", "256", "--val-limit", "100",
         "--test-limit", "100", "--eval-every", "3", "--no-progress", "--threads", "1"]


def test_every_shipped_model_has_a_preset_of_its_name():
    assert {card["name"] for card in available()} <= set(PRESETS)


def test_preset_fills_unset_flags_and_explicit_flags_win():
    assert resolve("gru-pmnist", {}) == {**DEFAULTS, "cell": "gru", "permute": True, **RECIPE}
    assert resolve("gru-pmnist", {"lr": 5e-4, "cell": None})["lr"] == 5e-4
    assert resolve(None, {}) == DEFAULTS  # no preset: the reference's recipe
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("lstm-cifar", {})


def test_train_with_a_preset_stores_the_resolved_recipe(tmp_path, mnist_dir):
    run = tmp_path / "run"
    assert main(["train", "--preset", "rnn-pmnist", "--clip", "0.5", "--steps", "3", "--batch-size", "16",
                 "--run-dir", str(run), "--data-dir", str(mnist_dir), *SMALL]) == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["model"]["cell"] == "rnn"
    t = stored["train"]
    assert (t["permute"], t["optimizer"], t["lr"], t["schedule"], t["clip"]) == (True, "adam", 2e-3, "cosine", 0.5)


def test_unknown_preset_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "paper-tcn"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and len(err.strip().splitlines()) == 1
