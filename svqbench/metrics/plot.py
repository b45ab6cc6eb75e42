"""The horizon curve: each metric against the predicted frame index, one panel per metric."""

from __future__ import annotations

import math
import os

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from svqbench.fileio import atomic_path

_COLUMNS = 3


def plot_horizon(per_frame: dict[str, list[float]], path: str | os.PathLike, trained: int | None = None) -> None:
    """Write a PNG of ``per_frame`` ({metric: [value per predicted frame]}) to ``path`` atomically; ``trained``: the
    horizon the model was trained to predict, marked when the curve runs beyond it (a rollout)."""
    names = list(per_frame)
    columns = max(1, min(_COLUMNS, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    # Figure without pyplot: no global state, no GUI backend, safe on headless machines.
    figure = Figure(figsize=(3.4 * columns, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, name in zip(axes, names):
        values = per_frame[name]
        axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
        if trained and len(values) > trained:
            axis.axvline(trained + 0.5, color="grey", linestyle="--", linewidth=1, label=f"trained: {trained} frames")
            axis.legend(fontsize="small")
        axis.set_title(name)
        axis.set_xlabel("predicted frame")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
