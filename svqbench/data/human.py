"""``human``: Human3.6M, 4->4, 3x256x256 RGB, from the user's licensed images.

Sources (``--src`` is required: the data is licensed): per-subject archives ``S1.tar``, ``S5.tar``, ...
``S11.tar`` as fetched by OpenSTL's ``download_human3.6m.sh`` (from the UPenn mirror), or their images
already extracted anywhere below ``--src`` (OpenSTL's ``data/human/images`` included). An image is
``S<subject>_<Action>[_<trial>].<camera>_<frame:06d>.jpg``, flat or inside per-video folders; a video
is ``S<subject>_<Action>[_<trial>].<camera>`` and its trial is the part before the camera. The mirror
holds every 5th frame (numbers 1, 6, 11, ...), so consecutive images of a video are 5 frames apart.

Frames are squashed to 256x256 (bilinear, as OpenSTL's ``resize_image.py``) and stored as uint8 in
**RGB** order; OpenSTL reads the images with OpenCV and feeds its models BGR. A clip is 8 images 5
frames apart (frames b, b+5, ..., b+35): 4 in, 4 out. Images are decoded in parallel worker processes
and written through memory-mapped split files; archives are extracted one subject at a time.

Protocols (option ``protocol``):

- ``subjects`` (default, the sound one): subjects 1, 5, 6, 7, 8 train and 9, 11 test (options
  ``train_subjects``/``test_subjects``). Frames numbered 1, 6, 11, ... are used; inside every unbroken
  run of them a clip starts every ``stride`` images (default 5 images = 25 frames, the spacing of the
  published lists), so a run of n images gives floor((n - 8) / stride) + 1 clips when n >= 8.
  ``val``: of each training subject, the trials (all four cameras) numbered 1, 1 + ``val_every``,
  1 + 2 ``val_every``, ... in name order; they are removed from ``train``.
- ``openstl``: the published clip lists ``tools/prepare_data/meta/human/{train,test}.txt`` of the
  OpenSTL repository (from STRPM; 73,404 train / 8,582 test clips), taken from ``--src`` or downloaded
  from GitHub. Those lists put all seven subjects in both splits (69% of the test frames also occur
  in training clips), so the test score is not a score on unseen people. ``val`` holds the training
  clips of the trials chosen as above, which are removed from ``train``.

Either way no trial (so no video, no frame) is in both ``train`` and ``val``. ``holdout=false`` keeps
the val trials in ``train`` as well (with ``openstl``: the published training list whole, as the
paper trained); the manifest then records ``"val_held_out": false``.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from svqbench.data.archives import extract
from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec
from svqbench.data.download import Source, fetch, find_in, join_url
from svqbench.data.video import FrameTransform, decode_videos, write_video_split
from svqbench.errors import SvqbenchError

SIZE = 256
WINDOW = 8  # images per clip: 4 in, 4 out
GAP = 5  # frames between consecutive images of a clip
PHASE = 1  # the mirror's images are frames 1, 6, 11, ...
PROTOCOLS = ("subjects", "openstl")
TRAIN_SUBJECTS, TEST_SUBJECTS, STRIDE = "1,5,6,7,8", "9,11", 5
SPLITS = ("train", "val", "test")
IMAGE = re.compile(r"(?:^|/)(S(\d+)_[^/]+?\.\d+)(?:/|_)(\d{6})\.jpg$")
VIDEO = re.compile(r"^S(\d+)_[^/]+\.\d+$")
ARCHIVE_URL = "http://visiondata.cis.upenn.edu/volumetric/h36m/"
LISTS_URL = (
    "https://raw.githubusercontent.com/chengtan9907/OpenSTL/"
    "a0f4606afe395a0442d210d352bb263e55805f30/tools/prepare_data/meta/human/"
)
Index = dict[str, dict[int, Path]]  # video -> frame number -> image


@dataclass(frozen=True)
class Run:
    """Images ``first, first + 5, ...`` (``length`` of them) of one video, all present."""

    video: str
    first: int
    length: int

    @property
    def name(self) -> str:
        return f"{self.video}_{self.first:06d}"

    def images(self, index: Index) -> tuple[Path, ...]:
        return tuple(index[self.video][self.first + GAP * i] for i in range(self.length))


Entry = tuple[str, Run, np.ndarray]  # split, run, clip starts inside the run


def subject_of(name: str) -> int:
    """The subject number of a video or trial name (``S9_Walking.54138969`` -> 9)."""
    return int(name[1 : name.index("_")])


def trial_of(video: str) -> str:
    return video.rsplit(".", 1)[0]


def runs_of(video: str, numbers: set[int]) -> list[Run]:
    """The maximal runs of frame numbers 5 apart within ``numbers``, in order."""
    runs, taken = [], set()
    for first in sorted(numbers):
        if first in taken:
            continue
        length = 0
        while first + GAP * length in numbers:
            taken.add(first + GAP * length)
            length += 1
        runs.append(Run(video, first, length))
    return runs


def clip_starts(length: int, stride: int) -> np.ndarray:
    """Clip starts in a run of ``length`` images: every ``stride`` images, floor((n - 8) / stride) + 1 of them."""
    return np.arange(0, length - WINDOW + 1, stride)


def val_trials(videos: list[str], every: int) -> set[str]:
    """Per subject, its trials number 1, 1 + every, 1 + 2 every, ... in name order."""
    trials: dict[int, list[str]] = defaultdict(list)
    for trial in sorted({trial_of(v) for v in videos}):
        trials[subject_of(trial)].append(trial)
    return {t for names in trials.values() for t in names[::every]}


def parse_subjects(key: str, text: str) -> tuple[int, ...]:
    try:
        subjects = tuple(sorted({int(s.strip().lstrip("Ss")) for s in text.split(",") if s.strip()}))
    except ValueError:
        subjects = ()
    if not subjects:
        raise SvqbenchError(f"option {key}={text!r}: give subject numbers, e.g. 1,5,6,7,8")
    return subjects


def read_clip_list(path: Path) -> list[tuple[str, int]]:
    """(video, first frame number) of every clip of an OpenSTL list (``images/<video>_,<begin>,<end>``)."""
    clips = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(",")
        video = PurePosixPath(fields[0].strip()).name.removesuffix("_")
        if len(fields) < 2 or not fields[1].strip().isdigit() or not VIDEO.match(video):
            raise SvqbenchError(f"{path}:{number}: expected images/S<n>_<action>.<camera>_,<begin>,<end>, got {line!r}")
        clips.append((video, int(fields[1])))
    if not clips:
        raise SvqbenchError(f"{path}: holds no clips")
    return clips


def index_images(paths: list[Path], root: Path) -> dict[int, Index]:
    """subject -> video -> frame number -> image, for the images among ``paths``."""
    index: dict[int, Index] = {}
    for path in paths:
        match = IMAGE.search(path.relative_to(root).as_posix())
        if match:
            index.setdefault(int(match[2]), {}).setdefault(match[1], {})[int(match[3])] = path
    return index


def read_images(paths: tuple[Path, ...], transform: FrameTransform, backend: str) -> np.ndarray:
    """The images of one run: (T, 3, 256, 256) uint8 RGB. ``backend`` is unused (images, not videos)."""
    out = np.empty((len(paths), transform.channels, transform.height, transform.width), np.uint8)
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SvqbenchError(f"{path}: not a readable JPEG image (corrupt or truncated)")
        out[i] = transform(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None])[0]
    return out


def listed_clips(split: str, clips: list[tuple[str, int]], index: Index, origin: str) -> list[Entry]:
    """The runs holding the images of ``clips`` (video, first frame), one window per clip."""
    by_video: dict[str, list[int]] = defaultdict(list)
    for video, begin in clips:
        by_video[video].append(begin)
    entries = []
    for video, begins in sorted(by_video.items()):
        needed = {b + GAP * k for b in begins for k in range(WINDOW)}
        missing = sorted(needed - index.get(video, {}).keys())
        if missing:
            raise SvqbenchError(f"{origin}: has no image {video}_{missing[0]:06d}.jpg, needed by a {split} clip")
        for run in runs_of(video, needed):
            inside = [(b - run.first) // GAP for b in begins if run.first <= b < run.first + GAP * run.length]
            entries.append((split, run, np.sort(np.asarray(inside, np.int64))))
    return entries


def subject_runs(split: str, index: Index, val: set[str], stride: int, holdout: bool = True) -> list[Entry]:
    """Every run of frames 1, 6, 11, ... of one subject's videos; trials in ``val`` go to ``val``
    (and to ``split`` too unless ``holdout``)."""
    entries = []
    for video in sorted(index):
        numbers = {n for n in index[video] if n % GAP == PHASE}
        for run in runs_of(video, numbers):
            starts = clip_starts(run.length, stride)
            if not len(starts):
                continue
            if trial_of(video) in val:
                entries.append(("val", run, starts))
            if trial_of(video) not in val or not holdout:
                entries.append((split, run, starts))
    return entries


@DATASETS.register("human")
class Human(DatasetSpec):
    unit = "source video"  # numbered in SPLIT/units.npy at prep
    info = DatasetInfo(
        name="human",
        frames_in=4,
        frames_out=4,
        channels=3,
        height=SIZE,
        width=SIZE,
        metrics=("mse", "mae", "ssim", "psnr", "lpips"),
        description="Human3.6M, RGB 256x256, 4 frames in, 4 out (images 5 frames apart)",
    )
    format_version = 2  # protocol openstl: val trials held out of train by default

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        protocol: str = "subjects",
        train_subjects: str = TRAIN_SUBJECTS,
        test_subjects: str = TEST_SUBJECTS,
        stride: int = STRIDE,
        val_every: int = 10,
        holdout: bool = True,
        workers: int = 0,
        url: str = "",
    ) -> dict[str, Any]:
        """``url``: a mirror folder (with or without a trailing ``/``) of OpenSTL's ``train.txt``/``test.txt``."""
        check_options(src, protocol, train_subjects, test_subjects, stride, val_every)
        sources: list[dict[str, Any]] = []
        lists: dict[str, list[tuple[str, int]]] = {}
        if protocol == "openstl":
            lists = {split: self._clip_list(target, src, split, url, sources) for split in ("train", "test")}
            subjects = {split: sorted({subject_of(video) for video, _ in clips}) for split, clips in lists.items()}
        else:
            subjects = split_subjects(train_subjects, test_subjects)
        loose = index_images(sorted(src.rglob("*.jpg")), src)
        transform = FrameTransform(SIZE, SIZE, channels=3, fit="squash", interpolation="linear")
        entries, parts = [], []
        for subject in sorted(set(subjects["train"]) | set(subjects["test"])):
            index, origin = self._subject_images(target, src, subject, loose, sources)
            if protocol == "openstl":
                new = self._listed_entries(lists, subject, index, origin, val_every, holdout)
            else:
                split = "train" if subject in subjects["train"] else "test"
                val = val_trials(list(index), val_every) if split == "train" else set()
                new = subject_runs(split, index, val, stride, holdout)
            work = target / "_work" / "frames" / f"S{subject}"
            images = [run.images(index) for _, run, _ in new]
            parts += decode_videos(images, work, transform, "auto", workers, decoder=read_images)[0]
            entries += new
            shutil.rmtree(target / "_work" / "images", ignore_errors=True)
        counts, listing = write_splits(target, entries, parts)
        counts["train"]["subjects"], counts["test"]["subjects"] = subjects["train"], subjects["test"]
        counts["val"]["trials"] = sorted({trial_of(run.video) for split, run, _ in entries if split == "val"})
        shutil.rmtree(target / "_work")
        val_text = "val trials held out of train" if holdout else "val trials also in train"
        info = dataclasses.replace(self.info, protocol=f"{self._protocol_text(protocol, subjects)}; {val_text}")
        return {"info": info, "sources": sources, "splits": counts, "videos": listing, "val_held_out": holdout}

    @staticmethod
    def _listed_entries(
        lists: dict[str, list[tuple[str, int]]],
        subject: int,
        index: Index,
        origin: str,
        val_every: int,
        holdout: bool,
    ) -> list[Entry]:
        """One subject's clips of OpenSTL's lists; ``val`` takes the training clips of its val trials
        (which leave ``train`` when ``holdout``)."""
        train = [clip for clip in lists["train"] if subject_of(clip[0]) == subject]
        test = [clip for clip in lists["test"] if subject_of(clip[0]) == subject]
        val = val_trials([video for video, _ in train], val_every)
        kept = [clip for clip in train if not (holdout and trial_of(clip[0]) in val)]
        return (
            listed_clips("train", kept, index, origin)
            + listed_clips("val", [clip for clip in train if trial_of(clip[0]) in val], index, origin)
            + listed_clips("test", test, index, origin)
        )

    def _clip_list(self, target: Path, src: Path, split: str, url: str, sources: list) -> list[tuple[str, int]]:
        """OpenSTL's ``<split>.txt``: from ``src`` when there, else downloaded (cached as ``human_<split>.txt``)."""
        if find_in(src, f"{split}.txt") is not None:
            path, record = fetch(Source(f"{split}.txt", LISTS_URL + f"{split}.txt"), target, src)
        else:
            source = Source(f"human_{split}.txt", LISTS_URL + f"{split}.txt")
            path, record = fetch(source, target, None, join_url(url, f"{split}.txt") if url else "")
        sources.append(record)
        return read_clip_list(path)

    def _subject_images(
        self, target: Path, src: Path, subject: int, loose: dict[int, Index], sources: list
    ) -> tuple[Index, str]:
        """One subject's images: extracted ones below ``src``, else those of ``S<n>.tar``."""
        if loose.get(subject):
            sources.append({"file": f"S{subject} images", "origin": str(src)})
            return loose[subject], f"--src {src}"
        archive, record = fetch(Source(f"S{subject}.tar", ARCHIVE_URL + f"S{subject}.tar"), target, src)
        sources.append(record)
        work = target / "_work" / "images"
        images = extract(archive, work, lambda name: bool(IMAGE.search(name)))
        index = index_images(images, work).get(subject)
        if not index:
            raise SvqbenchError(f"{archive}: holds no S{subject}_<action>.<camera>_NNNNNN.jpg images")
        return index, str(archive)

    @staticmethod
    def _protocol_text(protocol: str, subjects: dict[str, list[int]]) -> str:
        if protocol == "openstl":
            return "OpenSTL/STRPM clip lists (all subjects in train and test); 8 images 5 frames apart, RGB"
        train = ",".join(f"S{s}" for s in subjects["train"])
        test = ",".join(f"S{s}" for s in subjects["test"])
        return f"subjects {train} train, {test} test; 8 images 5 frames apart, RGB"


