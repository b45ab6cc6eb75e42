"""``kth`` (10->20) and ``kth40`` (10->40): KTH human actions, 1x128x128 grey, OpenSTL/PredRNN protocol.

Sources: the six action archives of AVIs (``personNN_<action>_dK_uncomp.avi``, 160x120, 25 fps),
downloaded or taken from ``--src`` (the zips, or the AVIs already extracted anywhere below it).
Frames are decoded (decord, OpenCV fallback), squashed to 128x128 (bilinear) and stored as uint8.

Splits: persons 17-25 test, exactly as OpenSTL; ``val`` holds the videos of the persons in
``val_persons`` (default 15 and 16), so model selection never sees test, and ``train`` the other
persons of 01-16: no window and no video of ``val`` is in ``train``. ``holdout=false`` is the paper's
(OpenSTL's) "train on persons 1-16": those persons then stay in ``train`` as well, the manifest records
``"val_held_out": false``, and training selects its last checkpoint rather than the best on ``val``.

Windows (OpenSTL's backward scan, per video of n frames and window L = in + out frames): a window
ends at the last frame, then the scan moves back by L frames for boxing, handclapping, handwaving
and walking, by 3 frames for jogging and running. That gives floor(n/L) windows, respectively
floor((n-L)/3)+1 when n >= L. Reference: OpenSTL ``dataloader_kth.py`` (from PredRNN).

``protocol=sequences`` takes windows only inside the action subsequences that KTH's own sequence file
``00sequences.txt`` lists per video (``personNN_<action>_dK  frames  1-95, 96-185, ...``, 1-based,
inclusive; downloaded with the archives or taken from ``--src``), so no window spans the pauses and
turn-arounds between repetitions. The backward scan above runs inside each subsequence (clipped to the
video's length); a window that two overlapping subsequences share is kept once, and a video the file
does not list (it marks person13_handclapping_d3 ``*missing*``) gives none.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data.archives import extract
from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec
from svqbench.data.download import Source, fetch, join_url
from svqbench.data.video import FrameTransform, backward_window_starts, decode_videos, write_video_split
from svqbench.errors import SvqbenchError

ACTIONS = ("boxing", "handclapping", "handwaving", "walking", "jogging", "running")
FAST_ACTIONS = ("jogging", "running")  # the scan moves back 3 frames after a window
FAST_STEP = 3
TRAIN_PERSONS = tuple(range(1, 17))
TEST_PERSONS = tuple(range(17, 26))
SIZE = 128
VIDEO_NAME = re.compile(r"^person(\d\d)_([a-z]+)_d(\d)_uncomp\.avi$")
BASE_URL = "http://www.csc.kth.se/cvap/actions/"
PROTOCOLS = {
    "openstl": "OpenSTL/PredRNN KTH: persons 01-16 train, 17-25 test, backward-scan windows, 128x128 bilinear",
    "sequences": "KTH persons 01-16 train, 17-25 test, backward-scan windows inside the 00sequences.txt "
    "action subsequences, 128x128 bilinear",
}
SEQUENCE_FILE = "00sequences.txt"
SEQUENCE_LINE = re.compile(r"^(person\d\d_[a-z]+_d\d)\s+(.*)$")
RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def window_starts(frames: int, window: int, action: str) -> np.ndarray:
    """Ascending first-frame indices of the windows OpenSTL takes from one video of ``frames`` frames."""
    return backward_window_starts(frames, window, FAST_STEP if action in FAST_ACTIONS else window)


def read_sequences(path: Path) -> dict[str, list[tuple[int, int]]]:
    """``personNN_<action>_dK`` -> its subsequences as 0-based (first, stop) frame ranges, from ``00sequences.txt``."""
    sequences = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = SEQUENCE_LINE.match(line.strip())
        if not match or "missing" in match[2]:
            continue  # the header prose, blank lines and the one video KTH lacks
        ranges = [RANGE.match(r.strip()) for r in match[2].removeprefix("frames").split(",") if r.strip()]
        if not ranges or not all(r and 1 <= int(r[1]) <= int(r[2]) for r in ranges):
            expected = f"'{match[1]}  frames  1-95, 96-185, ...'"
            raise SvqbenchError(f"{path}:{number}: expected {expected}, got {line.strip()!r}")
        sequences[match[1]] = [(int(r[1]) - 1, int(r[2])) for r in ranges]
    if not sequences:
        raise SvqbenchError(f"{path}: lists no personNN_<action>_dK subsequences; is it KTH's {SEQUENCE_FILE}?")
    return sequences


def subsequence_window_starts(frames: int, window: int, action: str, subsequences: list[tuple[int, int]]) -> np.ndarray:
    """Ascending window starts of the backward scan run inside each subsequence (first, stop) of one video."""
    starts = [first + window_starts(min(stop, frames) - first, window, action) for first, stop in subsequences]
    return np.unique(np.concatenate(starts)) if starts else np.zeros(0, np.int64)


def parse_persons(text: str) -> tuple[int, ...]:
    try:
        persons = tuple(sorted({int(p) for p in text.split(",") if p.strip()}))
    except ValueError:
        persons = ()
    if not persons or not set(persons) <= set(TRAIN_PERSONS):
        raise SvqbenchError(f"option val_persons={text!r}: give training persons, e.g. 15,16 (from 1-16)")
    return persons


def collect_videos(target: Path, src: Path | None, url: str) -> tuple[list[Path], list[dict[str, Any]]]:
    """Every KTH AVI, from extracted files below ``src`` or from the action archives."""
    work = target / "_work" / "avi"
    videos, sources = [], []
    for action in ACTIONS:
        loose = _loose_videos(src, action) if src is not None else []
        if loose:
            videos += loose
            sources.append({"file": f"{action}/*.avi", "origin": str(loose[0].parent)})
            continue
        source = Source(f"{action}.zip", BASE_URL + f"{action}.zip")
        archive, record = fetch(source, target, src, join_url(url, source.filename) if url else "")
        sources.append(record)
        members = extract(archive, work / action, lambda name: name.endswith(".avi"))
        videos += [p for p in members if VIDEO_NAME.match(p.name)]
    if not videos:
        raise SvqbenchError(f"no KTH videos (personNN_<action>_dK_uncomp.avi) found in {src or 'the archives'}")
    return sorted(videos, key=lambda p: p.name), sources


def _loose_videos(src: Path, action: str) -> list[Path]:
    return sorted(p for p in src.rglob(f"person*_{action}_d*_uncomp.avi") if VIDEO_NAME.match(p.name))


@DATASETS.register("kth")
class KTH(DatasetSpec):
    unit = "source video"  # numbered in SPLIT/units.npy at prep
    format_version = 2  # val persons held out of train by default
    info = DatasetInfo(
        name="kth",
        frames_in=10,
        frames_out=20,
        channels=1,
        height=SIZE,
        width=SIZE,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="KTH human actions, grey 128x128, 10 frames in, 20 out",
        protocol=PROTOCOLS["openstl"],
    )

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        val_persons: str = "15,16",
        holdout: bool = True,
        protocol: str = "openstl",
        backend: str = "auto",
        workers: int = 0,
        url: str = "",
        frames: str = "",
    ) -> dict[str, Any]:
        """``url``: a mirror folder (with or without a trailing ``/``) of the six ``<action>.zip`` archives and
        ``00sequences.txt``. ``frames`` ``IN:OUT``: other window lengths than the dataset's (10:20; kth40 10:40)."""
        windowed = self.windowed(frames)
        if protocol not in PROTOCOLS:
            raise SvqbenchError(f"option protocol={protocol!r}; valid: {', '.join(PROTOCOLS)}")
        val = parse_persons(val_persons)
        videos, sources = collect_videos(target, src, url)
        sequences = None
        if protocol == "sequences":
            source = Source(SEQUENCE_FILE, BASE_URL + SEQUENCE_FILE)
            path, record = fetch(source, target, src, join_url(url, SEQUENCE_FILE) if url else "")
            sources.append(record)
            sequences = read_sequences(path)
        transform = FrameTransform(SIZE, SIZE, channels=1, fit="squash", interpolation="linear")
        parts, lengths = decode_videos(videos, target / "_work" / "frames", transform, backend, workers)
        train = tuple(p for p in TRAIN_PERSONS if not (holdout and p in val))
        splits, listing = {}, {}
        for split, persons in (("train", train), ("val", val), ("test", TEST_PERSONS)):
            chosen = [i for i, v in enumerate(videos) if int(VIDEO_NAME.match(v.name)[1]) in persons]
            starts = [self._starts(videos[i], lengths[i], sequences, windowed.window) for i in chosen]
            splits[split] = write_video_split(target, split, [parts[i] for i in chosen], starts)
            splits[split]["persons"] = list(persons)
            listing[split] = [[videos[i].stem, lengths[i], len(s)] for i, s in zip(chosen, starts)]
        shutil.rmtree(target / "_work")
        held = ",".join(str(p) for p in val)
        val_text = f"val persons {held} held out of train" if holdout else f"val persons {held} also in train"
        info = dataclasses.replace(windowed, protocol=f"{PROTOCOLS[protocol]}; {val_text}")
        return {"info": info, "sources": sources, "splits": splits, "videos": listing, "val_held_out": holdout}

    def _starts(
        self, video: Path, frames: int, sequences: dict[str, list[tuple[int, int]]] | None, window: int
    ) -> np.ndarray:
        """Window starts in one video: over all its frames, or inside its listed subsequences."""
        action = VIDEO_NAME.match(video.name)[2]
        if sequences is None:
            return window_starts(frames, window, action)
        subsequences = sequences.get(video.name.removesuffix("_uncomp.avi"), [])
        return subsequence_window_starts(frames, window, action, subsequences)


@DATASETS.register("kth40")
class KTH40(KTH):
    info = DatasetInfo(
        name="kth40",
        frames_in=10,
        frames_out=40,
        channels=1,
        height=SIZE,
        width=SIZE,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="KTH human actions, grey 128x128, 10 frames in, 40 out",
        protocol=PROTOCOLS["openstl"],
    )
