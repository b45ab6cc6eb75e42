"""Streaming evaluation: per-batch sums on the evaluation device, reduced once at the end.

Shapes: pred, true (B, T, C, H, W); B varies per batch, T is fixed (``frames_out``).

Every metric is kept per predicted frame index (the horizon curve) as a sum over samples, so the
test set is never concatenated and the overall value is exact whatever the batch size:
- MAE/MSE: sums of |error| and error^2 per (frame index, channel), float64;
- RMSE: derived from the MSE sums (square root of the pooled mean, as WeatherBench does), so the
  overall RMSE is not the mean of the per-frame RMSEs; on physical fields pooled per channel or per
  variable as the convention says (conventions.py);
- FVD (fvd.py): I3D features of each chosen window's predicted and true clips, one Fréchet distance over the
  split at the end; no per-frame or per-window value (it is a distance between two sets of clips).
- latitude-weighted MAE/MSE/RMSE (WeatherBench, with latitudes): errors weighted by cos(latitude) normalised to
  mean 1 over the grid's rows, per channel, averaged over channels (RMSE: root per channel first);
- ACC (anomaly correlation, WeatherBench 2): per window, frame and channel, sum(w f' o') / sqrt(sum(w f'^2) sum(w
  o'^2)) over the grid, f' and o' the forecast and truth minus the training years' climatology of the target's day
  and hour (:mod:`svqbench.data.climatology`), w the latitude weights; averaged over channels and windows;
- SSIM/PSNR/LPIPS: one value per frame, summed over samples. A frame predicted exactly has PSNR +inf
  under ``openstl`` (as in OpenSTL, and so has the mean over frames that include it), 100 dB (the cap)
  under ``standard``.

Each test window's own value of every metric is also kept (``per_window()``, float64 of shape
(N_windows,), in the order the windows were seen) for paired comparisons between runs. Per window,
MAE/MSE follow the convention's per-frame scale averaged over the window's frames, RMSE is the root of
that window MSE (channels pooled), and SSIM/PSNR/LPIPS are the window's mean over frames.

Pixel errors use unclipped predictions (in physical units when ``denormalise`` is given). SSIM, PSNR
and LPIPS use predictions clipped to [0, 1] against unclipped targets: image data as it is, physical
fields only through a declared ``value_range`` (physical LO, HI mapped to [0, 1]); without one they are
refused, since z-scores clipped to [0, 1] measure nothing meaningful.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch

from svqbench.errors import SvqbenchError
from svqbench.metrics.conventions import check_metric_names, get_convention
from svqbench.metrics.fvd import FvdFeatures, FvdProtocol
from svqbench.metrics.lpips import load_lpips
from svqbench.metrics.ssim import ssim_per_frame

Denormalise = Callable[[torch.Tensor], torch.Tensor]
LAT_WEIGHTED_RMSE = "lat_weighted_rmse"
LAT_WEIGHTED = {"mae": "lat_weighted_mae", "mse": "lat_weighted_mse"}  # added beside MAE/MSE with latitudes
IMAGE_METRICS = ("ssim", "psnr", "lpips")
SET_METRICS = ("fvd",)  # one value for the whole split, from features of every window
PIXEL_ERRORS = ("mae", "mse", "rmse")


def _sum_per_frame_channel(values: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, C) float64 sums over pixels (sum over dim 0 for the split's (T, C) sums).

    Each frame is summed in float32 (pairwise/tree reductions: ~1e-7 relative), samples in float64,
    so long test sets do not lose precision; a float64 reduction over all pixels costs ~3x more on CPU.
    """
    return values.sum(dim=(3, 4)).double()


def check_value_range(
    value_range: Sequence[float] | None, physical: bool, metrics: Sequence[str]
) -> tuple[float, float] | None:
    """The declared (LO, HI) of physical fields, required when image metrics are asked of them."""
    image_metrics = [name for name in metrics if name in IMAGE_METRICS + SET_METRICS]
    if value_range is None:
        if physical and image_metrics:
            raise SvqbenchError(
                f"{', '.join(image_metrics)} need images in [0, 1], but these are physical fields: declare their "
                f"range with --range LO,HI (physical units; or eval.value_range in the recipe), "
                f"or leave {', '.join(image_metrics)} out"
            )
        return None
    if not physical:
        raise SvqbenchError("a value range is for physical fields (weather); image data are already in [0, 1]")
    if len(value_range) != 2:
        raise SvqbenchError(f"value range {value_range}: expected two numbers LO,HI")
    low, high = (float(v) for v in value_range)
    if not low < high:
        raise SvqbenchError(f"value range {low},{high}: expected LO < HI")
    return low, high


