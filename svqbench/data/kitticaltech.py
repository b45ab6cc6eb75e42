"""``kitticaltech``: train on KITTI, test on Caltech Pedestrian, 10->1, 3x128x160 RGB (OpenSTL protocol).

train/val: PredNet's hickle files (``X_train.hkl``/``sources_train.hkl``, ``X_val.hkl``/``sources_val.hkl``:
frames (N, 128, 160, 3) uint8 RGB and the recording each frame comes from).
test: Caltech Pedestrian ``set06``-``set10`` videos (Norpix ``.seq`` or any video format), every 3rd
frame (the 3rd, 6th, ...), scaled to height 128 keeping the aspect ratio and centre-cropped to 160
columns, kept in RGB order (OpenSTL reads Caltech in OpenCV's BGR order, a quirk not copied).
Windows: 11 frames inside one recording, non-overlapping, scanned backwards from its last frame.
``val`` and ``train`` share no recording (PredNet's files hold different drives; a recording found
in both gives no training window). The manifest lists every recording (``videos``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data.archives import extract
from svqbench.data.base import DATASETS, UNITS, DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.data.download import Source, fetch, find_in
from svqbench.data.video import FrameTransform, backward_window_starts, decode_videos, write_video_split
from svqbench.errors import SvqbenchError

KITTI = Source("kitti_data.zip", "https://www.dropbox.com/s/rpwlnn6j39jjme4/kitti_data.zip?dl=1")
CALTECH = Source(
    "data_and_labels.zip", "https://data.caltech.edu/records/f6rph-90m20/files/data_and_labels.zip?download=1"
)
CALTECH_VIDEO = re.compile(r"(^|/)(set0[6-9]|set10)/[^/]+\.(seq|avi|mp4|mkv|mov)$", re.IGNORECASE)
HEIGHT, WIDTH = 128, 160
BLOCK = 1024


def read_hickle(path: Path, want_strings: bool):
    """The frame array (a lazy h5py dataset) or the list of source names in a PredNet hickle file.

    Read as plain HDF5 with h5py, never through hickle's loader (which unpickles the Python types
    that a file names, so a crafted file could run code). Layouts understood, by hickle version:
    the frames are the largest 4-D numeric dataset (``data`` in hickle 5, ``data_0`` in hickle 2-4);
    the names are one 1-D string dataset (hickle 2-4) or hickle 5's group of items ``data<i>`` (each
    a (1, n) array of single bytes, or a reference to an equal earlier item), ordered by ``item_index``.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as e:
        raise SvqbenchError(f"{path}: not a readable hickle/HDF5 file ({e})") from None
    found = []
    handle.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    if want_strings:
        with handle:
            return _read_names(path, handle, found)
    arrays = [d for d in found if d.dtype.kind in "uif" and d.ndim == 4]
    if not arrays:
        raise SvqbenchError(f"{path}: holds no (N, H, W, 3) frame array")
    return max(arrays, key=lambda d: d.size)


def _text(value) -> str:
    """One stored name: bytes, str, or an array of single bytes (hickle 5) -> str."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return value.view(np.uint8).tobytes().decode()
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_names(path: Path, handle, datasets: list) -> list[str]:
    import h5py

    strings = [d for d in datasets if d.dtype.kind in "SOU" and d.ndim == 1 and h5py.check_dtype(ref=d.dtype) is None]
    if len(strings) == 1:
        return [_text(n) for n in strings[0][()]]
    items = handle.get("data")
    if isinstance(items, h5py.Group) and all("item_index" in d.attrs for d in items.values()):
        names = []
        for item in sorted(items.values(), key=lambda d: int(d.attrs["item_index"])):
            while isinstance(item, h5py.Dataset) and h5py.check_dtype(ref=item.dtype) is not None:
                item = handle[item[()]]  # an item equal to an earlier one is stored as a reference to it
            if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "SOU":
                raise SvqbenchError(f"{path}: item {item.name} of the source names is not a string")
            names.append(_text(item[()]))
        return names
    raise SvqbenchError(f"{path}: holds no readable list of source names")


def recordings(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(first, stop) frame indices of each run of equal consecutive source names."""
    names = np.asarray(names)
    firsts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    return firsts, np.r_[firsts[1:], len(names)]


def write_kitti_split(
    target: Path, split: str, frames_file: Path, sources_file: Path, window: int, exclude: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[list]]:
    """Store a KITTI split from its hickle pair: frames (F, 3, 128, 160) uint8 and its windows.

    Recordings named in ``exclude`` (those of another split) give no window. Returns the counts and
    a listing [recording, frames, windows] per recording.
    """
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
    starts, listing, excluded = [], [], 0
    for first, stop in zip(*recordings(sources)):
        name = sources[first]
        run = np.zeros(0, np.int64) if name in exclude else first + backward_window_starts(stop - first, window, window)
        excluded += name in exclude
        starts.append(run)
        listing.append([name, int(stop - first), len(run)])
    units = np.concatenate([np.full(len(run), i, np.int64) for i, run in enumerate(starts)])
    starts = np.concatenate(starts)
    if not len(starts):
        raise SvqbenchError(f"{frames_file}: split {split!r} has no complete {window}-frame window")
    write_starts(target, split, starts)
    np.save(target / split / UNITS, units)  # the recording of each window
    counts = {"frames": len(sources), "windows": int(len(starts)), "recordings": len(listing)}
    if exclude:
        counts["recordings_also_in_val_dropped"] = excluded
    return counts, listing


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
    unit = "source video"  # numbered in SPLIT/units.npy at prep
    info = DatasetInfo(
        name="kitticaltech",
        frames_in=10,
        frames_out=1,
        channels=3,
        height=HEIGHT,
        width=WIDTH,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="KITTI (train/val) -> Caltech Pedestrian set06-set10 (test), RGB 128x160, 10 frames in, 1 out",
        protocol="OpenSTL/PredNet KittiCaltech: non-overlapping 11-frame windows per recording; Caltech every 3rd "
        "frame",
    )

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        kitti_url: str = "",
        caltech_url: str = "",
        backend: str = "auto",
        workers: int = 0,
        frames: str = "",
    ) -> dict[str, Any]:
        """``frames`` ``IN:OUT``: other window lengths than 10:1."""
        windowed = self.windowed(frames)
        window = windowed.window
        kitti, sources = kitti_files(target, src, kitti_url)
        splits, listing = {}, {}
        splits["val"], listing["val"] = write_kitti_split(
            target, "val", kitti["X_val.hkl"], kitti["sources_val.hkl"], window
        )
        # PredNet's val recordings are not in its train file; should a copy hold one there, it leaves train
        val_recordings = frozenset(name for name, _, _ in listing["val"])
        splits["train"], listing["train"] = write_kitti_split(
            target, "train", kitti["X_train.hkl"], kitti["sources_train.hkl"], window, exclude=val_recordings
        )
        videos, record = caltech_videos(target, src, caltech_url)
        sources.append(record)
        transform = FrameTransform(HEIGHT, WIDTH, channels=3, fit="crop", interpolation="area", every=3, offset=2)
        parts, lengths = decode_videos(videos, target / "_work" / "frames", transform, backend, workers)
        starts = [backward_window_starts(n, window, window) for n in lengths]
        splits["test"] = write_video_split(target, "test", parts, starts)
        listing["test"] = [[video.name, n, len(s)] for video, n, s in zip(videos, lengths, starts)]
        shutil.rmtree(target / "_work", ignore_errors=True)
        splits = {s: splits[s] for s in ("train", "val", "test")}
        return {"info": windowed, "sources": sources, "splits": splits, "videos": listing}
