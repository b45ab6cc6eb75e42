"""The named metric conventions: which formula each metric name means.

``openstl`` reproduces the numbers OpenSTL-based papers report (SVQ included); ``standard`` is the
textbook definition and the default for new work. See docs of each field for the difference.

Physical fields (weather: values de-normalised to physical units) use per-pixel means for MAE/MSE under
both. Their RMSE differs:
- ``openstl`` pools channels as OpenSTL's ``metric(..., spatial_norm=True)`` does: the square root of the
  mean squared error over samples, frames, channels and pixels (uv10: one RMSE over u and v together). A
  dataset that names its variables (WeatherBench-M: r, t, u, v, each a block of pressure levels) is split
  into those blocks as OpenSTL's ``channel_names`` does: MAE/MSE/RMSE per variable, pooled within it, and
  the overall value is their mean.
- ``standard`` computes the RMSE of each channel in its own units (pooled over samples, frames and pixels)
  and averages the channels, so that a channel with large values cannot hide another's error; per
  variable it averages that variable's channels.
SSIM, PSNR and LPIPS on physical fields need a declared range (LO, HI in physical units, mapped to [0, 1]);
without one they are refused rather than computed on clipped z-scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from svqbench.errors import SvqbenchError

METRIC_NAMES = ("mae", "mse", "rmse", "ssim", "psnr", "lpips", "fvd", "acc")
CONVENTIONS = ("standard", "openstl")


@dataclass(frozen=True)
class Convention:
    """How each metric is reduced.

    errors_summed_over_frame: MAE/MSE are per-frame sums over C*H*W (openstl on image data) instead of
        per-pixel means. Physical fields always use per-pixel means (openstl's weather protocol).
    ssim_window: side of the square SSIM window, in pixels.
    ssim_sigma: Gaussian window of this sigma; None means a uniform window.
    ssim_sample_covariance: divide local (co)variances by n-1 instead of n.
    ssim_data_range: the dynamic range L in the SSIM constants (K1 L)^2 and (K2 L)^2.
    psnr_max_db: per-frame PSNR ceiling; None lets a perfectly predicted frame give +inf (and the
        average with it), as OpenSTL does.
    rmse_pooled_over_channels: physical RMSE is the root of the mean over all channels of a variable (OpenSTL)
        instead of the mean of per-channel RMSEs.
    """

    name: str
    errors_summed_over_frame: bool
    ssim_window: int
    ssim_sigma: float | None
    ssim_sample_covariance: bool
    ssim_data_range: float
    psnr_max_db: float | None
    rmse_pooled_over_channels: bool


_CONVENTIONS = {
    # scikit-image's defaults as OpenSTL called them; data_range 2.0 is what scikit-image <= 0.19
    # silently used for float input, so the published SSIM values depend on it.
    "openstl": Convention("openstl", True, 7, None, True, 2.0, None, True),
    # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, population covariance, L = 1 for [0,1] data.
    # PSNR capped at 100 dB (MSE 1e-10), so one exactly repeated frame (persistence) cannot make the mean infinite.
    "standard": Convention("standard", False, 11, 1.5, False, 1.0, 100.0, False),
}


def get_convention(name: str) -> Convention:
    try:
        return _CONVENTIONS[name]
    except KeyError:
        raise SvqbenchError(f"unknown metric convention {name!r}; valid: {', '.join(CONVENTIONS)}") from None


def check_metric_names(metrics, where: str = "") -> tuple[str, ...]:
    """Return ``metrics`` as a tuple, failing on any name not in METRIC_NAMES: the one check of metric names
    (``--metrics``, a recipe's ``eval.metrics``, :func:`compute`), with one message; ``where`` prefixes it."""
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    prefix = f"{where}: " if where else ""
    for name in metrics:
        if name not in METRIC_NAMES:
            raise SvqbenchError(f"{prefix}unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")
    if not metrics:
        raise SvqbenchError(f"{prefix}no metric requested; valid: {', '.join(METRIC_NAMES)}")
    return metrics
