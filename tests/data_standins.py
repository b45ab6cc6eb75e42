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


def mnist_idx_gz(path: Path, count: int = 50, seed: int = 0) -> Path:
    """A train-images-idx3-ubyte.gz of ``count`` random 28x28 'digits' (a bright blob each)."""
    import gzip

    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), np.uint8)
    for image in images:
        y, x = rng.integers(4, 16, 2)
        image[y : y + 8, x : x + 8] = rng.integers(128, 256)
    header = np.array([2051, count, 28, 28], ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())
    return path


def mnist_test_seq(path: Path, sequences: int = 6, seed: int = 0) -> Path:
    """A mnist_test_seq.npy of shape (20, sequences, 64, 64) uint8; frame t of sequence i is filled with i*20+t."""
    values = (np.arange(sequences)[None, :] * 20 + np.arange(20)[:, None]).astype(np.uint8)
    np.save(path, np.broadcast_to(values[:, :, None, None], (20, sequences, 64, 64)).copy())
    return path


def md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def taxibj_npz(path: Path, train: int = 30, test: int = 7, seed: int = 0, sliding: bool = False) -> Path:
    """A dataset.npz like OpenSTL's TaxiBJ release: X/Y_train/test of shape (N, 4, 2, 32, 32) in [-1, 1].

    ``sliding``: like the real release, sample i of a split is frames i..i+7 of one series (X the
    first 4, Y the next 4), so neighbouring samples share frames; else every sample is independent.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", train), ("test", test)):
        if sliding:
            series = rng.uniform(-1, 1, (n + 7, 2, 32, 32))
            samples = np.stack([series[i : i + 8] for i in range(n)])
            arrays[f"X_{split}"], arrays[f"Y_{split}"] = samples[:, :4], samples[:, 4:]
        else:
            arrays.update({f"{xy}_{split}": rng.uniform(-1, 1, (n, 4, 2, 32, 32)) for xy in "XY"})
    np.savez(path, **arrays)
    return path


def weatherbench_year(folder: Path, name: str, variable: str, year: int, hours: int, levels=None, seed=0) -> Path:
    """``folder/<name>/<name>_<year>_5.625deg.nc``: ``hours`` hourly steps from Jan 1 on the 32x64 grid."""
    import xarray as xr

    rng = np.random.default_rng(seed + year)
    time = np.datetime64(f"{year}-01-01T00") + np.arange(hours) * np.timedelta64(1, "h")
    lat = np.linspace(-87.1875, 87.1875, 32)
    lon = np.arange(64) * 5.625
    coords = {"time": time, "lat": lat, "lon": lon}
    dims = ("time", "lat", "lon")
    shape = (hours, 32, 64)
    if levels is not None:
        coords["level"] = np.asarray(levels)
        dims = ("time", "level", "lat", "lon")
        shape = (hours, len(levels), 32, 64)
    values = (280 + 10 * rng.standard_normal(shape)).astype(np.float32)
    out = folder / name / f"{name}_{year}_5.625deg.nc"
    out.parent.mkdir(parents=True, exist_ok=True)
    xr.Dataset({variable: (dims, values)}, coords=coords).to_netcdf(out)
    return out


def norpix_seq(path: Path, frames: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A Caltech-style Norpix .seq: a 1024-byte header, then JPEG frames separated by small headers."""
    rng = np.random.default_rng(seed)
    width, height = size
    blobs = [b"\x00" * 1024]
    for t in range(frames):
        image = np.full((height, width, 3), (t * 5) % 256, np.uint8)
        image[:, : width // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
        blobs.append(cv2.imencode(".jpg", image)[1].tobytes() + b"\x00" * 8)
    path.write_bytes(b"".join(blobs))
    return path


def kitti_hickle(folder: Path, split: str, runs: dict[str, int], seed: int = 0) -> None:
    """PredNet-style ``X_<split>.hkl`` (N, 128, 160, 3) uint8 and ``sources_<split>.hkl`` (N names)."""
    import hickle

    rng = np.random.default_rng(seed)
    names = [name for name, n in runs.items() for _ in range(n)]
    hickle.dump(rng.integers(0, 256, (len(names), 128, 160, 3), dtype=np.uint8), folder / f"X_{split}.hkl")
    hickle.dump(names, folder / f"sources_{split}.hkl")


def human_images(folder: Path, videos: dict[str, int], flat: bool = False, size: int = 48) -> dict[str, list[int]]:
    """Human3.6M-style JPGs, every 5th frame (1, 6, 11, ...): ``videos`` maps a video to its image count.

    Images go to ``folder/<video>/<video>_NNNNNN.jpg`` (per-video folders), or ``folder/<video>_NNNNNN.jpg``
    when ``flat``. Each shows a pure red square (RGB 255, 0, 0) whose place follows the frame number, on
    a grey background whose shade depends on the video (so two videos never share an image).
    Returns {video: frame numbers}.
    """
    import zlib

    made = {}
    for video, count in videos.items():
        numbers = [1 + 5 * i for i in range(count)]
        out = folder if flat else folder / video
        out.mkdir(parents=True, exist_ok=True)
        shade = 20 + zlib.crc32(video.encode()) % 40
        for number in numbers:
            image = np.full((size, size, 3), shade, np.uint8)
            x = (number // 5) % (size - 12)
            image[10:22, x : x + 12] = (0, 0, 255)  # OpenCV writes BGR
            cv2.imwrite(str(out / f"{video}_{number:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        made[video] = numbers
    return made


def human_archives(folder: Path, videos: dict[str, int]) -> dict[str, list[int]]:
    """``S<n>.tar`` per subject, holding per-video folders of :func:`human_images`."""
    import shutil
    import tarfile

    made = {}
    for subject in sorted({video.split("_")[0] for video in videos}):
        staging = folder / f"_{subject}"
        made.update(human_images(staging, {v: n for v, n in videos.items() if v.split("_")[0] == subject}))
        with tarfile.open(folder / f"{subject}.tar", "w") as tf:
            for path in sorted(staging.rglob("*.jpg")):
                tf.add(path, path.relative_to(staging).as_posix())
        shutil.rmtree(staging)
    return made


def human_clip_list(path: Path, clips: list[tuple[str, int]]) -> Path:
    """An OpenSTL/STRPM clip list: ``images/<video>_,<begin>,<begin + 70>`` per clip."""
    path.write_text("".join(f"images/{video}_,{begin},{begin + 70}\n" for video, begin in clips))
    return path


def kth_sequence_file(path: Path, sequences: dict[str, str], missing: tuple[str, ...] = ()) -> Path:
    """A ``00sequences.txt`` like KTH's: prose header, then ``personNN_<action>_dK<TAB>frames<TAB>ranges``."""
    header = "\nThis database contains sequences of six classes of actions.\n\nTraining:   person11, 12, 13\n\n\n"
    lines = [f"{video}\t\tframes\t{ranges}" for video, ranges in sequences.items()]
    lines += [f"{video}\t*missing*" for video in missing]
    path.write_text(header + "\n".join(lines) + "\n")
    return path