def latitude_weights(latitudes: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """cos(latitude) normalised to mean 1, shaped (H, 1) to broadcast over (..., H, W)."""
    weights = torch.cos(torch.deg2rad(torch.as_tensor(latitudes, dtype=torch.float64)))
    return (weights / weights.mean()).float().to(device).unsqueeze(-1)


class MetricAccumulator:
    """Accumulate ``metrics`` under ``convention`` over batches; ``result()`` gives overall and per-frame values.

    denormalise: maps model-space (B,T,C,H,W) to physical units (weather); given, the data are physical fields.
    physical: the data are physical fields even without ``denormalise`` (values already in physical units).
    value_range: (LO, HI) in physical units, mapped to [0, 1] for SSIM/PSNR/LPIPS on physical fields,
        which are refused without it.
    variables: names of the physical variables, each an equal contiguous block of channels (WeatherBench-M's
        r, t, u, v over pressure levels); adds ``per_variable`` values and, under ``openstl``, pools RMSE per
        variable.
    latitudes: H latitudes in degrees; with "rmse" it adds the latitude-weighted RMSE (WeatherBench).
    lpips_weights: path of the converted LPIPS weights; None resolves them (see lpips_weights.py).
    fvd, fvd_weights: the FVD protocol (default: predicted frames, every window) and I3D weights (i3d_weights.py).
    fvd_windows: (index of this process's first window, windows in the split), needed by ``fvd.videos``.
    """

    def __init__(
        self,
        metrics: Sequence[str],
        convention: str = "standard",
        *,
        frames_out: int,
        device: torch.device | str,
        denormalise: Denormalise | None = None,
        physical: bool = False,
        value_range: Sequence[float] | None = None,
        variables: Sequence[str] = (),
        latitudes: Sequence[float] | torch.Tensor | None = None,
        lpips_weights: str | os.PathLike | None = None,
        fvd: FvdProtocol | None = None,
        fvd_weights: str | os.PathLike | None = None,
        fvd_windows: tuple[int, int] | None = None,
    ):
        self.metrics = check_metric_names(metrics)
        self.convention = get_convention(convention)
        self.frames_out = int(frames_out)
        self.device = torch.device(device)
        self.denormalise = denormalise
        self.physical = physical or denormalise is not None
        self.value_range = check_value_range(value_range, self.physical, self.metrics)
        self.variables = tuple(variables)
        self.latitudes = latitudes
        self._lat_weights = None if latitudes is None else latitude_weights(latitudes, self.device)
        self._lpips = load_lpips(self.device, lpips_weights) if "lpips" in self.metrics else None
        self.fvd = (
            FvdFeatures(fvd or FvdProtocol(), self.device, fvd_weights, fvd_windows) if "fvd" in self.metrics else None
        )
        self._sums: dict[str, torch.Tensor] = {}
        self._windows: dict[str, list[torch.Tensor]] = {}  # metric -> per-batch (B,) float64 values
        self._count = 0
        self._frame_shape: tuple[int, int, int] | None = None

    def _check(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if pred.ndim != 5 or pred.shape != true.shape:
            raise SvqbenchError(
                f"metrics need pred and true of the same (B,T,C,H,W) shape; got {tuple(pred.shape)} and "
                f"{tuple(true.shape)}"
            )
        if pred.shape[1] != self.frames_out:
            raise SvqbenchError(f"metrics expected {self.frames_out} predicted frames, got {pred.shape[1]}")
        if self._frame_shape is not None and tuple(pred.shape[2:]) != self._frame_shape:
            raise SvqbenchError(
                f"frame shape changed from {self._frame_shape} to {tuple(pred.shape[2:])} between batches"
            )
        if self.latitudes is not None and len(self.latitudes) != pred.shape[3]:
            raise SvqbenchError(f"got {len(self.latitudes)} latitudes for frames of height {pred.shape[3]}")
        if self.variables and pred.shape[2] % len(self.variables):
            raise SvqbenchError(
                f"{pred.shape[2]} channels do not split into the {len(self.variables)} variables "
                f"{', '.join(self.variables)}"
            )

    def _add(self, name: str, value: torch.Tensor) -> None:
        if name in self._sums:
            self._sums[name] += value
        else:
            self._sums[name] = value.clone()

    def update(
        self,
        pred: torch.Tensor,
        true: torch.Tensor,
        inputs: torch.Tensor | None = None,
        climate: torch.Tensor | None = None,
    ) -> None:
        """Add one batch: pred, true (B, T, C, H, W); inputs (B, T_in, C, H, W), the context, used by FVD's "all";
        climate (B, T, C, H, W) in physical units, the climatology of each target frame, needed by ACC."""
        self._check(pred, true)
        if "acc" in self.metrics and climate is None:
            raise SvqbenchError("acc needs the climatology of the targets; this dataset has none (weather data have)")
        self._frame_shape = tuple(pred.shape[2:])
        # metrics are defined in float32/float64: an evaluation loop running under autocast must not lower them
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            pred = pred.to(self.device, torch.float32)
            true = true.to(self.device, torch.float32)
            use_inputs = self.fvd is not None and inputs is not None
            inputs = inputs.to(self.device, torch.float32) if use_inputs else None
            if self.denormalise is not None:
                pred, true = self.denormalise(pred), self.denormalise(true)
                inputs = self.denormalise(inputs) if use_inputs else None
            self._add_pixel_errors(pred, true)
            if climate is not None and "acc" in self.metrics:
                self._add_anomaly_correlation(pred, true, climate.to(self.device, torch.float32))
            if self.value_range is not None:
                low, high = self.value_range
                pred, true = (pred - low) / (high - low), (true - low) / (high - low)
                inputs = (inputs - low) / (high - low) if use_inputs else None
            self._add_frame_scores(pred.clamp(0.0, 1.0), true)
            if self.fvd is not None:
                self.fvd.update(pred.clamp(0.0, 1.0), true, inputs)
        self._count += pred.shape[0]

    def _add_pixel_errors(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if not set(PIXEL_ERRORS) & set(self.metrics):
            return
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
            if self._lat_weights is not None:
                self._add("lat_sq", _sum_per_frame_channel(squared * self._lat_weights).sum(0))
        if self._lat_weights is not None and "mae" in self.metrics:
            self._add("lat_abs", _sum_per_frame_channel(error.abs() * self._lat_weights).sum(0))

    def _add_anomaly_correlation(self, pred: torch.Tensor, true: torch.Tensor, climate: torch.Tensor) -> None:
        """Per window and frame: the latitude-weighted anomaly correlation, averaged over channels."""
        weights = self._lat_weights if self._lat_weights is not None else torch.ones((), device=self.device)
        forecast, observed = (pred - climate).double(), (true - climate).double()
        weights = weights.double()
        covariance = (weights * forecast * observed).sum(dim=(3, 4))
        spread = ((weights * forecast.square()).sum(dim=(3, 4)) * (weights * observed.square()).sum(dim=(3, 4))).sqrt()
        acc = (covariance / spread).mean(dim=2)  # (B, T): channels averaged
        self._add("acc", acc.sum(0))
        self._record_window("acc", acc.mean(1))

    def _add_frame_scores(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if not set(IMAGE_METRICS) & set(self.metrics):
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
        if self.fvd is not None:
            self.fvd.all_gather()

    def result(self) -> dict:
        """{"overall": {name: float}, "per_frame": {name: [float] * frames_out}, "convention": str, "count": int}.

        With ``variables``, also "per_variable": {variable: {name: float}} for MAE/MSE/RMSE (OpenSTL's
        ``mse_r``, ``rmse_t``, ...).
        """
        if self._count == 0:
            raise SvqbenchError("no samples were evaluated: the evaluation split is empty")
        overall: dict[str, float] = {}
        per_frame: dict[str, list[float]] = {}
        for name in self.metrics:
            if name == "fvd":
                overall[name] = self.fvd.value()
                continue
            frame_values, overall_value = self._reduce(name)
            per_frame[name] = frame_values.tolist()
            overall[name] = float(overall_value)
        if "lat_sq" in self._sums and "rmse" in self.metrics:
            frame_values, overall_value = self._rmse_of_groups(self._sums["lat_sq"], self._channel_groups(False))
            per_frame[LAT_WEIGHTED_RMSE] = frame_values.tolist()
            overall[LAT_WEIGHTED_RMSE] = float(overall_value)
        for name, key in (("mae", "lat_abs"), ("mse", "lat_sq")):
            if name in self.metrics and key in self._sums:  # weighted means per channel, then over channels
                frames = self._sums[key].sum(dim=1) / (self._count * self._pixels() * self._sums[key].shape[1])
                per_frame[LAT_WEIGHTED[name]] = frames.tolist()
                overall[LAT_WEIGHTED[name]] = float(frames.mean())
        result = {"overall": overall, "per_frame": per_frame, "convention": self.convention.name, "count": self._count}
        if self.variables and set(PIXEL_ERRORS) & set(self.metrics):
            result["per_variable"] = self._per_variable()
        return result

    def _pixels(self) -> int:
        return self._frame_shape[1] * self._frame_shape[2]

    def _error_mean(self, sums: torch.Tensor) -> torch.Tensor:
        """(T, C) sums of an error over samples and pixels -> (T,) per-frame value of the convention."""
        per_frame_sum = sums.sum(dim=1) / self._count
        if self.convention.errors_summed_over_frame:
            return per_frame_sum
        return per_frame_sum / (self._pixels() * sums.shape[1])

    def _variable_blocks(self) -> list[slice]:
        """Channel slice of each named variable; one block of every channel when none are named."""
        channels = self._frame_shape[0]
        width = channels // max(1, len(self.variables))
        return [slice(i * width, (i + 1) * width) for i in range(channels // width)]

    def _channel_groups(self, pooled: bool, within: slice = slice(None)) -> list[slice]:
        """Channels whose squared errors share one square root: whole variables (pooled) or single channels."""
        channels = range(self._frame_shape[0])[within]
        if pooled:
            return self._variable_blocks() if within == slice(None) else [within]
        return [slice(c, c + 1) for c in channels]

    def _rmse_of_groups(self, squared_sums: torch.Tensor, groups: list[slice]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, C) squared-error sums -> per-frame and overall RMSE: root of each group's pooled mean, mean over
        groups."""
        per_frame, overall = [], []
        for group in groups:
            sums = squared_sums[:, group]
            values = self._count * self._pixels() * sums.shape[1]
            per_frame.append((sums.sum(dim=1) / values).sqrt())
            overall.append((sums.sum() / (values * self.frames_out)).sqrt())
        return torch.stack(per_frame).mean(dim=0), torch.stack(overall).mean()

    def _per_variable(self) -> dict[str, dict[str, float]]:
        per_variable = {}
        for variable, block in zip(self.variables, self._variable_blocks()):
            values = {}
            for name in PIXEL_ERRORS:
                if name in self.metrics:
                    values[name] = float(self._physical_error(name, block)[1])
            per_variable[variable] = values
        return per_variable

    def _physical_error(self, name: str, within: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame and overall MAE/MSE/RMSE of physical fields over the channels ``within`` (per-pixel means)."""
        if name == "rmse":
            groups = self._channel_groups(self.convention.rmse_pooled_over_channels, within)
            return self._rmse_of_groups(self._sums["sq"].cpu(), groups)
        sums = self._sums["abs" if name == "mae" else "sq"].cpu()[:, within]
        values = sums.sum(dim=1) / (self._count * self._pixels() * sums.shape[1])
        return values, values.mean()

    def _reduce(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-frame values (T,), overall value) of one metric, on CPU."""
        if name in PIXEL_ERRORS and self.physical:
            return self._physical_error(name)
        if name == "mae":
            values = self._error_mean(self._sums["abs"].cpu())
            return values, values.mean()
        if name == "mse":
            values = self._error_mean(self._sums["sq"].cpu())
            return values, values.mean()
        if name == "rmse":
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
    **options,
) -> dict[str, float]:
    """Overall metric values of one (B, T, C, H, W) pair, computed on ``pred``'s device.

    ``options``: ``physical``, ``value_range``, ``variables`` as for :class:`MetricAccumulator`.
    """
    if pred.ndim != 5:
        raise SvqbenchError(f"metrics need (B,T,C,H,W) tensors; got shape {tuple(pred.shape)}")
    accumulator = MetricAccumulator(
        metrics,
        convention,
        frames_out=pred.shape[1],
        device=pred.device,
        denormalise=denormalise,
        latitudes=latitudes,
        **options,
    )
    accumulator.update(pred, true)
    return accumulator.result()["overall"]
