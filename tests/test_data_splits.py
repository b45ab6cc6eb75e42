"""Every registered dataset's ``val`` split is apart from ``train``: no shared frame, window or source video.

Each dataset is prepared from a tiny stand-in of its real source in which distinct source frames
have distinct content, so a frame (by its bytes) found in both splits means the splits overlap.
Where the manifest lists the source videos of each split, those lists must not meet either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Callable

import pytest
from data_standins import (
    human_archives,
    kitti_hickle,
    kth_archives,
    md5,
    mnist_idx_gz,
    mnist_test_seq,
    norpix_seq,
    taxibj_npz,
    weatherbench_year,
    write_avi,
)

from svqbench import data
from svqbench.data import mmnist


def prep_digits(name: str):
    def prep(src: Path, root: Path, **options) -> None:
        data.prepare(name, root=root, train=6, val=3, test=2, **options)

    return prep


def prep_mmnist(src: Path, root: Path, monkeypatch, **options) -> None:
    digits = mnist_idx_gz(src / "train-images-idx3-ubyte.gz")
    test = mnist_test_seq(src / "mnist_test_seq.npy")
    monkeypatch.setattr(mmnist, "DIGITS", dataclasses.replace(mmnist.DIGITS, md5=md5(digits)))
    monkeypatch.setattr(mmnist, "TEST", dataclasses.replace(mmnist.TEST, md5=md5(test)))
    data.prepare("mmnist", root=root, src=src, train_length=6, val=3, val_digits=10, **options)


def prep_kth(name: str) -> Callable:
    def prep(src: Path, root: Path, **options) -> None:
        frames = 52 if name == "kth40" else 31
        kth_archives(
            src,
            {
                "boxing": [(1, frames), (15, frames), (17, frames)],
                "handclapping": [(16, frames)],
                "handwaving": [(2, frames)],
                "walking": [(16, frames)],
                "jogging": [(3, frames), (15, frames)],
                "running": [(20, frames)],
            },
        )
        data.prepare(name, root=root, src=src, workers=1, **options)

    return prep


def prep_human(src: Path, root: Path, **options) -> None:
    human_archives(
        src,
        {
            "S1_Walking.54138969": 9,
            "S1_Walking.55011271": 9,
            "S1_Eating.54138969": 9,
            "S1_Greeting.54138969": 9,
            "S9_Walking.54138969": 9,
        },
    )
    data.prepare("human", root=root, src=src, workers=1, train_subjects="1", test_subjects="9", val_every=2, **options)


def prep_kitticaltech(src: Path, root: Path, **options) -> None:
    kitti_hickle(src, "train", {"city_1": 12, "road_2": 23}, seed=0)
    kitti_hickle(src, "val", {"city_3": 11}, seed=1)
    (src / "set06").mkdir()
    norpix_seq(src / "set06" / "V000.seq", 36)
    data.prepare("kitticaltech", root=root, src=src, workers=1, **options)


def prep_taxibj(src: Path, root: Path, **options) -> None:
    taxibj_npz(src / "dataset.npz", train=20, test=3, sliding=True)
    data.prepare("taxibj", root=root, src=src, val=4, **options)


WEATHER = {  # dataset -> (folder, variable, levels) of each source archive
    "weather_t2m": [("2m_temperature", "t2m", None)],
    "weather_r": [("relative_humidity", "r", [500, 1000])],
    "weather_tcc": [("total_cloud_cover", "tcc", None)],
    "weather_uv10": [("10m_u_component_of_wind", "u10", None), ("10m_v_component_of_wind", "v10", None)],
    "weather_mv": [
        (f, v, [150, 500, 850])
        for f, v in (
            ("relative_humidity", "r"),
            ("temperature", "t"),
            ("u_component_of_wind", "u"),
            ("v_component_of_wind", "v"),
        )
    ],
}


def prep_weather(name: str) -> Callable:
    def prep(src: Path, root: Path, **options) -> None:
        for folder, variable, levels in WEATHER[name]:
            for year in (2010, 2011, 2012):
                weatherbench_year(src, folder, variable, year, 54, levels)
        data.prepare(name, root=root, src=src, train="2010", val="2011", test="2012", **options)

    return prep


def prep_videos(src: Path, root: Path, **options) -> None:
    for i in range(8):
        write_avi(src / f"clip{i}.avi", 12, size=(24, 24), seed=i)
    data.prepare("videos", root=root, src=src, size=16, frames="3:3", workers=1, val="0.25", test="0.25", **options)


def prep_arrays(src: Path, root: Path, **options) -> None:
    import numpy as np

    np.save(src / "field.npy", np.random.default_rng(0).normal(280, 5, (60, 2, 8, 8)).astype(np.float32))
    data.prepare("arrays", root=root, src=src / "field.npy", frames="3:3", split="0.6,0.2,0.2", **options)


PREPARE = {
    "digits": prep_digits("digits"),
    "digits_small": prep_digits("digits_small"),
    "mmnist": prep_mmnist,
    "kth": prep_kth("kth"),
    "kth40": prep_kth("kth40"),
    "human": prep_human,
    "kitticaltech": prep_kitticaltech,
    "taxibj": prep_taxibj,
    **{name: prep_weather(name) for name in WEATHER},
    "videos": prep_videos,
    "arrays": prep_arrays,
}
HOLDOUT_OPTION = ("kth", "kth40", "human", "taxibj")  # datasets whose `holdout=false` puts val in train


def prepared(name: str, tmp_path: Path, monkeypatch, **options) -> Path:
    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    prep = PREPARE[name]
    if name == "mmnist":
        prep(src, root, monkeypatch, **options)
    else:
        prep(src, root, **options)
    return root


def frame_hashes(name: str, split: str, root: Path) -> set[bytes]:
    """Digests of the bytes of every frame of every window of ``split`` (every epoch's, when generated)."""
    ds = data.create(name, split, root)
    epochs = (0, 1) if hasattr(ds, "set_epoch") else (0,)
    found = set()
    for epoch in epochs:
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        for i in range(len(ds)):
            inputs, targets = ds[i]
            for frame in [*inputs, *targets]:
                found.add(hashlib.blake2b(frame.numpy().tobytes(), digest_size=16).digest())
    return found


def listed_videos(manifest: dict, split: str) -> set[str]:
    """Source videos of ``split`` from the manifest's listing (human lists runs ``<video>_<first frame>``)."""
    entries = manifest.get("videos", {}).get(split, [])
    return {re.sub(r"_\d{6}$", "", entry[0]) for entry in entries if entry[2] > 0}


def overlap(name: str, root: Path) -> tuple[set[bytes], set[str]]:
    """Frames and source videos found in both ``train`` and ``val``."""
    manifest = data.load_manifest(name, root)
    frames = frame_hashes(name, "train", root) & frame_hashes(name, "val", root)
    videos = listed_videos(manifest, "train") & listed_videos(manifest, "val")
    return frames, videos


def test_every_registered_dataset_has_a_stand_in():
    assert set(PREPARE) == set(data.DATASETS.names())


@pytest.mark.parametrize("name", data.DATASETS.names())
def test_val_shares_no_frame_window_or_video_with_train(name, tmp_path, monkeypatch):
    root = prepared(name, tmp_path, monkeypatch)
    assert len(data.create(name, "train", root)) and len(data.create(name, "val", root))
    frames, videos = overlap(name, root)
    assert not frames and not videos
    assert data.load_manifest(name, root)["val_held_out"] is True


@pytest.mark.parametrize("name", HOLDOUT_OPTION)
def test_holdout_false_overlaps_and_says_so(name, tmp_path, monkeypatch):
    """The paper's protocols (val inside train) are caught by the same check, and recorded."""
    root = prepared(name, tmp_path, monkeypatch, holdout="false")
    frames, videos = overlap(name, root)
    assert frames and (videos or name == "taxibj")
    assert data.load_manifest(name, root)["val_held_out"] is False
