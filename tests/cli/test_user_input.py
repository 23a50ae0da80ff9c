"""What a practitioner's own data meets: one line (exit 2, or 1 for the machine's limits) for what does not fit,
nothing left behind, and feedback while training."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.training.train import class_weights

FAST = ["--hidden-sizes", "4", "--dilations", "1,2", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
        "--log-every", "1", "--threads", "1"]


def _npz(path, n_train=12, n_test=6, T=10, F=2, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(n_train, T, F)).astype(np.float32), "y_train": np.arange(n_train) % 2,
              "x_test": rng.normal(size=(n_test, T, F)).astype(np.float32), "y_test": np.arange(n_test) % 2}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


def _fails(argv, capsys, code=2):
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_evaluate_refuses_data_of_other_channels_or_classes_and_writes_nothing(tmp_path, capsys):
    data = _npz(tmp_path / "two.npz")
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "run"), *FAST]) == 0
    for other, said in ((_npz(tmp_path / "c3.npz", F=3), "3 channel(s); the model takes 2"),
                        (_npz(tmp_path / "k3.npz", y_train=np.arange(12) % 3, y_test=np.arange(6) % 3),
                         "classes 0, 1, 2 (3); the model predicts 0, 1 (2)")):
        for command in ("evaluate", "export"):
            extra = ["-o", str(tmp_path / "m.onnx")] if command == "export" else []
            err = _fails([command, str(tmp_path / "run" / "best.pt"), "--data", other, *extra], capsys)
            assert said in err
    assert not (tmp_path / "run" / "eval-test.json").exists() and not (tmp_path / "m.onnx").exists()


def test_the_data_path_is_stored_resolved(tmp_path, capsys, monkeypatch):
    (tmp_path / "here").mkdir()
    _npz(tmp_path / "here" / "d.npz")
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", "--data", "d.npz", "--run-dir", str(tmp_path / "run"), *FAST]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["spec"] == str(tmp_path / "here" / "d.npz")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "run" / "best.pt")]) == 0


@pytest.mark.parametrize("arrays,said", [
    ({"x_train": np.zeros((0, 10, 2), np.float32), "y_train": np.zeros(0)}, "x_train holds no sequences"),
    ({"x_train": np.zeros((12, 0, 2), np.float32)}, "sequences of 0 steps"),
    ({"x_train": np.zeros(20, np.float32), "lengths_train": np.array([5, 0, 15] + [0] * 9), "y_train": np.arange(12) % 2},
     "lengths_train[1] is 0; every sequence needs at least 1 step"),
    ({"x_test": np.zeros((30, 2), np.float32), "x_train": np.zeros((120, 2), np.float32),
      "lengths_train": np.full(12, 10)}, "lengths_test is missing"),
    ({"y_train": np.arange(12) * 0.5, "y_test": np.arange(6) * 0.5}, "look like a regression target"),
    ({"x_train": np.zeros((12, 1, 64), np.float32), "x_test": np.zeros((6, 1, 64), np.float32)},
     "most likely [N, channels, steps]"),
])
def test_malformed_data_ends_in_one_line_naming_it(tmp_path, capsys, arrays, said):
    data = _npz(tmp_path / "d.npz", **arrays)
    assert said in _fails(["train", "--data", data, "--run-dir", str(tmp_path / "run"), *FAST], capsys)
    assert not (tmp_path / "run").exists()


def test_a_text_file_named_npz_and_an_nct_array_read_with_its_layout(tmp_path, capsys):
    (tmp_path / "t.npz").write_text("1,2,3\n")
    assert "not an .npz archive" in _fails(["train", "--data", str(tmp_path / "t.npz"), *FAST], capsys)
    rng = np.random.default_rng(0)
    nct = _npz(tmp_path / "nct.npz", x_train=rng.normal(size=(12, 3, 40)), x_test=rng.normal(size=(6, 3, 40)))
    assert main(["train", "--data", nct, "--layout", "nct", "--run-dir", str(tmp_path / "run"), *FAST]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["input_size"] == 6 and config["data"]["max_length"] == 40  # 3 channels, differences
    assert config["data"]["layout"] == "nct" and config["train"]["layout"] == "nct"
    assert main(["evaluate", str(tmp_path / "run" / "best.pt")]) == 0  # read again the same way


def test_resource_limits_and_failed_starts_leave_nothing(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    err = _fails(["train", "--data", data, "--run-dir", str(run), *FAST, "--hidden-sizes", "100000"], capsys, code=1)
    assert "needs at least" in err and "GiB" in err and not run.exists()
    err = _fails(["train", "--data", data, "--run-dir", str(run), *FAST, "--batch-size", "64"], capsys)
    assert "--batch-size is 64, more than the 12 training sequences" in err and not run.exists()


def test_the_python_module_names_the_expected_input():
    model = DilatedRNNClassifier(1, [4], [1], "gru", num_classes=2)
    with pytest.raises(ValueError, match=r"expected input \[batch, steps >= 1, 1 channel\(s\)\], got shape \[2, 5, 3\]"):
        model(torch.zeros(2, 5, 3))


def test_training_says_what_it_trains_and_logs_the_loss_without_a_bar(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    capsys.readouterr()
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "run"), *FAST]) == 0  # not a terminal: no bar
    out, err = capsys.readouterr()
    assert "data      " in out and "12 train, 0 validation (none drawn" in out
    assert "2 channel(s) and their first differences, 10 steps, 2 classes" in out
    assert "recipe    data: adam lr 0.001 (cosine)" in out and "step 1/4: train loss" in out and "step 2: train loss" in out
    assert "\r" not in err and "it/s" not in err and "step/s" not in err
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "quiet"), *FAST, "--no-progress"]) == 0
    assert "step 1/4: train loss" in capsys.readouterr().out


def test_no_validation_split_keeps_the_last_step_and_balanced_weights(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", y_train=np.array([0] * 10 + [1] * 2))
    assert main(["train", "--data", data, "--run-dir", str(tmp_path / "run"), *FAST, "--val-fraction", "0",
                 "--class-weight", "balanced"]) == 0
    summary = json.loads((tmp_path / "run" / "test.json").read_text())
    assert summary["best"] == {"step": 4, "val_accuracy": None} and "balanced_accuracy" in summary["test"]
    assert "no validation split: best.pt is this step" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run" / "best.pt")]) == 0  # the same split as trained: no validation
    assert "the val split is empty" in _fails(["evaluate", str(tmp_path / "run" / "best.pt"), "--split", "val"], capsys)
    weights = class_weights(torch.tensor([0] * 10 + [1] * 2), 3)
    torch.testing.assert_close(weights, torch.tensor([12 / 30, 12 / 6, 0.0]))


def test_make_bins_folders_are_readable_by_others(tmp_path, mnist_dir):
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "3", "--data-dir", str(mnist_dir)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "bins").stat().st_mode) == 0o777 & ~mask


def test_a_regression_set_is_named_as_one(tmp_path, capsys):
    err = _fails(["train", "--data", "ucr:Tecator", "--run-dir", str(tmp_path / "run"), *FAST], capsys)
    assert "labels are not class labels (e.g. 22.5)" in err and "regression target" in err


def test_messages_speak_of_sequences_not_images(capsys):
    for command in ("train", "evaluate", "infer", "make-bins", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "image" not in capsys.readouterr().out.replace("--check-images", ""), command
