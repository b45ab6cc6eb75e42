"""The horizon curve: each metric against the predicted frame index, one panel per metric."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from svqbench.fileio import atomic_path


def plot_horizon(per_frame: dict[str, list[float]], path: str | os.PathLike) -> None:
    """Write a PNG of ``per_frame`` ({metric: [value per frame]}) to ``path`` atomically."""
    names = list(per_frame)
    # Figure without pyplot: no global state, no GUI backend, safe in threads and on headless machines.
    figure = Figure(figsize=(3.2 * max(1, len(names)), 2.8), layout="constrained")
    axes = figure.subplots(1, max(1, len(names)), squeeze=False)[0]
    for axis, name in zip(axes, names):
        values = per_frame[name]
        axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
        axis.set_title(name)
        axis.set_xlabel("predicted frame")
        axis.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
