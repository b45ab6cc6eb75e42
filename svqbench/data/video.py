"""Video decoding for dataset preparation: decord (OpenCV fallback), resizing, parallel workers.

Each video is decoded and resized by a worker process into its own ``.npy`` part of shape
(T, C, H, W) uint8; :func:`write_video_split` then concatenates parts into a split's memory-mapped
``frames.npy``. Nothing ever holds more than one video in memory.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
from rich.progress import track

from svqbench.data.base import UNITS, open_frames_for_writing, write_starts
from svqbench.errors import SvqbenchError

CHUNK = 64
BACKENDS = ("auto", "decord", "opencv")
JPEG_START = re.compile(rb"\xff\xd8\xff[\xe0-\xef]")
INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class FrameTransform:
    """How decoded RGB frames become stored frames.

    ``fit="squash"`` resizes to (height, width) ignoring aspect (the KTH protocol); ``fit="crop"``
    scales until the frame covers (height, width) and cuts the centre. ``channels=1`` keeps the
    luma. Only frames ``offset, offset+every, ...`` are kept.
    """

    height: int
    width: int
    channels: int = 3
    fit: str = "squash"
    interpolation: str = "linear"
    every: int = 1
    offset: int = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, H0, W0, 3) uint8 RGB -> (n, C, height, width) uint8."""
        out = np.empty((len(frames), self.channels, self.height, self.width), np.uint8)
        for i, frame in enumerate(frames):
            frame = self._resize(frame)
            if self.channels == 1:
                out[i, 0] = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            else:
                out[i] = frame.transpose(2, 0, 1)
        return out

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        flag = INTERPOLATION[self.interpolation]
        if self.fit == "squash":
            return cv2.resize(frame, (self.width, self.height), interpolation=flag)
        h0, w0 = frame.shape[:2]
        scale = max(self.height / h0, self.width / w0)
        h1, w1 = max(self.height, round(h0 * scale)), max(self.width, round(w0 * scale))
        frame = cv2.resize(frame, (w1, h1), interpolation=flag)
        top, left = (h1 - self.height) // 2, (w1 - self.width) // 2
        return frame[top : top + self.height, left : left + self.width]


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SvqbenchError(f"option backend={backend!r}; valid: {', '.join(BACKENDS)}")