def check_options(
    src: Path | None, protocol: str, train_subjects: str, test_subjects: str, stride: int, val_every: int
) -> None:
    """Refuse, in one line, a missing source or options that do not fit together."""
    if src is None:
        raise SvqbenchError(
            "prep human needs --src DIR holding S1.tar ... S11.tar or their extracted images "
            "(Human3.6M is licensed: http://vision.imar.ro/human3.6m)"
        )
    if protocol not in PROTOCOLS:
        raise SvqbenchError(f"option protocol={protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if stride < 1 or val_every < 2:
        raise SvqbenchError(f"options stride={stride}, val_every={val_every}: need stride >= 1, val_every >= 2")
    if protocol == "openstl" and (train_subjects, test_subjects, stride) != (TRAIN_SUBJECTS, TEST_SUBJECTS, STRIDE):
        raise SvqbenchError("options train_subjects, test_subjects and stride apply to protocol=subjects only")


def split_subjects(train_subjects: str, test_subjects: str) -> dict[str, list[int]]:
    """The subjects protocol's {"train": [...], "test": [...]}, refusing a subject in both."""
    train = parse_subjects("train_subjects", train_subjects)
    test = parse_subjects("test_subjects", test_subjects)
    if set(train) & set(test):
        raise SvqbenchError(
            f"options train_subjects={train_subjects!r}, test_subjects={test_subjects!r}: shared subjects"
        )
    return {"train": list(train), "test": list(test)}


def write_splits(target: Path, entries: list, parts: list) -> tuple[dict[str, Any], dict[str, list]]:
    """Write each split's decoded runs and window starts; return the counts and the per-run listing."""
    counts, listing = {}, {}
    for split in SPLITS:
        chosen = [(run, starts, part) for (kept, run, starts), part in zip(entries, parts) if kept == split]
        counts[split] = write_video_split(
            target, split, [part for _, _, part in chosen], [starts for _, starts, _ in chosen]
        )
        listing[split] = [[run.name, run.length, len(starts)] for run, starts, _ in chosen]
    return counts, listing
