"""Headless matplotlib: the one place that picks the backend and saves figures atomically."""

from __future__ import annotations

from pathlib import Path

from .files import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
