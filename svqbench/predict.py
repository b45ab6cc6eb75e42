"""Predictions from a trained run: for a test sample (render) or for the user's own clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from svqbench import data
from svqbench.errors import SvqbenchError
from svqbench.models import forecast
from svqbench.runs import LoadedRun


@torch.no_grad()
def predict_sample(run: LoadedRun, index: int, split: str = "test", data_root: Path | None = None):
    """(inputs (T_in,C,H,W), truth (T_out,C,H,W), prediction (T_out,C,H,W)) for one window of a split."""
    dataset = data.create(run.recipe.dataset, split, data_root)
    if not 0 <= index < len(dataset):
        raise SvqbenchError(f"--index {index}: split {split!r} has {len(dataset)} samples (0..{len(dataset) - 1})")
    inputs, truth = dataset[index]
    pred = forecast(run.model, inputs[None].to(run.device), run.info.frames_out).frames[0]
    return inputs, truth, pred.float().cpu()


def run_label(run: LoadedRun) -> str:
    """Two lines naming a run in figures: its recipe (``*`` when --set changed it) and its folder."""
    marked = "*" if run.recipe.overrides else ""
    return f"{run.recipe.name or run.recipe.model_name}{marked}\n{run.dir.name}"


@torch.no_grad()
def predict_runs(run_dirs: list[Path], device: torch.device, index: int, split: str = "test", data_root: Path | None = None):
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
            raise SvqbenchError(f"{run.dir}: forecasts {run.recipe.dataset!r}, the first run {dataset!r}; compare runs of one dataset")
        dataset = run.recipe.dataset
        sample_inputs, sample_truth, pred = predict_sample(run, index, split, data_root)
        inputs, truth = (sample_inputs, sample_truth) if inputs is None else (inputs, truth)
        rows.append((run_label(run), pred))
    return inputs, truth, rows


def read_clip(path: Path, frames: int, channels: int, height: int, width: int) -> torch.Tensor:
    """The last ``frames`` frames of a video file, resized: (frames, channels, height, width) in [0, 1]."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SvqbenchError(f"{path}: cannot open as a video (any format OpenCV reads)")
    images = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        if channels == 1:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[..., None]
        elif channels == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        else:
            raise SvqbenchError(f"{path}: the model expects {channels}-channel frames; videos give 1 or 3")
        images.append(frame)
    capture.release()
    if len(images) < frames:
        raise SvqbenchError(f"{path}: has {len(images)} frames; the model needs at least {frames} input frames")
    clip = np.stack(images[-frames:]).transpose(0, 3, 1, 2)
    return torch.from_numpy(clip.astype(np.float32) / 255.0)


@torch.no_grad()
def predict_clip(run: LoadedRun, path: Path, frames_out: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (T_in,C,H,W), prediction (T_out,C,H,W)) continuing the user's video ``path``."""
    info = run.info
    inputs = read_clip(path, info.frames_in, info.channels, info.height, info.width)
    pred = forecast(run.model, inputs[None].to(run.device), frames_out or info.frames_out).frames[0]
    return inputs, pred.float().cpu()
