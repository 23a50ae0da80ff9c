"""The configs: validation that names the parameter, migration of old layouts, and a CLI that starts without torch."""

import subprocess
import sys

import pytest

from dilated_rnn.config import MOVED_TO_MODEL, ModelConfig, TrainConfig, migrate_configs
from dilated_rnn.errors import ParameterError


@pytest.mark.parametrize("kwargs,parameter,problem", [
    ({"steps": 0}, "steps", "must be positive, got 0"),
    ({"lr": -1.0}, "lr", "must be positive, got -1.0"),
    ({"optimizer": "sgd"}, "optimizer", "must be one of rmsprop, adam, got 'sgd'"),
    ({"schedule": "step"}, "schedule", "must be one of constant, cosine, got 'step'"),
    ({"clip": -1.0}, "clip", "must be non-negative, got -1.0"),
    ({"ema": 1.0}, "ema", "must be in [0, 1), got 1.0"),
    ({"sam": float("nan")}, "sam", "must be a non-negative radius, got nan"),
    ({"val_limit": 0}, "val_limit", "must be positive, got 0"),
])
def test_train_config_names_the_bad_parameter(kwargs, parameter, problem):
    with pytest.raises(ParameterError) as e:
        TrainConfig(**kwargs)
    assert (e.value.parameter, e.value.problem) == (parameter, problem)
    assert str(e.value) == f"{parameter} {problem}"


@pytest.mark.parametrize("kwargs,parameter", [
    ({"dropout": 1.0}, "dropout"), ({"init": "he"}, "init"), ({"forget_bias": float("inf")}, "forget_bias"),
    ({"cell": "gru", "forget_bias": 2.0}, "forget_bias"), ({"num_classes": 0}, "num_classes"),
    ({"hidden_sizes": (4, 4), "dilations": (1,)}, "dilations"),
])
def test_model_config_names_the_bad_parameter(kwargs, parameter):
    with pytest.raises(ParameterError) as e:
        ModelConfig(**kwargs)
    assert e.value.parameter == parameter


def test_model_config_round_trips_through_its_dict():
    config = ModelConfig(hidden_sizes=[8, 8], dilations=[1, 4], cell="LSTM", dropout=0.2, init="orthogonal",
                         forget_bias=2.0)
    assert config.cell == "lstm" and config.hidden_sizes == (8, 8)
    assert ModelConfig(**config.to_dict()) == config


def test_old_layout_moves_the_architecture_settings_to_the_model():
    old_model = {"input_size": 1, "hidden_sizes": [4], "dilations": [1], "cell": "lstm", "num_classes": 10}
    old_train = {"steps": 5, "dropout": 0.1, "init": "orthogonal", "forget_bias": 2.0, "ema": 0.9}
    model, train = migrate_configs(old_model, old_train)
    assert {k: model[k] for k in MOVED_TO_MODEL} == {"dropout": 0.1, "init": "orthogonal", "forget_bias": 2.0}
    assert train == {"steps": 5, "ema": 0.9}
    assert ModelConfig(**model).init == "orthogonal" and TrainConfig.from_dict(train).ema == 0.9
    assert migrate_configs(model, train) == (model, train)  # today's layout is left as it is
    assert migrate_configs(old_model, None) == (old_model, None)
    # stored before the differences existed: the model read values alone, whatever "auto" means today
    assert TrainConfig.from_dict(train).differences == "off"
    assert TrainConfig.from_dict({**train, "differences": "auto"}).differences == "auto"


def test_the_cli_parses_without_importing_torch():
    code = ("import sys; from dilated_rnn.cli.parser import build_parser; build_parser().parse_args(['train', '--steps', '3']);"
            "print(sorted(m for m in ('torch', 'numpy', 'numba', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
