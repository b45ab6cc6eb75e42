"""Which way each metric improves: shared by compare, the leaderboards and the quickstart."""

from __future__ import annotations

LOWER_IS_BETTER = {"mae", "mse", "rmse", "lpips", "lat_weighted_rmse"}
HIGHER_IS_BETTER = {"ssim", "psnr"}
METRIC_ORDER = ["mse", "mae", "rmse", "lat_weighted_rmse", "ssim", "psnr", "lpips"]
