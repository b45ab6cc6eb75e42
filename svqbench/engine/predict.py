"""Predictions from a trained run: for a test sample (render) or for the user's own clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from svqbench import data
from svqbench.data.base import read_manifest
from svqbench.data.video import FrameTransform, decode_video
from svqbench.data.videos import VIDEO_FIT, VIDEO_INTERPOLATION
from svqbench.engine.runs import LoadedRun
from svqbench.errors import SvqbenchError
from svqbench.models import forecast


@torch.no_grad()
def predict_sample(run: LoadedRun, index: int, split: str = "test", data_root: Path | None = None):
    """(inputs (T_in,C_out,H,W), truth (T_out,C_out,H,W), prediction (T_out,C_out,H,W)) for one window of a split;
    with target channels, the inputs shown are their target channels (what the truth and prediction continue)."""
    dataset = data.create(run.recipe.dataset, split, data_root)
    if not 0 <= index < len(dataset):
        raise SvqbenchError(f"--index {index}: split {split!r} has {len(dataset)} samples (0..{len(dataset) - 1})")
    inputs, truth = dataset[index]
    pred = forecast(run.model, inputs[None].to(run.device), run.info.frames_out).frames[0]
    shown = inputs[:, list(run.info.targets)] if run.info.targets else inputs
    return shown, truth, pred.float().cpu()


def run_label(run: LoadedRun) -> str:
    """Two lines naming a run in figures: its recipe (``*`` when --set changed it) and its folder."""
    marked = "*" if run.recipe.overrides else ""
    return f"{run.recipe.name or run.recipe.model_name}{marked}\n{run.dir.name}"


@torch.no_grad()
def predict_runs(
    run_dirs: list[Path], device: torch.device, index: int, split: str = "test", data_root: Path | None = None
):
    """Several runs on one sample: (inputs, truth, [(label, prediction)]), shapes as :func:`predict_sample`.

    The runs must forecast the same dataset; each is loaded, used and released in turn.
    """
    if not run_dirs:
        raise SvqbenchError("--compare needs at least one run directory")
    inputs = truth = None
    dataset = None
    rows = []
    for run_dir in run_dirs:
        run = LoadedRun(run_dir, device)
        if dataset is not None and run.recipe.dataset != dataset:
            raise SvqbenchError(
                f"{run.dir}: forecasts {run.recipe.dataset!r}, the first run {dataset!r}; compare runs of one dataset"
            )
        dataset = run.recipe.dataset
        sample_inputs, sample_truth, pred = predict_sample(run, index, split, data_root)
        inputs, truth = (sample_inputs, sample_truth) if inputs is None else (inputs, truth)
        rows.append((run_label(run), pred))
    return inputs, truth, rows


def read_clip(path: Path, frames: int, channels: int, height: int, width: int, every: int = 1) -> torch.Tensor:
    """The last ``frames`` frames of a video file, prepared exactly as ``prep videos`` prepares training
    clips (scaled to cover height x width, centre cut, luma for 1 channel, every ``every``-th frame):
    (frames, C, H, W) in [0, 1]."""
    if channels not in (1, 3):
        raise SvqbenchError(f"{path}: the model expects {channels}-channel frames; videos give 1 or 3")
    transform = FrameTransform(
        height, width, channels=channels, fit=VIDEO_FIT, interpolation=VIDEO_INTERPOLATION, every=every
    )
    clip = decode_video(path, transform)
    if len(clip) < frames:
        raise SvqbenchError(f"{path}: has {len(clip)} frames; the model needs at least {frames} input frames")
    return torch.from_numpy(clip[-frames:].astype(np.float32) / 255.0)


def frame_step(dataset: str, data_root: Path | None = None) -> int:
    """The ``every`` option a ``videos`` dataset was prepared with (1 when unknown or not prepared here)."""
    root = Path(data_root) if data_root is not None else data.default_root()
    manifest = read_manifest(root / dataset) or {}
    return int(manifest.get("options", {}).get("every", 1))


@torch.no_grad()
def predict_clip(
    run: LoadedRun, path: Path, frames_out: int | None = None, data_root: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (T_in,C,H,W), prediction (T_out,C,H,W)) continuing the user's video ``path``."""
    info = run.info
    every = frame_step(run.recipe.dataset, data_root)
    inputs = read_clip(path, info.frames_in, info.channels, info.height, info.width, every)
    pred = forecast(run.model, inputs[None].to(run.device), frames_out or info.frames_out).frames[0]
    return inputs, pred.float().cpu()
