"""``kitticaltech``: train on KITTI, test on Caltech Pedestrian, 10->1, 3x128x160 RGB (OpenSTL protocol).

train/val: PredNet's hickle files (``X_train.hkl``/``sources_train.hkl``, ``X_val.hkl``/``sources_val.hkl``:
frames (N, 128, 160, 3) uint8 RGB and the recording each frame comes from).
test: Caltech Pedestrian ``set06``-``set10`` videos (Norpix ``.seq`` or any video format), every 3rd
frame (the 3rd, 6th, ...), scaled to height 128 keeping the aspect ratio and centre-cropped to 160
columns, kept in RGB order (OpenSTL reads Caltech in OpenCV's BGR order, a quirk not copied).
Windows: 11 frames inside one recording, non-overlapping, scanned backwards from its last frame.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data import DATASETS
from svqbench.data.archives import extract
from svqbench.data.base import DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.data.download import Source, fetch, find_in
from svqbench.data.video import FrameTransform, backward_window_starts, decode_videos, write_video_split
from svqbench.errors import SvqbenchError

KITTI = Source("kitti_data.zip", "https://www.dropbox.com/s/rpwlnn6j39jjme4/kitti_data.zip?dl=1")
CALTECH = Source("data_and_labels.zip", "https://data.caltech.edu/records/f6rph-90m20/files/data_and_labels.zip?download=1")
TEST_SETS = ("set06", "set07", "set08", "set09", "set10")
CALTECH_VIDEO = re.compile(r"(^|/)(set0[6-9]|set10)/[^/]+\.(seq|avi|mp4|mkv|mov)$", re.IGNORECASE)
HEIGHT, WIDTH = 128, 160
BLOCK = 1024


def read_hickle(path: Path, want_strings: bool):
    """The array (lazy h5py dataset) or string list stored in a hickle file of any hickle version.

    Hickle's layout changed between versions; the payload is always the largest numeric (or
    string) HDF5 dataset in the file, so that is what is read.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as e:
        raise SvqbenchError(f"{path}: not a readable hickle/HDF5 file ({e})") from None
    found = []
    handle.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    if want_strings:
        return _read_names(path, found)
    arrays = [d for d in found if d.dtype.kind in "uif" and d.ndim == 4]
    if not arrays:
        raise SvqbenchError(f"{path}: holds no (N, H, W, 3) frame array")
    return max(arrays, key=lambda d: d.size)


def _read_names(path: Path, datasets: list) -> list[str]:
    """The list of source names: via hickle itself, else the one string dataset of an old-format file."""
    import hickle

    try:
        names = hickle.load(str(path))
    except Exception:  # files from hickle 2/3 are not always readable by newer hickle
        strings = [d for d in datasets if d.dtype.kind in "SOU" and d.ndim == 1]
        if len(strings) != 1:
            raise SvqbenchError(f"{path}: holds no readable list of source names") from None
        names = strings[0][()]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def write_kitti_split(target: Path, split: str, frames_file: Path, sources_file: Path, window: int) -> dict[str, int]:
    """Store a KITTI split from its hickle pair: frames (F, 3, 128, 160) uint8 and its windows."""
    frames_in = read_hickle(frames_file, want_strings=False)
    sources = read_hickle(sources_file, want_strings=True)
    if frames_in.shape[1:] != (HEIGHT, WIDTH, 3) or len(sources) != frames_in.shape[0]:
        raise SvqbenchError(
            f"{frames_file}: frames {frames_in.shape} and {len(sources)} source names; expected (N, 128, 160, 3) and N"
        )
    frames = open_frames_for_writing(target, split, (frames_in.shape[0], 3, HEIGHT, WIDTH), np.uint8)
    for first in range(0, frames_in.shape[0], BLOCK):
        block = np.asarray(frames_in[first : first + BLOCK])
        if block.dtype != np.uint8:  # float copies of the release hold 0-255 or 0-1 values
            block = np.clip(block * (255.0 if block.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
        frames[first : first + len(block)] = block.transpose(0, 3, 1, 2)
    frames.flush()
    del frames
    names = np.asarray(sources)
    run_starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    run_ends = np.r_[run_starts[1:], len(names)]
    starts = np.concatenate(
        [start + backward_window_starts(end - start, window, window) for start, end in zip(run_starts, run_ends)]
    )
    write_starts(target, split, starts)
    return {"frames": len(names), "windows": int(len(starts)), "recordings": len(run_starts)}


def kitti_files(target: Path, src: Path | None, url: str) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    names = ("X_train.hkl", "sources_train.hkl", "X_val.hkl", "sources_val.hkl")
    found = {n: find_in(src, n) for n in names} if src is not None else {}
    if all(found.get(n) for n in names):
        return found, [{"file": n, "origin": str(found[n])} for n in names]
    archive, record = fetch(KITTI, target, src, url)
    extracted = extract(archive, target / "_work" / "kitti", lambda name: name.rsplit("/", 1)[-1] in names)
    found = {p.name: p for p in extracted}
    missing = [n for n in names if n not in found]
    if missing:
        raise SvqbenchError(f"{archive}: lacks {', '.join(missing)}")
    return found, [record]


def caltech_videos(target: Path, src: Path | None, url: str) -> tuple[list[Path], dict[str, Any]]:
    if src is not None:
        loose = sorted(p for p in src.rglob("*") if p.is_file() and CALTECH_VIDEO.search(p.as_posix()))
        if loose:
            return loose, {"file": "set06-set10 videos", "origin": str(src)}
    archive, record = fetch(CALTECH, target, src, url)
    videos = extract(archive, target / "_work" / "caltech", lambda name: bool(CALTECH_VIDEO.search(name)))
    if not videos:
        raise SvqbenchError(f"{archive}: holds no set06-set10 videos")
    return sorted(videos), record


@DATASETS.register("kitticaltech")
class KittiCaltech(DatasetSpec):
    info = DatasetInfo(
        name="kitticaltech",
        frames_in=10,
        frames_out=1,
        channels=3,
        height=HEIGHT,
        width=WIDTH,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="KITTI (train/val) -> Caltech Pedestrian set06-set10 (test), RGB 128x160, 10 frames in, 1 out",
        protocol="OpenSTL/PredNet KittiCaltech: non-overlapping 11-frame windows per recording; Caltech every 3rd frame",
    )

    def prepare(
        self, target: Path, src: Path | None, *, kitti_url: str = "", caltech_url: str = "", backend: str = "auto",
        workers: int = 0,
    ) -> dict[str, Any]:
        window = self.info.window
        kitti, sources = kitti_files(target, src, kitti_url)
        splits = {
            split: write_kitti_split(target, split, kitti[f"X_{split}.hkl"], kitti[f"sources_{split}.hkl"], window)
            for split in ("train", "val")
        }
        videos, record = caltech_videos(target, src, caltech_url)
        sources.append(record)
        transform = FrameTransform(HEIGHT, WIDTH, channels=3, fit="crop", interpolation="area", every=3, offset=2)
        parts, lengths = decode_videos(videos, target / "_work" / "frames", transform, backend, workers)
        starts = [backward_window_starts(n, window, window) for n in lengths]
        splits["test"] = write_video_split(target, "test", parts, starts)
        shutil.rmtree(target / "_work", ignore_errors=True)
        return {"sources": sources, "splits": splits}
