"""Frames -> labelled GIF and PNG strip (pure functions; no windows, no plt.show).

Panels side by side: the observed clip continuing into the ground truth, the input clip
continuing into the prediction, and the absolute error. Float frames are clipped and
converted to uint8 here, once.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from svqbench.fileio import atomic_path

LABEL_HEIGHT = 14
MIN_PANEL = 96  # small frames are enlarged (nearest) so the GIF is readable


def to_display(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """(T, C, H, W) floats in [0, 1] -> (T, H, W, 3) uint8 (grey repeated; 2 or >3 channels: the first)."""
    x = frames.detach().float().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames, np.float32)
    x = np.clip(x, 0.0, 1.0)
    x = x[:, :3] if x.shape[1] == 3 else np.repeat(x[:, :1], 3, axis=1)
    return np.ascontiguousarray((x.transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8))


def _upscale(frames: np.ndarray) -> np.ndarray:
    scale = max(1, -(-MIN_PANEL // max(frames.shape[1:3])))
    return frames.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else frames


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """Put ``text`` in a black band above a (H, W, 3) panel."""
    band = np.zeros((LABEL_HEIGHT, panel.shape[1], 3), np.uint8)
    cv2.putText(band, text, (2, LABEL_HEIGHT - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, panel], axis=0)


def comparison_frames(inputs: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor) -> list[np.ndarray]:
    """inputs (T_in, C, H, W), truth and pred (T_out, C, H, W) -> T_in + T_out labelled images."""
    obs, gt, pr = (_upscale(to_display(x)) for x in (inputs, truth, pred))
    err = _upscale(to_display((truth.float() - pred.float()).abs()))
    blank = np.zeros_like(obs[0])
    images = []
    for t in range(len(obs)):
        panels = [_label(obs[t], f"input {t + 1}"), _label(obs[t], "input"), _label(blank, "|error|")]
        images.append(np.concatenate(panels, axis=1))
    for t in range(len(gt)):
        panels = [_label(gt[t], f"truth +{t + 1}"), _label(pr[t], f"prediction +{t + 1}"), _label(err[t], "|error|")]
        images.append(np.concatenate(panels, axis=1))
    return images


def strip(inputs: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    """Rows input / truth / prediction / |error|, columns time: one (H', W', 3) uint8 image."""
    rows = [to_display(inputs), to_display(truth), to_display(pred), to_display((truth.float() - pred.float()).abs())]
    width = max(len(r) for r in rows)
    blank = np.zeros_like(rows[0][0])
    grid = [np.concatenate(list(r) + [blank] * (width - len(r)), axis=1) for r in rows]
    labels = ["input", "truth", "prediction", "|error|"]
    return np.concatenate([_label(_upscale(g[None])[0], name) for g, name in zip(grid, labels)], axis=0)


def write_gif(images: list[np.ndarray], path: Path, fps: float = 4.0) -> Path:
    """Animated GIF of (H, W, 3) uint8 images, looping, written atomically."""
    pil = [Image.fromarray(im) for im in images]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def write_png(image: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
