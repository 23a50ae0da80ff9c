"""New data, predicted: ``drnn predict`` (checkpoint, run directory, ONNX) and ``dilated_rnn.load`` in Python, on a
real variable-length multivariate set (JapaneseVowels: 12 channels, 7-29 steps, 9 classes)."""

import csv
import json

import numpy as np
import pytest
import torch

import dilated_rnn
from dilated_rnn.cli import main
from dilated_rnn.data.datasets import load_dataset
from dilated_rnn.data.transform import with_differences
from dilated_rnn.deploy.predict import softmax
from dilated_rnn.training.evaluate import predict_logits

TINY = ["--cell", "gru", "--hidden-sizes", "8", "--dilations", "1,2,4", "--batch-size", "16", "--steps", "60",
        "--eval-every", "30", "--log-every", "30", "--no-progress", "--threads", "1", "--optimizer", "adam",
        "--lr", "3e-3"]


def _concatenated(split):
    seqs = split.sequences()
    return np.concatenate(seqs), np.array([len(s) for s in seqs])


@pytest.fixture(scope="module")
def vowels(tmp_path_factory):
    """A tiny GRU trained on the training half of JapaneseVowels through an .npz of the user's kind; the held-out
    half as an .npz with labels (for evaluate) and as one without (for predict)."""
    root = tmp_path_factory.mktemp("predict")
    data = load_dataset("ucr:JapaneseVowels", val_fraction=0.2, seed=1)
    train = data.splits["train"]
    test = data.splits["test"]
    classes = np.array(data.classes)
    x_train, l_train = _concatenated(train)
    x_test, l_test = _concatenated(test)
    np.savez(root / "labelled.npz", x_train=x_train, lengths_train=l_train, y_train=classes[train.labels.numpy()],
             x_test=x_test, lengths_test=l_test, y_test=classes[test.labels.numpy()])
    np.savez(root / "new.npz", x=x_test, lengths=l_test)
    assert main(["train", "--data", str(root / "labelled.npz"), "--run-dir", str(root / "run"), *TINY]) == 0
    return root, test, classes


def test_predict_gives_evaluates_classes_and_the_models_softmax(vowels, capsys):
    root, test, classes = vowels
    capsys.readouterr()
    assert main(["predict", str(root / "run"), str(root / "new.npz"), "-o", str(root / "p.csv"), "--no-progress"]) == 0
    assert "370 sequences predicted" in capsys.readouterr().out
    rows = list(csv.DictReader(open(root / "p.csv")))
    assert len(rows) == 370 and list(rows[0]) == ["sequence", "predicted", *(f"p_{c}" for c in classes)]
    probabilities = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-7)

    trained = dilated_rnn.load(root / "run")
    logits = predict_logits(trained.model, test, trained.transform)
    np.testing.assert_allclose(probabilities, torch.softmax(logits.double(), 1).numpy(), rtol=0, atol=1e-6)
    predicted = [r["predicted"] for r in rows]
    assert predicted == list(classes[logits.argmax(1).numpy()])

    assert main(["evaluate", str(root / "run" / "best.pt"), "--data", str(root / "labelled.npz"), "-o",
                 str(root / "e.json")]) == 0
    report = json.loads((root / "e.json").read_text())
    truth = classes[test.labels.numpy()]
    confusion = np.zeros((len(classes), len(classes)), int)
    index = {c: i for i, c in enumerate(classes)}
    for t, p in zip(truth, predicted):
        confusion[index[t], index[p]] += 1
    assert confusion.tolist() == report["confusion_matrix"]
    assert np.mean(truth == np.array(predicted)) == pytest.approx(report["accuracy"])


def test_predict_writes_jsonl_and_npz_and_an_onnx_graph_agrees(vowels, tmp_path):
    root, test, classes = vowels
    assert main(["predict", str(root / "run" / "best.pt"), str(root / "new.npz"), "-o", str(tmp_path / "p.jsonl"),
                 "--batch-size", "7"]) == 0
    lines = [json.loads(line) for line in open(tmp_path / "p.jsonl")]
    assert len(lines) == 370 and list(lines[0]["probabilities"]) == list(classes)
    assert main(["export", str(root / "run" / "best.pt"), "-o", str(tmp_path / "m.onnx"), "--check-images", "40"]) == 0
    assert main(["predict", str(tmp_path / "m.onnx"), str(root / "new.npz"), "-o", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert list(z["classes"]) == list(classes) and z["probabilities"].shape == (370, 9)
        assert list(z["predicted"]) == [line["predicted"] for line in lines]  # ONNX Runtime: the same classes


def test_load_takes_raw_sequences_as_they_came(vowels):
    root, test, classes = vowels
    trained = dilated_rnn.load(root / "run")
    sequences = test.sequences()
    proba = trained.predict_proba(sequences)  # a list of [T_i, 12] arrays of different lengths
    assert proba.shape == (370, 9) and np.allclose(proba.sum(1), 1) and list(trained.classes) == list(classes)
    names = trained.predict(sequences)
    accuracy = np.mean(names == classes[test.labels.numpy()])
    summary = json.loads((root / "run" / "test.json").read_text())
    assert accuracy == pytest.approx(summary["test"]["accuracy"])  # the normalization travels with the model
    raw = trained.model(with_differences(torch.from_numpy(np.stack([s[:7] for s in sequences]))))  # not normalized
    fixed = trained.predict_proba(np.stack([s[:7] for s in sequences]))  # ... an [N, T, F] array, normalized
    assert not np.allclose(softmax(raw.detach().numpy()), fixed, atol=1e-3)


def test_load_a_shipped_model_by_name(mnist):
    trained = dilated_rnn.load("gru-mnist")
    x = mnist["test"].x[:20].numpy()
    assert list(trained.predict(x)) == [str(v) for v in trained.predict_proba(x).argmax(1)]
    assert np.mean(trained.predict(x[:, :, 0]) == np.array([str(int(v)) for v in mnist["test"].labels[:20]])) >= 0.9


def test_predict_refuses_data_that_does_not_fit_in_one_line(vowels, tmp_path, capsys):
    root, _, _ = vowels
    np.savez(tmp_path / "three.npz", x=np.random.rand(5, 20, 3))
    capsys.readouterr()
    assert main(["predict", str(root / "run"), str(tmp_path / "three.npz"), "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "3 channel(s); the model takes 12" in err and not (tmp_path / "p.csv").exists()
    assert main(["predict", str(root / "run"), str(tmp_path / "three.npz"), "-o", str(tmp_path / "p.txt")]) == 2
    with pytest.raises(dilated_rnn.trained.UserError, match="x: sequences of 3 channel"):
        dilated_rnn.load(root / "run").predict_proba(np.random.rand(5, 20, 3))