@contextmanager
def _decoder_logs_silenced() -> Iterator[None]:
    """Hide what the decoders' C libraries print on stderr while opening a file: a file that is not a video is
    reported by our own one-line error, not by their log lines."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor to redirect
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decord_chunks(path: Path) -> Iterator[np.ndarray]:
    import decord

    with _decoder_logs_silenced():
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    n = len(reader)
    for i in range(0, n, CHUNK):
        yield reader.get_batch(list(range(i, min(n, i + CHUNK)))).asnumpy()


def _stacked(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Group single (H, W, 3) frames into (n <= CHUNK, H, W, 3) arrays."""
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == CHUNK:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def _opencv_frames(path: Path) -> Iterator[np.ndarray]:
    with _decoder_logs_silenced():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SvqbenchError(f"{path}: cannot open this video (corrupt, truncated or an unknown codec)")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _norpix_seq_frames(path: Path) -> Iterator[np.ndarray]:
    """Frames of a Norpix ``.seq`` file of JPEG images (Caltech Pedestrian), which FFmpeg cannot open."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        starts = [m.start() for m in re.finditer(JPEG_START, blob)]
        for begin, end in zip(starts, starts[1:] + [len(blob)]):
            image = cv2.imdecode(np.frombuffer(blob[begin:end], np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise SvqbenchError(f"{path}: frame at byte {begin} is not a decodable JPEG")
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_video(path: Path, transform: FrameTransform, backend: str = "auto") -> np.ndarray:
    """All kept frames of one video: (T, C, H, W) uint8.

    ``auto`` uses decord and falls back to OpenCV when decord is missing or fails on the file
    (decord rejects some frame sizes and containers that OpenCV reads).
    """
    if path.suffix.lower() == ".seq":
        return _keep_frames(_stacked(_norpix_seq_frames(path)), transform, path)
    if backend in ("auto", "decord"):
        try:
            return _keep_frames(_decord_chunks(path), transform, path)
        except Exception as e:  # decord raises its own error types, and ImportError when absent
            if backend == "decord":
                raise SvqbenchError(f"{path}: decord cannot read this video ({_first_line(e)})") from None
    return _keep_frames(_stacked(_opencv_frames(path)), transform, path)


def _keep_frames(chunks: Iterator[np.ndarray], transform: FrameTransform, path: Path) -> np.ndarray:
    """Transform the frames ``transform`` keeps from (n, H, W, 3) RGB ``chunks``."""
    kept, seen = [], 0
    for chunk in chunks:
        index = np.arange(seen, seen + len(chunk))
        keep = (index >= transform.offset) & ((index - transform.offset) % transform.every == 0)
        if keep.any():
            kept.append(transform(chunk[keep]))
        seen += len(chunk)
    if not kept:
        raise SvqbenchError(f"{path}: no decodable frames (corrupt or empty video)")
    return np.concatenate(kept)


Decoder = Callable[[Any, FrameTransform, str], np.ndarray]  # (source, transform, backend) -> (T, C, H, W) uint8


def _decode_to_part(job: tuple[Any, Path, FrameTransform, str, Decoder]) -> int:
    source, part, transform, backend, decoder = job
    frames = decoder(source, transform, backend)
    tmp = part.with_name(part.stem + ".tmp.npy")
    np.save(tmp, frames)
    tmp.replace(part)
    return len(frames)


def default_workers(workers: int) -> int:
    """``workers`` when positive, else the CPUs this process may use."""
    if workers > 0:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_videos(
    paths: Sequence[Any],
    work: Path,
    transform: FrameTransform,
    backend: str = "auto",
    workers: int = 0,
    decoder: Decoder = decode_video,
) -> tuple[list[Path], list[int]]:
    """Decode ``paths`` in parallel into ``work/NNNNNN.npy`` parts; return the parts and their lengths.

    ``decoder`` turns one entry of ``paths`` into frames; the default reads video files. It runs in
    worker processes, so it must be a module-level function.
    """
    check_backend(backend)
    work.mkdir(parents=True, exist_ok=True)
    parts = [work / f"{i:06d}.npy" for i in range(len(paths))]
    jobs = [(path, part, transform, backend, decoder) for path, part in zip(paths, parts)]
    workers = min(default_workers(workers), max(1, len(jobs)))
    # auto_refresh=False: no refresh thread (rich's threaded refresh deadlocked here once in a loaded test run)
    if workers == 1:
        progress = track(jobs, description="decoding", transient=True, auto_refresh=False)
        lengths = [_decode_to_part(job) for job in progress]
        return parts, lengths
    # spawn: forking a process that has started torch/decord threads can deadlock
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = pool.map(_decode_to_part, jobs, chunksize=1)
        lengths = list(track(results, total=len(jobs), description="decoding", transient=True, auto_refresh=False))
    return parts, lengths


def backward_window_starts(frames: int, window: int, step: int) -> np.ndarray:
    """Ascending window starts of OpenSTL's backward scan over one run of ``frames`` frames.

    A window ends at the last frame; after each window the scan end moves back by ``step``.
    """
    ends = np.arange(frames - 1, window - 2, -step)
    return np.sort(ends - window + 1)


def write_video_split(target: Path, split: str, parts: Sequence[Path], starts: Sequence[np.ndarray]) -> dict[str, int]:
    """Concatenate decoded ``parts`` into ``split/frames.npy``; ``starts[i]`` are window starts within part i."""
    lengths = [int(np.load(p, mmap_mode="r").shape[0]) for p in parts]
    if not parts or sum(len(s) for s in starts) == 0:
        raise SvqbenchError(f"split {split!r} would have no complete window; add videos or shorten the window")
    first = np.load(parts[0], mmap_mode="r")
    frames = open_frames_for_writing(target, split, (sum(lengths), *first.shape[1:]), np.uint8)
    offset, all_starts = 0, []
    for part, n, part_starts in zip(parts, lengths, starts):
        frames[offset : offset + n] = np.load(part, mmap_mode="r")
        all_starts.append(np.asarray(part_starts, np.int64) + offset)
        offset += n
    frames.flush()
    del frames
    units = np.concatenate([np.full(len(s), i, np.int64) for i, s in enumerate(all_starts)])
    all_starts = np.concatenate(all_starts)
    write_starts(target, split, all_starts)
    np.save(target / split / UNITS, units)  # the source video of each window
    return {"videos": len(parts), "frames": offset, "windows": int(len(all_starts))}
