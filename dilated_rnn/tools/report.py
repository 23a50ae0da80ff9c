"""Pictures of a run: training curves, test confusion matrix, the dilation schedule, and a Markdown summary.

Reads only what ``drnn train`` wrote (config.json, metrics.jsonl, test.json);
draws headless with matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..files import read_jsonl, write_bytes
from ..model.pruning import plan_outputs
from .plotting import pyplot, save_png


def plot_training(records: list[dict], path: Path) -> None:
    """Training loss and validation accuracy against step."""
    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    steps = [r["step"] for r in records]
    loss_ax.plot(steps, [r["train_loss"] for r in records], lw=0.8, label="training loss")
    val = [r for r in records if "val_loss" in r]
    loss_ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", ms=3, label="validation loss")
    loss_ax.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="Loss")
    loss_ax.legend()
    acc_ax.plot([r["step"] for r in val], [100 * r["val_accuracy"] for r in val], "o-", ms=3, color="C2")
    acc_ax.set(xlabel="step", ylabel="accuracy (%)", title="Validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def plot_confusion(matrix: list[list[int]], accuracy: float, path: Path, classes=None) -> None:
    """Test confusion matrix, rows true class, columns predicted, counts in the cells, classes by name."""
    plt = pyplot()
    k = len(matrix)
    classes = classes or [str(c) for c in range(k)]
    size = max(5.0, 0.45 * k + 1.5)
    fig, ax = plt.subplots(figsize=(size * 1.12, size), dpi=110)
    ax.imshow([[min(v, 50) for v in row] for row in matrix], cmap="Blues")  # clipped so errors show
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > 25 else "black")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=classes, yticklabels=classes, xlabel="predicted",
           ylabel="true", title=f"Test confusion matrix ({100 * accuracy:.2f}% correct)")
    ax.tick_params(axis="x", labelrotation=90 if max(map(len, classes)) > 3 else 0)
    fig.tight_layout()
    save_png(fig, path)


def plot_schedule(dilations, path: Path, steps: int = 64) -> None:
    """Layers as rows, time steps as columns, recurrent edges t-d -> t; the chains the last step needs in red."""
    plt = pyplot()
    T = steps
    plan = plan_outputs(T, dilations, [T - 1])
    fig, ax = plt.subplots(figsize=(12, 0.5 + 0.55 * len(dilations)), dpi=110)
    for layer, d in enumerate(dilations):
        needed = {p for p in plan.layers[layer].positions if p < T}
        for t in range(d, T):
            on_chain = t in needed and t - d in needed
            ax.annotate("", xy=(t, layer), xytext=(t - d, layer),
                        arrowprops=dict(arrowstyle="-", lw=1.2 if on_chain else 0.4,
                                        color="C3" if on_chain else "0.75",
                                        connectionstyle=f"arc3,rad={-0.25 if d > 1 else 0}"))
        ax.scatter(range(T), [layer] * T, s=6, c=["C3" if t in needed else "0.6" for t in range(T)], zorder=3)
    ax.set(yticks=range(len(dilations)), yticklabels=[f"d={d}" for d in dilations], xlabel="time step",
           ylim=(-0.8, len(dilations) - 0.2),
           title=f"Dilation schedule on a {T}-step sequence: red = the {plan.cell_steps} of "
                 f"{len(dilations) * T} cell steps that the last-step readout needs")
    ax.spines[["top", "right", "left"]].set_visible(False)
    fig.tight_layout()
    save_png(fig, path)


def read_run(run_dir) -> tuple[dict, list[dict], dict | None]:
    """What ``drnn train`` wrote in ``run_dir``: its config, its metric records, its test report (None
    until the run has finished)."""
    import json

    run_dir = Path(run_dir)
    config_path, metrics_path = run_dir / "config.json", run_dir / "metrics.jsonl"
    if not config_path.is_file() or not metrics_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (expected config.json and metrics.jsonl from drnn train)")
    config = json.loads(config_path.read_text())
    records = read_jsonl(metrics_path)
    if not records:
        raise UserError(f"{metrics_path}: no metrics recorded yet")
    test_path = run_dir / "test.json"
    test = json.loads(test_path.read_text()) if test_path.is_file() else None
    return config, records, test


def write_report(run_dir) -> dict:
    """PNGs and ``report.md`` in ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    config, records, test = read_run(run_dir)
    files = {"training": run_dir / "training.png", "schedule": run_dir / "schedule.png"}
    plot_training(records, files["training"])
    dilations = config["model"]["dilations"]
    plot_schedule(dilations, files["schedule"], steps=min(784, max(64, 2 * max(dilations[:6]))))
    if test is not None:
        files["confusion"] = run_dir / "confusion.png"
        classes = config.get("data", {}).get("classes")
        plot_confusion(test["test"]["confusion_matrix"], test["test"]["accuracy"], files["confusion"], classes)
    files["summary"] = run_dir / "report.md"
    write_bytes(files["summary"], _markdown(config, records, test).encode())
    return {name: str(p) for name, p in files.items()}


def _markdown(config: dict, records: list[dict], test: dict | None) -> str:
    model, train = config["model"], config["train"]
    val = [r for r in records if "val_accuracy" in r]
    decay = f"weight decay {train.get('weight_decay', 0.0)}"  # runs from before weight decay existed had none
    if train.get("weight_decay_start"):
        decay += f" from step {train['weight_decay_start']}"
    spec = train.get("data", "mnist")
    task = f"{'permuted' if train['permute'] else 'unpermuted'} MNIST" if spec == "mnist" else spec
    lines = [
        f"# Run report: {model['cell'].upper()}, {task}",
        "",
        f"- layers: {len(model['hidden_sizes'])}, hidden sizes {model['hidden_sizes']}, dilations {model['dilations']}",
        f"- training: {train['optimizer']} lr {train['lr']}, schedule {train['schedule']}, clip {train['clip']}, "
        f"{decay}, batch {train['batch_size']}, {train['steps']} steps, seed {train['seed']}",
        f"- steps logged: {records[-1]['step']}; best validation accuracy: "
        + (f"{100 * max(r['val_accuracy'] for r in val):.2f}%" if val else "none yet"),
    ]
    if test is not None:
        lines.append(f"- test accuracy of the best checkpoint (step {test['best']['step']}): "
                     f"{100 * test['test']['accuracy']:.2f}% on {test['test']['num_examples']} images")
    lines += ["", "![training curves](training.png)", ""]
    if test is not None:
        lines += ["![test confusion matrix](confusion.png)", ""]
    lines += ["![dilation schedule](schedule.png)", ""]
    return "\n".join(lines)
