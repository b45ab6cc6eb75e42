"""``kth`` (10->20) and ``kth40`` (10->40): KTH human actions, 1x128x128 grey, OpenSTL/PredRNN protocol.

Sources: the six action archives of AVIs (``personNN_<action>_dK_uncomp.avi``, 160x120, 25 fps),
downloaded or taken from ``--src`` (the zips, or the AVIs already extracted anywhere below it).
Frames are decoded (decord, OpenCV fallback), squashed to 128x128 (bilinear) and stored as uint8.

Splits: persons 01-16 train and 17-25 test, exactly as OpenSTL; ``val`` holds the windows of the
training persons in ``val_persons`` (default 15 and 16), so model selection never sees test. By
default those persons also stay in ``train`` (OpenSTL's training windows, unchanged); ``holdout=true``
removes them from ``train`` for a validation set that training never sees.

Windows (OpenSTL's backward scan, per video of n frames and window L = in + out frames): a window
ends at the last frame, then the scan moves back by L frames for boxing, handclapping, handwaving
and walking, by 3 frames for jogging and running. That gives floor(n/L) windows, respectively
floor((n-L)/3)+1 when n >= L. Reference: OpenSTL ``dataloader_kth.py`` (from PredRNN).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data import DATASETS
from svqbench.data.archives import extract
from svqbench.data.base import DatasetInfo, DatasetSpec
from svqbench.data.download import Source, fetch
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
PROTOCOL = "OpenSTL/PredRNN KTH: persons 01-16 train, 17-25 test, backward-scan windows, 128x128 bilinear"


def window_starts(frames: int, window: int, action: str) -> np.ndarray:
    """Ascending first-frame indices of the windows OpenSTL takes from one video of ``frames`` frames."""
    return backward_window_starts(frames, window, FAST_STEP if action in FAST_ACTIONS else window)


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
        archive, record = fetch(source, target, src, url + source.filename if url else "")
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
    info = DatasetInfo(
        name="kth",
        frames_in=10,
        frames_out=20,
        channels=1,
        height=SIZE,
        width=SIZE,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="KTH human actions, grey 128x128, 10 frames in, 20 out",
        protocol=PROTOCOL,
    )

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        val_persons: str = "15,16",
        holdout: bool = False,
        backend: str = "auto",
        workers: int = 0,
        url: str = "",
    ) -> dict[str, Any]:
        """``url``: a mirror folder holding the six ``<action>.zip`` archives (ending in ``/``)."""
        val = parse_persons(val_persons)
        videos, sources = collect_videos(target, src, url)
        transform = FrameTransform(SIZE, SIZE, channels=1, fit="squash", interpolation="linear")
        parts, lengths = decode_videos(videos, target / "_work" / "frames", transform, backend, workers)
        train = tuple(p for p in TRAIN_PERSONS if not (holdout and p in val))
        splits, listing = {}, {}
        for split, persons in (("train", train), ("val", val), ("test", TEST_PERSONS)):
            chosen = [i for i, v in enumerate(videos) if int(VIDEO_NAME.match(v.name)[1]) in persons]
            starts = [window_starts(lengths[i], self.info.window, VIDEO_NAME.match(videos[i].name)[2]) for i in chosen]
            splits[split] = write_video_split(target, split, [parts[i] for i in chosen], starts)
            splits[split]["persons"] = list(persons)
            listing[split] = [[videos[i].stem, lengths[i], len(s)] for i, s in zip(chosen, starts)]
        shutil.rmtree(target / "_work")
        return {"sources": sources, "splits": splits, "videos": listing}


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
        protocol=PROTOCOL,
    )
