"""Your own sequences through every command: train, evaluate, export, make-bins, infer, accuracy, report, pipeline."""

import json

import numpy as np
import onnx
import pytest

from dilated_rnn.cli import main

SMALL = ["--hidden-sizes", "8", "--dilations", "1,2,4", "--batch-size", "16", "--eval-every", "20",
         "--log-every", "20", "--no-progress", "--threads", "1", "--optimizer", "adam", "--lr", "3e-3"]


def _run(args, capsys):
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


@pytest.fixture(scope="module")
def vowels_run(tmp_path_factory):
    """A small LSTM on JapaneseVowels: 12 channels, lengths 7-29."""
    run = tmp_path_factory.mktemp("vowels") / "run"
    assert main(["train", "--data", "ucr:JapaneseVowels", "--cell", "lstm", "--steps", "120", "--run-dir", str(run),
                 *SMALL]) == 0
    return run


def test_variable_length_multivariate_end_to_end(vowels_run, tmp_path, capsys):
    run = vowels_run
    summary = json.loads((run / "test.json").read_text())
    assert summary["test"]["num_examples"] == 370 and summary["test"]["accuracy"] > 0.3  # 9 classes: chance 0.11
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["input_size"] == 24 and config["model"]["num_classes"] == 9  # 12 channels, differences
    assert config["data"]["classes"] == [str(k) for k in range(1, 10)] and config["data"]["fixed_length"] is None
    assert len(config["normalization"]["mean"]) == 24 and config["data"]["num_features"] == 12

    out = _run(["evaluate", str(run / "best.pt")], capsys)  # the data comes from the checkpoint
    report = json.loads((run / "eval-test.json").read_text())
    assert report["accuracy"] == summary["test"]["accuracy"] and "per class 1:" in out

    onnx_path = tmp_path / "m.onnx"
    out = _run(["export", str(run / "best.pt"), "-o", str(onnx_path), "--check-images", "120"], capsys)
    assert "argmax agreement 100.00%" in out
    graph = onnx.load(str(onnx_path))
    assert [i.name for i in graph.graph.input] == ["Placeholder", "lengths"]  # one graph for every length

    _run(["make-bins", "--data", "ucr:JapaneseVowels", "-o", str(tmp_path / "bins")], capsys)
    sizes = {p.stat().st_size for p in (tmp_path / "bins").glob("*.bin")}
    assert min(sizes) == 7 * 12 * 4 and max(sizes) == 29 * 12 * 4  # T x F raw float32 per file
    accuracies = []
    for model, out_dir in ((str(onnx_path), "out-onnx"), (str(run / "best.pt"), "out-torch")):
        _run(["infer", model, str(tmp_path / "bins"), "-o", str(tmp_path / out_dir), "--batch-size", "32",
              "--no-progress"], capsys)
        _run(["accuracy", str(tmp_path / out_dir), str(tmp_path / "bins" / "labels.npy")], capsys)
        accuracies.append(json.loads((tmp_path / out_dir / "accuracy.json").read_text())["accuracy"])
    assert accuracies[0] == accuracies[1] == pytest.approx(summary["test"]["accuracy"])
    onnx_logits = np.fromfile(tmp_path / "out-onnx" / "00005_output_0.bin", np.float32)
    torch_logits = np.fromfile(tmp_path / "out-torch" / "00005_output_0.bin", np.float32)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    assert onnx_logits.shape == (9,)

    _run(["report", str(run)], capsys)
    assert "ucr:JapaneseVowels" in (run / "report.md").read_text()


def test_pipeline_on_a_variable_length_model(vowels_run, tmp_path, capsys):
    out = _run(["pipeline", str(vowels_run / "best.pt"), "-o", str(tmp_path / "deploy"), "--limit", "50",
                "--precisions", "fp32,fp16", "--batch-size", "16", "--no-progress"], capsys)
    result = json.loads((tmp_path / "deploy" / "pipeline.json").read_text())
    assert result["data"] == "ucr:JapaneseVowels" and "(lstm, ucr:JapaneseVowels)" in out
    assert [(r["format"], r["precision"]) for r in result["rows"]] == [
        ("onnx", "fp32"), ("onnx", "fp16"), ("openvino", "fp32"), ("openvino", "fp16")]
    for row in result["rows"]:  # the IR keeps the lengths input: one graph for every length
        assert row["images"] == 50 and row["accuracy"] == row["batch1_accuracy"] == result["rows"][0]["accuracy"]


