"""What every dataset shares: its facts, the prepared-folder format, and the window loader.

A prepared dataset lives in ``ROOT/NAME/``::

    manifest.json          facts, options, sources, counts; written last (its presence = complete)
    SPLIT/frames.npy       (F, C, H, W) frames, uint8 (video) or float16/float32 (physical fields)
    SPLIT/starts.npy       (N,) int64: first frame index of each window of frames_in + frames_out frames
    SPLIT/units.npy        (N,) int64, video datasets: the source video of each window (bootstrap unit)

Loaders memory-map ``frames.npy`` and read one window at a time, so opening a split costs
almost no RAM whatever its size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from svqbench.errors import SvqbenchError
from svqbench.registry import Registry

MANIFEST = "manifest.json"
UNITS = "units.npy"
# Default bootstrap blocks span this many window lengths: neighbouring blocks still share frames at their edges,
# and blocks of one window length leave about a third of the variance of stride-1 windows out (95% intervals
# then cover ~88%; two lengths: ~91-95%, tests/test_compare.py).
BLOCK_WINDOWS = 2
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one dataset, stated once, in its module."""

    name: str
    frames_in: int
    frames_out: int
    channels: int
    height: int
    width: int
    metrics: tuple[str, ...] = ("mae", "mse", "ssim", "psnr")
    splits: tuple[str, ...] = ("train", "val", "test")
    physical: bool = False  # values are z-scored physical fields: metrics de-normalise first
    # physical variables, each an equal contiguous block of channels (per-variable metrics)
    variables: tuple[str, ...] = ()
    description: str = ""
    protocol: str = ""
    # the channels a model predicts (indices into the input channels) when not all: targets read out only those
    targets: tuple[int, ...] = ()

    @property
    def window(self) -> int:
        return self.frames_in + self.frames_out

    @property
    def shape_in(self) -> tuple[int, int, int, int]:
        """(T_in, C, H, W) of one input clip."""
        return (self.frames_in, self.channels, self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("metrics", "splits", "variables", "targets"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


class DatasetSpec:
    """One benchmark: subclasses set ``info`` and implement ``prepare``.

    ``prepare(target, src, **options)`` fills the empty folder ``target`` (splits via
    :func:`write_split`) and returns extra manifest entries (sources, hashes, counts), with
    ``"val_held_out": False`` when an option puts the ``val`` windows in ``train`` too.
    ``open`` returns the torch Dataset of a split; the default reads stored windows.
    """

    info: ClassVar[DatasetInfo]
    # Raised when a new svqbench prepares this dataset's splits differently; folders prepared with a
    # lower value are refused (re-prep) rather than silently used.
    format_version: ClassVar[int] = FORMAT_VERSION
    # False when prep options decide the clip shape (frames, size): ``info`` is then only a default.
    fixed_shape: ClassVar[bool] = True
    # True when ``--src`` names a file (or a store) rather than a folder of source files
    src_is_file: ClassVar[bool] = False

    def prepare(self, target: Path, src: Path | None, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def windowed(self, frames: str) -> DatasetInfo:
        """``info`` with the window lengths of a ``--frames IN:OUT`` option (unchanged when empty): how a window-
        building prep takes longer (or shorter) windows than the recipe's, e.g. to evaluate past a horizon."""
        if not frames:
            return self.info
        from svqbench.data.videos import parse_frames

        frames_in, frames_out = parse_frames(frames)
        return dataclasses.replace(self.info, frames_in=frames_in, frames_out=frames_out)

    # The independent unit that SPLIT/units.npy numbers (e.g. "source video"); "" when the dataset stores none.
    unit: ClassVar[str] = ""

    def open(self, folder: Path, split: str, manifest: dict[str, Any]) -> Dataset:
        return WindowDataset(folder / split, DatasetInfo.from_dict(manifest["info"]), manifest)

    def window_units(self, folder: Path, split: str, manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
        """(units (N_windows,) int64, what a unit is): windows of one unit share frames or a source; different
        units are treated as independent by the bootstrap.

        Default: the stored ``units.npy`` when the dataset names its unit, else blocks of consecutive windows
        whose starts lie within :data:`BLOCK_WINDOWS` window lengths (with no stored starts: blocks of that many
        times ``window`` consecutive windows, as for stride-1 windows).
        """
        stored = folder / split / UNITS
        if self.unit and stored.is_file():
            return np.load(stored).astype(np.int64), self.unit
        span = BLOCK_WINDOWS * DatasetInfo.from_dict(manifest["info"]).window
        starts_file = folder / split / "starts.npy"
        if starts_file.is_file():
            starts = np.load(starts_file).astype(np.int64)
            first = starts.min() if len(starts) else 0
            return (starts - first) // span, f"block of windows starting within {span} frames"
        count = len(self.open(folder, split, manifest))
        return np.arange(count, dtype=np.int64) // span, f"block of {span} consecutive windows"


def write_split(target: Path, split: str, frames: np.ndarray, starts: np.ndarray) -> dict[str, int]:
    """Store one split: ``frames`` (F, C, H, W) and window ``starts`` (N,). Returns its counts."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be (F, C, H, W), got shape {frames.shape}")
    out = target / split
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "frames.npy", frames)
    np.save(out / "starts.npy", np.asarray(starts, dtype=np.int64))
    return {"frames": int(frames.shape[0]), "windows": int(len(starts))}


def open_frames_for_writing(target: Path, split: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    """A writable (F, C, H, W) ``frames.npy`` memmap, for splits too large to build in RAM."""
    out = target / split
    out.mkdir(parents=True, exist_ok=True)
    frames = np.lib.format.open_memmap(out / "frames.npy", mode="w+", dtype=dtype, shape=shape)
    with open(out / "frames.npy", "r+b") as f:  # reserve the blocks now: a full disk is an error here, not a
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)  # SIGBUS while filling the memmap
    return frames


def write_starts(target: Path, split: str, starts: np.ndarray) -> None:
    np.save(target / split / "starts.npy", np.asarray(starts, dtype=np.int64))


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete prepared folder, or None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SvqbenchError(f"{path}: not valid JSON ({e}); re-run the prep with --force") from None
    if not manifest.get("complete"):
        return None
    return manifest


def check_starts(path: Path, starts: np.ndarray, frames: int, window: int) -> None:
    """Every window start of a split (N,) must be an integer with its whole window inside the frames."""
    if starts.ndim != 1 or not np.issubdtype(starts.dtype, np.integer):
        raise SvqbenchError(f"{path}: expected a 1-D integer array of window starts, got {starts.dtype} {starts.shape}")
    if len(starts) and (starts.min() < 0 or starts.max() + window > frames):
        bad = int(starts[(starts < 0) | (starts + window > frames)][0])
        raise SvqbenchError(
            f"{path}: window start {bad} with {window} frames reaches past the split's {frames} frames (the file was "
            "altered or belongs to other frames); re-run the prep with --force"
        )


class WindowDataset(Dataset):
    """Windows of a prepared split, read lazily from a memory-mapped frame array.

    Item ``i`` is ``(inputs, targets)`` of shapes ``(T_in, C, H, W)`` and ``(T_out, C, H, W)``,
    float32; uint8 frames are scaled to [0, 1], float frames are returned as stored.
    """

    def __init__(self, split_dir: Path, info: DatasetInfo, manifest: dict[str, Any] | None = None):
        if not (split_dir / "frames.npy").is_file():
            raise SvqbenchError(f"{split_dir}: split not prepared (no frames.npy)")
        self.info = info
        self.manifest = manifest or {}
        self.frames = np.load(split_dir / "frames.npy", mmap_mode="r")
        self.starts = np.load(split_dir / "starts.npy")
        check_starts(split_dir / "starts.npy", self.starts, len(self.frames), info.window)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        clip = np.asarray(self.frames[s : s + self.info.window])
        x = torch.from_numpy(clip.astype(np.float32))
        if clip.dtype == np.uint8:
            x = x.div_(255.0)
        targets = x[self.info.frames_in :]
        return x[: self.info.frames_in], targets[:, list(self.info.targets)] if self.info.targets else targets


@dataclass
class Normalisation:
    """Per-channel z-score statistics (of the training split) carried with physical datasets."""

    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C, H, W) z-scored -> physical units."""
        shape = (1, 1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x * std + mean


# the one dataset registry: the built-in dataset modules register here as svqbench.data imports them;
# installed packages join through entry points of this group
DATASETS: Registry[type[DatasetSpec]] = Registry("dataset", group="svqbench.datasets", base=DatasetSpec)
