"""Evaluation of a classifier on a split: accuracy, loss, per-class accuracy, confusion matrix."""

from __future__ import annotations

import torch
from torch import nn

from ..data.transform import InputTransform


@torch.no_grad()
def predict_logits(model: nn.Module, split, transform=None, batch_size: int = 1000, device="cpu"):
    """Logits [N, K] (float32, on the CPU) of a split's raw sequences (``data.splits.Split``). ``transform``:
    the model's ``InputTransform`` (None: the identity)."""
    transform = transform or InputTransform()
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(split), batch_size):
        x, lengths = split.batch(torch.arange(start, min(start + batch_size, len(split))))
        x = transform(x, lengths).to(device)
        chunks.append((model(x) if lengths is None else model(x, lengths.to(device))).float().cpu())
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def per_example(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, K] and labels [N]; a label at every step (logits [N, T, K], labels [N, T]) counts each step."""
    if logits.dim() == 3:
        return logits.reshape(-1, logits.shape[2]), labels.reshape(-1)
    return logits, labels


def classification_report(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Accuracy, balanced accuracy (the mean over the classes present of their accuracy), mean cross-entropy,
    per-class accuracy and confusion matrix (rows: true class).

    With a label at every step (``per_example``) each step is one example."""
    logits, labels = per_example(logits, labels)
    pred = logits.argmax(dim=1)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    support = confusion.sum(dim=1)
    recall = confusion.diagonal() / support.clamp(min=1)
    per_class = recall.tolist()
    return {
        "num_examples": len(labels),
        "correct": int(confusion.diagonal().sum()),
        "accuracy": (pred == labels).float().mean().item(),
        "balanced_accuracy": recall[support > 0].mean().item() if bool((support > 0).any()) else 0.0,
        "loss": nn.functional.cross_entropy(logits, labels).item(),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(model: nn.Module, split, transform=None, batch_size: int = 1000, device="cpu") -> dict:
    logits = predict_logits(model, split, transform, batch_size, device)
    return classification_report(logits, split.labels, model.config.num_classes)


def format_report(report: dict, title: str, classes=None) -> str:
    """A one-screen text summary of ``classification_report``'s output; ``classes`` names the classes."""
    classes = classes or [str(k) for k in range(len(report["per_class_accuracy"]))]
    lines = [
        title,
        f"  examples  {report['num_examples']}",
        f"  accuracy  {100 * report['accuracy']:.2f}%",
        f"  balanced  {100 * report['balanced_accuracy']:.2f}% (the mean of the per-class accuracies)",
        f"  loss      {report['loss']:.4f}",
        "  per class " + " ".join(f"{c}:{100 * a:.1f}" for c, a in zip(classes, report["per_class_accuracy"])),
        "  confusion (rows true, columns predicted)",
    ]
    lines += ["    " + " ".join(f"{v:5d}" for v in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)
