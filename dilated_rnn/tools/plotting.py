"""Headless matplotlib: the one place that picks the backend and saves figures atomically; the anytime plot."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)


def plot_anytime(curves: dict, path) -> None:
    """Accuracy against the fraction of each sequence seen, one line per ``{label: deploy.stream.anytime_accuracy(...)}``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot([100 * f for f in curve["fractions"]], [100 * a for a in curve["accuracy"]], marker=".", label=label)
    ax.set_xlabel("share of each test sequence seen (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_png(fig, Path(path))
