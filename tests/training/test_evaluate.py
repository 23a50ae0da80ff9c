"""Evaluation: the report's figures from their definitions, and a shipped model on real test digits."""

import pytest
import torch

from dilated_rnn.trained import load_pretrained
from dilated_rnn.training.evaluate import (
    classification_report,
    evaluate,
    format_report,
    predict_logits,
)


def test_report_from_its_definitions():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 1.0, 0.5], [0.2, 0.1, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 2, 2])  # predictions 0, 1, 1, 0, 2
    r = classification_report(logits, labels, num_classes=3)
    assert r["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    assert (r["num_examples"], r["correct"]) == (5, 3) and r["accuracy"] == pytest.approx(0.6)
    assert r["per_class_accuracy"] == pytest.approx([1.0, 1.0, 1 / 3])
    expected_loss = -torch.log_softmax(logits, 1)[torch.arange(5), labels].mean()
    assert r["loss"] == pytest.approx(expected_loss.item())


def test_a_class_without_examples_scores_zero_not_nan():
    r = classification_report(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0]), num_classes=3)
    assert r["per_class_accuracy"] == [1.0, 0.0, 0.0]


def test_shipped_permuted_model_on_real_digits(mnist):
    trained = load_pretrained("gru-pmnist")
    model, perm = trained.model, trained.transform
    test = mnist["test"].subset(300)
    logits = predict_logits(model, test, perm, batch_size=128)
    assert logits.shape == (300, 10) and not model.training
    with torch.no_grad():  # the same logits from one call on the permuted sequences
        torch.testing.assert_close(logits, model(test.x[:, perm.permutation]), rtol=1e-5, atol=1e-5)
    report = evaluate(model, test, perm, batch_size=128)
    assert report["accuracy"] > 0.9 and sum(map(sum, report["confusion_matrix"])) == 300
    assert evaluate(model, test, None, batch_size=128)["accuracy"] < 0.5  # without its permutation: lost
    text = format_report(report, "gru-pmnist")
    assert f"accuracy  {100 * report['accuracy']:.2f}%" in text and len(text.splitlines()) == 7 + 10
    assert f"balanced  {100 * report['balanced_accuracy']:.2f}%" in text
