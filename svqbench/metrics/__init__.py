"""Evaluation metrics on (B, T, C, H, W) tensors, in named conventions ("standard", "openstl").

- ``compute(pred, true, metrics, convention)``: overall values of one batch;
- ``MetricAccumulator``: streaming evaluation with per-frame (horizon) values;
- ``plot_horizon``: PNG of the per-frame values;
- ``ensure_lpips_weights``: locate or fetch the offline LPIPS weights;
- ``i3d_logits``, ``frechet_distance``, ``ensure_fvd_weights``: FVD with the offline Kinetics-400 I3D (fvd.py).

A light face: importing this package loads only the conventions and the metric names; torch (and matplotlib)
load when a metric is computed or plotted, so that the CLI, config and ``results/`` can check metric names
without torch.

May import: the leaves (errors, fileio). Never config, data, models or anything above them.
"""

from __future__ import annotations

import importlib
from typing import Any

from svqbench.metrics.conventions import CONVENTIONS, METRIC_NAMES

_LAZY = {
    "LAT_WEIGHTED_RMSE": "svqbench.metrics.accumulator",
    "MetricAccumulator": "svqbench.metrics.accumulator",
    "compute": "svqbench.metrics.accumulator",
    "ensure_lpips_weights": "svqbench.metrics.lpips_weights",
    "ensure_fvd_weights": "svqbench.metrics.i3d_weights",
    "frechet_distance": "svqbench.metrics.fvd",
    "i3d_logits": "svqbench.metrics.fvd",
    "plot_horizon": "svqbench.metrics.plot",
}

__all__ = ["CONVENTIONS", "METRIC_NAMES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