def test_fixed_length_univariate_set(tmp_path, capsys):
    run = tmp_path / "gun"
    base = ["--data", "ucr:GunPoint", "--cell", "gru", "--run-dir", str(run), *SMALL]
    assert main(["train", "--steps", "20", "--val-fraction", "0.2", *base]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["fixed_length"] == 150 and config["data"]["classes"] == ["1", "2"]
    assert config["data"]["validation"] == "stratified 0.2 of each class's training sequences, seed 92916"
    _run(["export", str(run / "best.pt"), "-o", str(tmp_path / "g.onnx")], capsys)
    graph = onnx.load(str(tmp_path / "g.onnx"))
    assert [i.name for i in graph.graph.input] == ["Placeholder"]  # one length: the pruned graph
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [150, 1]
    out = _run(["evaluate", str(run / "best.pt"), "--split", "val"], capsys)
    assert "examples  10" in out  # the run's own validation split: 20 % of the 50


def test_npz_with_string_labels_trains_and_names_its_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6, 40)
    def make(n):
        y = np.array(["sine", "square"] * (n // 2))
        x = np.stack([np.sin(t * (1 + rng.random())) if c == "sine" else np.sign(np.sin(t)) for c in y])
        return (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32)[..., None], y
    x_train, y_train = make(60)
    x_test, y_test = make(20)
    np.savez(tmp_path / "waves.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    out = _run(["train", "--data", str(tmp_path / "waves.npz"), "--steps", "40", "--run-dir", str(tmp_path / "run"),
                *SMALL], capsys)
    assert "per class sine:" in out and "square:" in out
    assert json.loads((tmp_path / "run" / "test.json").read_text())["test"]["accuracy"] > 0.9


def test_resume_reloads_the_runs_data_and_continues_exactly(tmp_path, capsys):
    import torch

    from dilated_rnn.config import ModelConfig, TrainConfig
    from dilated_rnn.data.datasets import load_dataset
    from dilated_rnn.training.checkpoint import load_checkpoint
    from dilated_rnn.training.train import train

    cfg = TrainConfig(data="ucr:GunPoint", steps=12, batch_size=8, eval_every=6, log_every=6, optimizer="adam",
                      val_fraction=0.3, seed=5)
    data = load_dataset(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    model = ModelConfig(input_size=2, hidden_sizes=(6, 6), dilations=(1, 4), cell="rnn", num_classes=2)  # differences
    train(tmp_path / "whole", data, model, cfg, device="cpu", progress=False)
    train(tmp_path / "split", data, model, cfg, device="cpu", progress=False, stop_after=5)
    assert main(["train", "--resume", str(tmp_path / "split"), "--no-progress"]) == 0  # loads ucr:GunPoint itself
    whole, split = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "split"))
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key
    assert whole["data"]["val_fraction"] == 0.3 and whole["data"]["val_seed"] == 5


def test_a_user_model_ships_as_a_pretrained_model(vowels_run, tmp_path):
    from dilated_rnn.data.datasets import load_dataset
    from dilated_rnn.trained import TrainedModel, load_pretrained, save_pretrained
    from dilated_rnn.training.checkpoint import (
        load_checkpoint,
        model_from_checkpoint,
        transform_from_checkpoint,
    )
    from dilated_rnn.training.evaluate import evaluate

    ckpt = load_checkpoint(vowels_run / "best.pt")
    save_pretrained(TrainedModel(model_from_checkpoint(ckpt), transform_from_checkpoint(ckpt)), {"data": ckpt["data"]},
                    tmp_path, "vowels")
    trained = load_pretrained("vowels", tmp_path)
    model, transform, card = trained.model, trained.transform, trained.card
    assert card["data"]["classes"] == [str(k) for k in range(1, 10)] and transform.mean.shape == (24,)
    test = load_dataset("ucr:JapaneseVowels").splits["test"]
    summary = json.loads((vowels_run / "test.json").read_text())
    assert evaluate(model, test, transform)["accuracy"] == summary["test"]["accuracy"]
