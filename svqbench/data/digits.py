"""``digits``: an embedded, offline Moving-MNIST-style benchmark generated in seconds.

Each sequence shows two digits drawn with OpenCV's Hershey fonts (several fonts, sizes,
thicknesses, slight rotations) bouncing inside a 64x64 frame exactly like Moving MNIST
(step 0.1 of the free range per frame, reflection at the borders, overlay by maximum).
10 input + 10 target frames; fixed seeds per split, so every machine prepares the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svqbench.data import DATASETS
from svqbench.data.base import DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.errors import SvqbenchError

SIZE = 64
GLYPH = 28
FRAMES = 20
STEP = 0.1  # fraction of the free range moved per frame, as in Moving MNIST
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


def render_glyph(rng: np.random.Generator) -> np.ndarray:
    """One random digit as a (28, 28) uint8 image, MNIST-like: fitted into a box and centred."""
    digit = str(rng.integers(10))
    font = FONTS[rng.integers(len(FONTS))]
    thickness = int(rng.integers(4, 9))
    canvas = np.zeros((96, 96), np.uint8)
    (w, h), base = cv2.getTextSize(digit, font, 2.0, thickness)
    cv2.putText(canvas, digit, ((96 - w) // 2, (96 + h) // 2), font, 2.0, 255, thickness, cv2.LINE_AA)
    angle = float(rng.uniform(-15, 15))
    rotation = cv2.getRotationMatrix2D((48, 48), angle, 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (96, 96), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(canvas)
    crop = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    box = int(rng.integers(16, 23))
    scale = box / max(crop.shape)
    ch, cw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    crop = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA)
    glyph = np.zeros((GLYPH, GLYPH), np.uint8)
    top, left = (GLYPH - ch) // 2, (GLYPH - cw) // 2
    glyph[top : top + ch, left : left + cw] = crop
    return glyph


def trajectory(rng: np.random.Generator, frames: int = FRAMES) -> np.ndarray:
    """(frames, 2) integer top-left corners (y, x) of a digit bouncing inside the frame."""
    y, x = rng.random(2)
    theta = rng.random() * 2 * np.pi
    vy, vx = np.sin(theta), np.cos(theta)
    corners = np.empty((frames, 2))
    for t in range(frames):
        y, x = y + vy * STEP, x + vx * STEP
        if not 0.0 < y < 1.0:
            y, vy = min(max(y, 0.0), 1.0), -vy
        if not 0.0 < x < 1.0:
            x, vx = min(max(x, 0.0), 1.0), -vx
        corners[t] = y, x
    return (corners * (SIZE - GLYPH)).astype(np.int64)


def render_sequence(rng: np.random.Generator, out: np.ndarray, digits: int = 2) -> None:
    """Draw one sequence into ``out`` of shape (FRAMES, 1, 64, 64), uint8, zero-initialised."""
    for _ in range(digits):
        glyph = render_glyph(rng)
        for t, (y, x) in enumerate(trajectory(rng, out.shape[0])):
            patch = out[t, 0, y : y + GLYPH, x : x + GLYPH]
            np.maximum(patch, glyph, out=patch)


@DATASETS.register("digits")
class Digits(DatasetSpec):
    info = DatasetInfo(
        name="digits",
        frames_in=10,
        frames_out=10,
        channels=1,
        height=SIZE,
        width=SIZE,
        metrics=("mae", "mse", "ssim", "psnr"),
        description="Two Hershey-font digits bouncing in 64x64 (Moving-MNIST rule), generated offline",
        protocol="svqbench built-in; seeds train=0 val=1 test=2",
    )

    def prepare(
        self, target: Path, src: Path | None, *, train: int = 10000, val: int = 1000, test: int = 1000
    ) -> dict[str, Any]:
        counts = {}
        for split, n in (("train", train), ("val", val), ("test", test)):
            if n < 1:
                raise SvqbenchError(f"option {split}={n}: the number of sequences must be >= 1")
            rng = np.random.default_rng(SPLIT_SEEDS[split])
            frames = open_frames_for_writing(target, split, (n * FRAMES, 1, SIZE, SIZE), np.uint8)
            frames[:] = 0
            for i in range(n):
                render_sequence(rng, frames[i * FRAMES : (i + 1) * FRAMES])
            frames.flush()
            del frames
            write_starts(target, split, np.arange(n) * FRAMES)
            counts[split] = {"sequences": n, "windows": n, "frames": n * FRAMES}
        return {"splits": counts}
