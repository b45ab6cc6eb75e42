"""``videos``: a benchmark made from a folder of the user's own clips.

``svqbench prep videos --src DIR --name NAME --size 64 --frames 10:10`` decodes every video below
DIR (any format decord or OpenCV reads), scales it to cover size x size and cuts the centre, and
splits by file: a file inside a ``train``/``val``/``test`` folder or whose name starts with one of
those words keeps that split; the others are shuffled with ``seed`` and shared out by the ``val``
and ``test`` fractions. Windows of in+out frames start every ``stride`` frames (default: the window
length, so windows do not overlap) inside one video; no video (nor a byte-identical copy of one) is
in two splits, so ``val`` and ``train`` share no window. The folder records spec ``videos``, so
``data.create(NAME, split)`` serves it like any built-in dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec
from svqbench.data.download import file_hash
from svqbench.data.video import FrameTransform, decode_videos, write_video_split
from svqbench.errors import SvqbenchError

EXTENSIONS = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv"}
SPLITS = ("train", "val", "test")
VIDEO_FIT, VIDEO_INTERPOLATION = "crop", "area"  # how frames are fitted to size x size; predict reuses them


def parse_frames(text: str) -> tuple[int, int]:
    """``"10:10"`` -> (10, 10): frames in and out of one window."""
    try:
        frames_in, frames_out = (int(part) for part in text.split(":"))
    except ValueError:
        frames_in = frames_out = 0
    if frames_in < 1 or frames_out < 1:
        raise SvqbenchError(f"option frames={text!r}: expected IN:OUT with positive counts, e.g. 10:10")
    return frames_in, frames_out


def tagged_split(relative: Path) -> str | None:
    """The split a file's folder or name prefix assigns it to, if any."""
    for split in SPLITS:
        if split in relative.parts[:-1] or relative.name.lower().startswith(split):
            return split
    return None


def assign_splits(files: list[Path], src: Path, val: float, test: float, seed: int) -> dict[str, list[Path]]:
    """Tagged files keep their split; untagged ones are shuffled with ``seed`` and shared by fraction."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SvqbenchError(f"options val={val}, test={test}: fractions in [0, 1) that sum below 1")
    splits: dict[str, list[Path]] = {split: [] for split in SPLITS}
    untagged = []
    for path in files:
        split = tagged_split(path.relative_to(src))
        (splits[split] if split else untagged).append(path)
    order = np.random.default_rng(seed).permutation(len(untagged))
    untagged = [untagged[i] for i in order]
    n_test, n_val = round(test * len(untagged)), round(val * len(untagged))
    splits["test"] += untagged[:n_test]
    splits["val"] += untagged[n_test : n_test + n_val]
    splits["train"] += untagged[n_test + n_val :]
    for split, chosen in splits.items():
        if not chosen:
            raise SvqbenchError(
                f"--src {src}: no video for split {split!r}; add files (or a {split}/ folder) or change the fractions"
            )
    return {split: sorted(chosen) for split, chosen in splits.items()}


def check_no_shared_files(sources: list[dict[str, str]], splits: dict[str, list[Path]], src: Path) -> None:
    """A video copied under two names into train and val (or test) would put its windows in both."""
    split_of = {str(p.relative_to(src)): split for split, chosen in splits.items() for p in chosen}
    seen: dict[str, str] = {}
    for source in sources:
        first = seen.setdefault(source["sha256"], source["file"])
        if split_of[first] != split_of[source["file"]]:
            raise SvqbenchError(
                f"--src {src}: {first} ({split_of[first]}) and {source['file']} ({split_of[source['file']]}) "
                "are the same video; keep one copy"
            )


@DATASETS.register("videos")
class Videos(DatasetSpec):
    unit = "source video"  # numbered in SPLIT/units.npy at prep
    info = DatasetInfo(
        name="videos",
        frames_in=10,
        frames_out=10,
        channels=3,
        height=64,
        width=64,
        description="the user's own videos",
        protocol="split by file; windows every `stride` frames inside one video",
    )
    fixed_shape = False  # options size, frames and channels set it

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        size: int = 64,
        frames: str = "10:10",
        stride: int = 0,
        channels: int = 3,
        every: int = 1,
        val: float = 0.1,
        test: float = 0.1,
        seed: int = 0,
        backend: str = "auto",
        workers: int = 0,
    ) -> dict[str, Any]:
        if src is None:
            raise SvqbenchError("prep videos needs --src DIR, the folder of your videos")
        if size < 8 or channels not in (1, 3) or every < 1 or stride < 0:
            raise SvqbenchError(
                f"options size={size}, channels={channels}, every={every}, stride={stride}: "
                "need size >= 8, channels 1 or 3, every >= 1, stride >= 0"
            )
        frames_in, frames_out = parse_frames(frames)
        window = frames_in + frames_out
        step = stride or window
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not files:
            raise SvqbenchError(f"--src {src}: no video files ({', '.join(sorted(EXTENSIONS))})")
        splits = assign_splits(files, src, val, test, seed)
        transform = FrameTransform(
            size, size, channels=channels, fit=VIDEO_FIT, interpolation=VIDEO_INTERPOLATION, every=every
        )
        ordered = [path for split in SPLITS for path in splits[split]]
        parts, lengths = decode_videos(ordered, target / "_work", transform, backend, workers)
        length_of = dict(zip(ordered, lengths))
        part_of = dict(zip(ordered, parts))
        counts, listing = {}, {}
        for split in SPLITS:
            chosen = splits[split]
            starts = [np.arange(0, length_of[p] - window + 1, step) for p in chosen]
            counts[split] = write_video_split(target, split, [part_of[p] for p in chosen], starts)
            listing[split] = [[str(p.relative_to(src)), length_of[p], len(s)] for p, s in zip(chosen, starts)]
        shutil.rmtree(target / "_work")
        info = DatasetInfo(
            name="videos",
            frames_in=frames_in,
            frames_out=frames_out,
            channels=channels,
            height=size,
            width=size,
            description=f"videos from {src}",
            protocol=f"split by file (seed {seed}); windows of {window} frames every {step} frames",
        )
        sources = [{"file": str(p.relative_to(src)), "sha256": file_hash(p)} for p in ordered]
        check_no_shared_files(sources, splits, src)
        return {"info": info, "sources": sources, "splits": counts, "videos": listing}
