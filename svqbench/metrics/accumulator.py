"""Streaming evaluation: per-batch sums on the evaluation device, reduced once at the end.

Shapes: pred, true (B, T, C, H, W); B varies per batch, T is fixed (``frames_out``).

Every metric is kept per predicted frame index (the horizon curve) as a sum over samples, so the
test set is never concatenated and the overall value is exact whatever the batch size:
- MAE/MSE: sums of |error| and error^2 per (frame index, channel), float64;
- RMSE: derived from the MSE sums (square root of the pooled mean, as WeatherBench does), so the
  overall RMSE is not the mean of the per-frame RMSEs;
- SSIM/PSNR/LPIPS: one value per frame, summed over samples. A frame predicted exactly has PSNR +inf
  under ``openstl`` (as in OpenSTL, and so has the mean over frames that include it), 100 dB (the cap)
  under ``standard``.

Each test window's own value of every metric is also kept (``per_window()``, float64 of shape
(N_windows,), in the order the windows were seen) for paired comparisons between runs. Per window,
MAE/MSE follow the convention's per-frame scale averaged over the window's frames, RMSE is the root of
that window MSE (channels pooled), and SSIM/PSNR/LPIPS are the window's mean over frames.

Pixel errors use unclipped predictions (in physical units when ``denormalise`` is given, then per
channel and averaged); SSIM, PSNR and LPIPS use predictions clipped to [0, 1] against unclipped
targets, on the model-space tensors.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch

from svqbench.errors import SvqbenchError
from svqbench.metrics.conventions import check_metric_names, get_convention
from svqbench.metrics.lpips import load_lpips
from svqbench.metrics.ssim import ssim_per_frame

Denormalise = Callable[[torch.Tensor], torch.Tensor]
LAT_WEIGHTED_RMSE = "lat_weighted_rmse"


def _sum_per_frame_channel(values: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, C) float64 sums over pixels (sum over dim 0 for the split's (T, C) sums).

    Each frame is summed in float32 (pairwise/tree reductions: ~1e-7 relative), samples in float64,
    so long test sets do not lose precision; a float64 reduction over all pixels costs ~3x more on CPU.
    """
    return values.sum(dim=(3, 4)).double()


