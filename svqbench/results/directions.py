"""Which way each metric improves: shared by compare, the leaderboards and the quickstart."""

from __future__ import annotations

LOWER_IS_BETTER = {"mae", "mse", "rmse", "lpips", "fvd", "lat_weighted_rmse", "lat_weighted_mae", "lat_weighted_mse"}
HIGHER_IS_BETTER = {"ssim", "psnr", "acc"}
METRIC_ORDER = [
    "mse",
    "mae",
    "rmse",
    "lat_weighted_mse",
    "lat_weighted_mae",
    "lat_weighted_rmse",
    "acc",
    "ssim",
    "psnr",
    "lpips",
    "fvd",
]


def metric_title(metric: str) -> str:
    """``"mse (lower is better)"``: a metric named with the way it improves, for tables and plots."""
    return f"{metric} ({'higher' if metric in HIGHER_IS_BETTER else 'lower'} is better)"
