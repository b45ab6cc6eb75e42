"""Evaluation metrics on (B, T, C, H, W) tensors, in named conventions ("standard", "openstl").

- ``compute(pred, true, metrics, convention)``: overall values of one batch;
- ``MetricAccumulator``: streaming evaluation with per-frame (horizon) values;
- ``plot_horizon``: PNG of the per-frame values;
- ``ensure_lpips_weights``: locate or fetch the offline LPIPS weights;
- ``i3d_logits``, ``frechet_distance``, ``ensure_fvd_weights``: FVD with the offline Kinetics-400 I3D (fvd.py).
"""

from svqbench.metrics.accumulator import LAT_WEIGHTED_RMSE, MetricAccumulator, compute
from svqbench.metrics.conventions import CONVENTIONS, METRIC_NAMES
from svqbench.metrics.fvd import frechet_distance, i3d_logits
from svqbench.metrics.i3d_weights import ensure_fvd_weights
from svqbench.metrics.lpips_weights import ensure_lpips_weights
from svqbench.metrics.plot import plot_horizon

__all__ = [
    "CONVENTIONS",
    "LAT_WEIGHTED_RMSE",
    "METRIC_NAMES",
    "MetricAccumulator",
    "compute",
    "ensure_fvd_weights",
    "ensure_lpips_weights",
    "frechet_distance",
    "i3d_logits",
    "plot_horizon",
]
