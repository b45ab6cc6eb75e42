"""Frames -> labelled GIF and PNG strip (pure functions; no windows, no plt.show).

One run: panels side by side, the observed clip continuing into the ground truth, the input clip
continuing into the prediction, and the absolute error. Several runs on one sample
(``compare_frames`` / ``compare_strip``): one row per run, labelled with its name, showing its
prediction and its |prediction - truth| map (one colour scale shared by all runs), under the
input and truth rows, with frame numbers. Float frames are clipped and converted to uint8 here, once.
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


ROW_LABEL_SCALE = 0.45
NUMBER_SCALE = 0.4


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _put(image: np.ndarray, text: str, x: int, baseline: int, scale: float) -> None:
    cv2.putText(image, text, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def error_maps(truth: torch.Tensor, preds: list[torch.Tensor]) -> tuple[list[np.ndarray], float]:
    """|pred - truth| averaged over channels, each (T, C, H, W) -> (T, H, W, 3) uint8 colour maps on one scale.

    Predictions are clipped to [0, 1] first, as they are displayed. The scale runs from 0 to the largest
    error of any run (at least 1/255), so rows compare by colour; returns the maps and that largest error.
    """
    errors = [(p.float().clamp(0, 1) - truth.float()).abs().mean(dim=1).cpu().numpy() for p in preds]
    top = max(1.0 / 255.0, max(float(e.max()) for e in errors))
    maps = []
    for error in errors:
        grey = np.clip(error / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        maps.append(
            np.stack([cv2.cvtColor(cv2.applyColorMap(g, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for g in grey])
        )
    return maps, top


def _row_label_column(labels: list[str], height: int) -> tuple[int, list[np.ndarray]]:
    """Width of the left label column and one (height, width, 3) label cell per label (lines split on newline)."""
    width = 8 + max(_text_width(line, ROW_LABEL_SCALE) for label in labels for line in label.split("\n"))
    cells = []
    for label in labels:
        cell = np.zeros((height, width, 3), np.uint8)
        lines = label.split("\n")
        top = max(14, (height - 16 * len(lines)) // 2 + 12)
        for i, line in enumerate(lines):
            _put(cell, line, 4, top + 16 * i, ROW_LABEL_SCALE)
        cells.append(cell)
    return width, cells


def compare_strip(inputs: torch.Tensor, truth: torch.Tensor, runs: list[tuple[str, torch.Tensor]]) -> np.ndarray:
    """One PNG image: a frame-number header, rows input / truth, then per run its prediction and |error| rows.

    inputs (T_in, C, H, W), truth (T_out, C, H, W), runs [(label, prediction (T_out, C, H, W))]; columns are
    frames: inputs numbered 1..T_in, predicted frames +1..+T_out.
    """
    maps, top = error_maps(truth, [pred for _, pred in runs])
    rows = [
        ("input", to_display(inputs), [f"{t + 1}" for t in range(len(inputs))]),
        ("truth", to_display(truth), [f"+{t + 1}" for t in range(len(truth))]),
    ]
    for (label, pred), error in zip(runs, maps):
        rows.append((label, to_display(pred), None))
        rows.append((f"|error|\nscale 0-{top:.2f}", error, None))
    columns = max(len(frames) for _, frames, _ in rows)
    tile = _upscale(rows[0][1][:1])[0].shape[:2]
    label_width, label_cells = _row_label_column([label for label, _, _ in rows], tile[0])
    lines = []
    for (_, frames, numbers), label_cell in zip(rows, label_cells):
        if numbers is not None:  # a header band of frame numbers above input and truth rows
            band = np.zeros((LABEL_HEIGHT + 2, label_width + columns * tile[1], 3), np.uint8)
            for column, number in enumerate(numbers):
                _put(band, number, label_width + column * tile[1] + 3, LABEL_HEIGHT - 1, NUMBER_SCALE)
            lines.append(band)
        tiles = list(_upscale(frames)) + [np.zeros((*tile, 3), np.uint8)] * (columns - len(frames))
        lines.append(np.concatenate([label_cell, *tiles], axis=1))
    return np.concatenate(lines, axis=0)


def compare_frames(inputs: torch.Tensor, truth: torch.Tensor, runs: list[tuple[str, torch.Tensor]]) -> list[np.ndarray]:
    """GIF frames: T_in input frames, then T_out predicted ones; rows truth (the clip), then one per run
    (its prediction | its |error|), each frame titled with its number."""
    maps, top = error_maps(truth, [pred for _, pred in runs])
    clip = _upscale(to_display(torch.cat([inputs.float().cpu(), truth.float().cpu()])))
    preds = [_upscale(to_display(pred)) for _, pred in runs]
    errors = [_upscale(error) for error in maps]
    blank = np.zeros_like(clip[0])
    label_width, label_cells = _row_label_column(["truth", *(label for label, _ in runs)], clip.shape[1])
    width = label_width + 2 * clip.shape[2]
    frames_in = len(inputs)
    images = []
    for t in range(len(clip)):
        predicted = t >= frames_in
        title = np.zeros((LABEL_HEIGHT + 4, width, 3), np.uint8)
        _put(
            title,
            f"input frame {t + 1}" if not predicted else f"predicted frame +{t - frames_in + 1}",
            4,
            LABEL_HEIGHT,
            ROW_LABEL_SCALE,
        )
        _put(title, f"|error| 0-{top:.2f}", label_width + clip.shape[2] + 4, LABEL_HEIGHT, ROW_LABEL_SCALE)
        lines = [title, np.concatenate([label_cells[0], clip[t], blank], axis=1)]
        for cell, pred, error in zip(label_cells[1:], preds, errors):
            shown = (pred[t - frames_in], error[t - frames_in]) if predicted else (blank, blank)
            lines.append(np.concatenate([cell, *shown], axis=1))
        images.append(np.concatenate(lines, axis=0))
    return images


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
