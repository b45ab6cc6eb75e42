"""``mmnist``: Moving MNIST, 10->10, 1x64x64 (OpenSTL protocol).

test: the fixed ``mnist_test_seq.npy`` (20 x 10000 x 64 x 64 uint8): frames 0-9 in, 10-19 out.
train: generated on the fly from the 60,000 MNIST training digits (``train-images-idx3-ubyte.gz``),
10,000 sequences an epoch: two 28x28 digits at random positions and directions moving 0.1 of the
free range per frame, bouncing off the borders, overlaid with max. Sequence ``i`` of epoch ``e``
is drawn from a generator seeded with (seed, e, i), so an epoch is reproducible; the training loop
calls ``dataset.set_epoch(e)`` to get fresh sequences every epoch.
val: ``val`` sequences generated the same way once, with their own seed, and stored. They are drawn
from the last ``val_digits`` MNIST training digits (default 5000, MNIST's usual 55,000/5,000
validation split) and training from the others, so no digit image is in both.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.data.digits import trajectory
from svqbench.data.download import Source, fetch, join_url
from svqbench.errors import SvqbenchError

SIZE = 64
DIGIT = 28
FRAMES = 20
DIGITS_PER_SEQUENCE = 2
VAL_STREAM = 1 << 20  # epoch number of the stored val sequences: never reached by training
DIGITS = Source(
    "train-images-idx3-ubyte.gz",
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
)
TEST = Source(
    "mnist_test_seq.npy",
    "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy",
    md5="be083ec986bfe91a449d63653c411eb2",
)


def read_idx_images(path: Path) -> np.ndarray:
    """MNIST images from an idx3-ubyte.gz file: (N, 28, 28) uint8."""
    try:
        with gzip.open(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise SvqbenchError(f"{path}: not a readable gzip file ({e})") from None
    header = np.frombuffer(blob[:16], ">u4") if len(blob) >= 16 else np.zeros(4, ">u4")
    magic, count, rows, cols = (int(v) for v in header)
    if magic != 2051 or len(blob) != 16 + count * rows * cols:
        raise SvqbenchError(f"{path}: not an idx3-ubyte image file (bad header or truncated)")
    return np.frombuffer(blob, np.uint8, offset=16).reshape(count, rows, cols)


def render(rng: np.random.Generator, digits: np.ndarray, out: np.ndarray) -> None:
    """Draw one sequence into zeroed ``out`` (FRAMES, 1, 64, 64) uint8 from (N, 28, 28) ``digits``."""
    for _ in range(DIGITS_PER_SEQUENCE):
        digit = digits[rng.integers(len(digits))]
        for t, (y, x) in enumerate(trajectory(rng, len(out))):
            patch = out[t, 0, y : y + DIGIT, x : x + DIGIT]
            np.maximum(patch, digit, out=patch)


class MovingMNISTTrain(Dataset):
    """Training sequences generated on the fly; items (inputs (10,1,64,64), targets (10,1,64,64)) in [0, 1]."""

    def __init__(self, digits_file: Path, info: DatasetInfo, length: int, seed: int):
        self.digits = np.load(digits_file, mmap_mode="r")
        self.info = info
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = np.zeros((FRAMES, 1, SIZE, SIZE), np.uint8)
        render(np.random.default_rng([self.seed, self.epoch, i]), self.digits, clip)
        x = torch.from_numpy(clip).float().div_(255.0)
        return x[: self.info.frames_in], x[self.info.frames_in :]


@DATASETS.register("mmnist")
class MovingMNIST(DatasetSpec):
    info = DatasetInfo(
        name="mmnist",
        frames_in=10,
        frames_out=10,
        channels=1,
        height=SIZE,
        width=SIZE,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="Moving MNIST: two MNIST digits bouncing in 64x64",
        protocol="OpenSTL Moving MNIST: generated training sequences, fixed mnist_test_seq.npy test set; "
        "val from held-out digits",
    )
    format_version = 2  # val drawn from digits that training never draws

    def window_units(self, folder: Path, split: str, manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
        """Every window is a whole sequence: one unit each."""
        return np.arange(len(self.open(folder, split, manifest)), dtype=np.int64), "sequence"

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        train_length: int = 10000,
        val: int = 1000,
        seed: int = 42,
        val_digits: int = 5000,
        url: str = "",
    ) -> dict[str, Any]:
        """``url``: a mirror folder (with or without a trailing ``/``) holding both source files."""
        if train_length < 1 or val < 1:
            raise SvqbenchError(f"options train_length={train_length}, val={val}: need positive counts")
        digits_path, digits_record = fetch(DIGITS, target, src, join_url(url, DIGITS.filename) if url else "")
        test_path, test_record = fetch(TEST, target, src, join_url(url, TEST.filename) if url else "")
        digits = read_idx_images(digits_path)
        if not 0 < val_digits < len(digits):
            raise SvqbenchError(
                f"option val_digits={val_digits}: need 0 < val_digits < {len(digits)} (the MNIST digits)"
            )
        train_digits, held_digits = digits[:-val_digits], digits[-val_digits:]
        (target / "train").mkdir(parents=True)
        np.save(target / "train" / "digits.npy", train_digits)

        frames = open_frames_for_writing(target, "val", (val * FRAMES, 1, SIZE, SIZE), np.uint8)
        frames[:] = 0
        for i in range(val):
            render(np.random.default_rng([seed, VAL_STREAM, i]), held_digits, frames[i * FRAMES : (i + 1) * FRAMES])
        frames.flush()
        del frames
        write_starts(target, "val", np.arange(val) * FRAMES)

        sequences = self._write_test(target, test_path)
        splits = {
            "train": {"sequences_per_epoch": train_length, "digits": len(train_digits)},
            "val": {"windows": val, "frames": val * FRAMES, "digits": val_digits},
            "test": {"windows": sequences, "frames": sequences * FRAMES},
        }
        return {"sources": [digits_record, test_record], "splits": splits, "train_length": train_length, "seed": seed}

    @staticmethod
    def _write_test(target: Path, path: Path) -> int:
        try:
            fixed = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise SvqbenchError(f"{path}: not a readable .npy file ({e})") from None
        if fixed.ndim != 4 or fixed.shape[0] != FRAMES or fixed.shape[2:] != (SIZE, SIZE) or fixed.dtype != np.uint8:
            raise SvqbenchError(f"{path}: expected (20, N, 64, 64) uint8, got {fixed.shape} {fixed.dtype}")
        sequences = fixed.shape[1]
        frames = open_frames_for_writing(target, "test", (sequences * FRAMES, 1, SIZE, SIZE), np.uint8)
        for first in range(0, sequences, 500):
            block = np.asarray(fixed[:, first : first + 500]).transpose(1, 0, 2, 3)  # (n, 20, 64, 64)
            frames[first * FRAMES : (first + len(block)) * FRAMES, 0] = block.reshape(-1, SIZE, SIZE)
        frames.flush()
        del frames
        write_starts(target, "test", np.arange(sequences) * FRAMES)
        return sequences

    def open(self, folder: Path, split: str, manifest: dict[str, Any]) -> Dataset:
        if split == "train":
            info = DatasetInfo.from_dict(manifest["info"])
            return MovingMNISTTrain(folder / "train" / "digits.npy", info, manifest["train_length"], manifest["seed"])
        return super().open(folder, split, manifest)
