"""``digits`` and ``digits_small``: embedded, offline Moving-MNIST-style benchmarks generated in seconds.

Each sequence shows digits drawn with OpenCV's Hershey fonts (several fonts, sizes, thicknesses,
slight rotations) bouncing inside the frame exactly like Moving MNIST (step 0.1 of the free range
per frame, reflection at the borders, overlay by maximum); fixed seeds per split, so every machine
prepares the same bytes.

- ``digits``: two 28x28 digits in 64x64, 10 input + 10 target frames (the Moving MNIST shape).
- ``digits_small``: one digit scaled to 16x16 in 32x32, 10 + 10 frames; the quickstart's dataset,
  small enough that a model trained for a few minutes on a CPU visibly tracks the digit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
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


def render_glyph(rng: np.random.Generator, size: int = GLYPH) -> np.ndarray:
    """One random digit as a (size, size) uint8 image, MNIST-like: fitted into a box of the 28x28
    cell and centred; smaller sizes shrink the whole cell."""
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
    if size != GLYPH:
        glyph = cv2.resize(glyph, (size, size), interpolation=cv2.INTER_AREA)
    return glyph


def trajectory(rng: np.random.Generator, frames: int = FRAMES, free: int = SIZE - GLYPH) -> np.ndarray:
    """(frames, 2) integer top-left corners (y, x) of a digit bouncing inside a free range of ``free`` pixels."""
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
    return (corners * free).astype(np.int64)


def render_sequence(rng: np.random.Generator, out: np.ndarray, digits: int = 2, glyph_size: int = GLYPH) -> None:
    """Draw one sequence into ``out`` of shape (T, 1, S, S), uint8, zero-initialised."""
    free = out.shape[-1] - glyph_size
    for _ in range(digits):
        glyph = render_glyph(rng, glyph_size)
        for t, (y, x) in enumerate(trajectory(rng, out.shape[0], free)):
            patch = out[t, 0, y : y + glyph_size, x : x + glyph_size]
            np.maximum(patch, glyph, out=patch)


@DATASETS.register("digits")
class Digits(DatasetSpec):
    digits: int = 2
    glyph_size: int = GLYPH
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

    def window_units(self, folder: Path, split: str, manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
        """Every window is a whole generated sequence: one unit each."""
        return np.arange(len(np.load(folder / split / "starts.npy")), dtype=np.int64), "sequence"

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        train: int = 10000,
        val: int = 1000,
        test: int = 1000,
        frames: str = "",
    ) -> dict[str, Any]:
        """``frames`` ``IN:OUT`` (default the dataset's 10:10) sets the window: sequences of IN + OUT frames, so a
        10 -> 10 model can be evaluated on ``--frames 10:30`` data over a 30-frame horizon."""
        info = self.windowed(frames)
        counts = {}
        for split, n in (("train", train), ("val", val), ("test", test)):
            if n < 1:
                raise SvqbenchError(f"option {split}={n}: the number of sequences must be >= 1")
            rng = np.random.default_rng(SPLIT_SEEDS[split])
            window, size = info.window, info.height
            frames = open_frames_for_writing(target, split, (n * window, 1, size, size), np.uint8)
            frames[:] = 0
            for i in range(n):
                render_sequence(rng, frames[i * window : (i + 1) * window], self.digits, self.glyph_size)
            frames.flush()
            del frames
            write_starts(target, split, np.arange(n) * window)
            counts[split] = {"sequences": n, "windows": n, "frames": n * window}
        return {"splits": counts, "info": info}


@DATASETS.register("digits_small")
class DigitsSmall(Digits):
    digits = 1
    glyph_size = 16
    info = DatasetInfo(
        name="digits_small",
        frames_in=10,
        frames_out=10,
        channels=1,
        height=32,
        width=32,
        metrics=("mae", "mse", "ssim", "psnr"),
        description="One Hershey-font digit (16x16) bouncing in 32x32 (Moving-MNIST rule), generated offline",
        protocol="svqbench built-in; seeds train=0 val=1 test=2",
    )