def latitude_weights(latitudes: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """cos(latitude) normalised to mean 1, shaped (H, 1) to broadcast over (..., H, W)."""
    weights = torch.cos(torch.deg2rad(torch.as_tensor(latitudes, dtype=torch.float64)))
    return (weights / weights.mean()).float().to(device).unsqueeze(-1)


class MetricAccumulator:
    """Accumulate ``metrics`` under ``convention`` over batches; ``result()`` gives overall and per-frame values.

    denormalise: maps model-space (B,T,C,H,W) to physical units for MAE/MSE/RMSE (weather, TaxiBJ);
        physical errors are per-pixel means, per channel, averaged over channels.
    latitudes: H latitudes in degrees; with "rmse" it adds the latitude-weighted RMSE (WeatherBench).
    lpips_weights: path of the converted LPIPS weights; None resolves them (see lpips_weights.py).
    """

    def __init__(
        self,
        metrics: Sequence[str],
        convention: str = "standard",
        *,
        frames_out: int,
        device: torch.device | str,
        denormalise: Denormalise | None = None,
        latitudes: Sequence[float] | torch.Tensor | None = None,
        lpips_weights: str | os.PathLike | None = None,
    ):
        self.metrics = check_metric_names(metrics)
        self.convention = get_convention(convention)
        self.frames_out = int(frames_out)
        self.device = torch.device(device)
        self.denormalise = denormalise
        self.latitudes = latitudes
        self._lat_weights = None if latitudes is None else latitude_weights(latitudes, self.device)
        self._lpips = load_lpips(self.device, lpips_weights) if "lpips" in self.metrics else None
        self._sums: dict[str, torch.Tensor] = {}
        self._windows: dict[str, list[torch.Tensor]] = {}  # metric -> per-batch (B,) float64 values
        self._count = 0
        self._frame_shape: tuple[int, int, int] | None = None

    def _check(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if pred.ndim != 5 or pred.shape != true.shape:
            raise SvqbenchError(
                f"metrics need pred and true of the same (B,T,C,H,W) shape; got {tuple(pred.shape)} and {tuple(true.shape)}"
            )
        if pred.shape[1] != self.frames_out:
            raise SvqbenchError(f"metrics expected {self.frames_out} predicted frames, got {pred.shape[1]}")
        if self._frame_shape is not None and tuple(pred.shape[2:]) != self._frame_shape:
            raise SvqbenchError(f"frame shape changed from {self._frame_shape} to {tuple(pred.shape[2:])} between batches")
        if self.latitudes is not None and len(self.latitudes) != pred.shape[3]:
            raise SvqbenchError(f"got {len(self.latitudes)} latitudes for frames of height {pred.shape[3]}")

    def _add(self, name: str, value: torch.Tensor) -> None:
        if name in self._sums:
            self._sums[name] += value
        else:
            self._sums[name] = value.clone()

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        """Add one batch: pred, true (B, T, C, H, W)."""
        self._check(pred, true)
        self._frame_shape = tuple(pred.shape[2:])
        # metrics are defined in float32/float64: an evaluation loop running under autocast must not lower them
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            pred = pred.to(self.device, torch.float32)
            true = true.to(self.device, torch.float32)
            self._add_pixel_errors(pred, true)
            self._add_frame_scores(pred.clamp(0.0, 1.0), true)
        self._count += pred.shape[0]

    def _add_pixel_errors(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if not {"mae", "mse", "rmse"} & set(self.metrics):
            return
        if self.denormalise is not None:
            pred, true = self.denormalise(pred), self.denormalise(true)
        error = pred - true
        if "mae" in self.metrics:
            absolute = _sum_per_frame_channel(error.abs())
            self._add("abs", absolute.sum(0))
            self._record_window("mae", self._window_error(absolute))
        if {"mse", "rmse"} & set(self.metrics):
            squared = error.square()
            squared_sums = _sum_per_frame_channel(squared)
            self._add("sq", squared_sums.sum(0))
            window_mse = self._window_error(squared_sums)
            if "mse" in self.metrics:
                self._record_window("mse", window_mse)
            if "rmse" in self.metrics:
                self._record_window("rmse", window_mse.sqrt())
            if self._lat_weights is not None and "rmse" in self.metrics:
                self._add("lat_sq", _sum_per_frame_channel(squared * self._lat_weights).sum(0))

    def _add_frame_scores(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if not {"ssim", "psnr", "lpips"} & set(self.metrics):
            return
        batch, frames = pred.shape[:2]
        pred_frames, true_frames = pred.flatten(0, 1), true.flatten(0, 1)
        scores: dict[str, torch.Tensor] = {}  # metric -> (B, T) per-frame values
        if "ssim" in self.metrics:
            scores["ssim"] = ssim_per_frame(pred_frames, true_frames, self.convention).view(batch, frames)
        if "psnr" in self.metrics:
            mse = (pred - true).square().mean(dim=(2, 3, 4)).double()
            if self.convention.psnr_max_db is not None:
                mse = mse.clamp_min(10.0 ** (-self.convention.psnr_max_db / 10.0))
            scores["psnr"] = -10.0 * torch.log10(mse)  # peak 1
        if "lpips" in self.metrics:
            scores["lpips"] = self._lpips(pred_frames, true_frames).double().view(batch, frames)
        for name, values in scores.items():
            self._add(name, values.sum(0))
            self._record_window(name, values.double().mean(1))

    def _window_error(self, sums: torch.Tensor) -> torch.Tensor:
        """(B, T, C) error sums over pixels -> (B,) per-window MAE/MSE in the convention's per-frame scale."""
        per_frame = sums.sum(dim=2)
        if not (self.convention.errors_summed_over_frame and self.denormalise is None):
            per_frame = per_frame / (self._pixels() * sums.shape[2])
        return per_frame.mean(dim=1)

    def _record_window(self, name: str, values: torch.Tensor) -> None:
        self._windows.setdefault(name, []).append(values.detach().to("cpu", torch.float64))

    def per_window(self) -> dict[str, np.ndarray]:
        """{metric: float64 array (N_windows,)}, one value per window this process evaluated, in order.

        Not reduced across processes by :meth:`all_reduce`: under multi-process evaluation each
        process holds its own shard's windows.
        """
        return {name: torch.cat(chunks).numpy() for name, chunks in self._windows.items()}

    def all_reduce(self) -> None:
        """Sum the state of every process of the default torch.distributed group into each of them.

        For multi-GPU evaluation, where each process sees one shard: call once before ``result()``.
        Every process must have evaluated at least one batch.
        """
        import torch.distributed as dist

        with torch.inference_mode():
            for name in sorted(self._sums):
                dist.all_reduce(self._sums[name])
            count = torch.tensor([self._count], dtype=torch.float64, device=self.device)
            dist.all_reduce(count)
        self._count = int(count.item())

    def result(self) -> dict:
        """{"overall": {name: float}, "per_frame": {name: [float] * frames_out}, "convention": str, "count": int}."""
        if self._count == 0:
            raise SvqbenchError("no samples were evaluated: the evaluation split is empty")
        overall: dict[str, float] = {}
        per_frame: dict[str, list[float]] = {}
        for name in self.metrics:
            frame_values, overall_value = self._reduce(name)
            per_frame[name] = frame_values.tolist()
            overall[name] = float(overall_value)
        if "lat_sq" in self._sums:
            frame_values, overall_value = self._channel_mean_rmse(self._sums["lat_sq"])
            per_frame[LAT_WEIGHTED_RMSE] = frame_values.tolist()
            overall[LAT_WEIGHTED_RMSE] = float(overall_value)
        return {"overall": overall, "per_frame": per_frame, "convention": self.convention.name, "count": self._count}

    def _pixels(self) -> int:
        return self._frame_shape[1] * self._frame_shape[2]

    def _error_mean(self, sums: torch.Tensor) -> torch.Tensor:
        """(T, C) sums of an error over samples and pixels -> (T,) per-frame value of the convention."""
        per_frame_sum = sums.sum(dim=1) / self._count
        if self.convention.errors_summed_over_frame and self.denormalise is None:
            return per_frame_sum
        return per_frame_sum / (self._pixels() * sums.shape[1])

    def _channel_mean_rmse(self, squared_sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_frame = (squared_sums / (self._count * self._pixels())).sqrt().mean(dim=1)
        overall = (squared_sums.sum(dim=0) / (self._count * self._pixels() * self.frames_out)).sqrt().mean()
        return per_frame, overall

    def _reduce(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-frame values (T,), overall value) of one metric, on CPU."""
        if name == "mae":
            values = self._error_mean(self._sums["abs"].cpu())
            return values, values.mean()
        if name == "mse":
            values = self._error_mean(self._sums["sq"].cpu())
            return values, values.mean()
        if name == "rmse":
            if self.denormalise is not None:
                return self._channel_mean_rmse(self._sums["sq"].cpu())
            mse = self._error_mean(self._sums["sq"].cpu())
            return mse.sqrt(), mse.mean().sqrt()
        values = self._sums[name].cpu() / self._count
        return values, values.mean()


def compute(
    pred: torch.Tensor,
    true: torch.Tensor,
    metrics: Sequence[str] = ("mae", "mse"),
    convention: str = "standard",
    denormalise: Denormalise | None = None,
    latitudes: Sequence[float] | torch.Tensor | None = None,
) -> dict[str, float]:
    """Overall metric values of one (B, T, C, H, W) pair, computed on ``pred``'s device."""
    if pred.ndim != 5:
        raise SvqbenchError(f"metrics need (B,T,C,H,W) tensors; got shape {tuple(pred.shape)}")
    accumulator = MetricAccumulator(
        metrics, convention, frames_out=pred.shape[1], device=pred.device, denormalise=denormalise, latitudes=latitudes
    )
    accumulator.update(pred, true)
    return accumulator.result()["overall"]
