"""Tiny generated stand-ins for real dataset sources, written in each source's own format."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np


def write_avi(path: Path, frames: int, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """An MJPG AVI of ``frames`` frames of (width, height) ``size`` with a moving bright square."""
    rng = np.random.default_rng(seed)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
    base = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    for t in range(frames):
        frame = base.copy()
        x = t % max(1, width - 8)
        frame[height // 3 : height // 3 + 8, x : x + 8] = 230
        writer.write(frame)
    writer.release()
    return path


def kth_archives(folder: Path, videos: dict[str, list[tuple[int, int]]]) -> dict[tuple[int, str], int]:
    """Write ``<action>.zip`` for every action: ``videos[action]`` lists (person, frames).

    Returns {(person, action): frames}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for action, entries in videos.items():
        with zipfile.ZipFile(folder / f"{action}.zip", "w") as zf:
            for person, frames in entries:
                name = f"person{person:02d}_{action}_d1_uncomp.avi"
                avi = write_avi(folder / name, frames, seed=person)
                zf.write(avi, name)
                avi.unlink()
                made[(person, action)] = frames
    return made
