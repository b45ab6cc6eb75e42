"""The embedded ``digits`` dataset: deterministic, idempotent, served with the documented shapes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from svqbench import data
from svqbench.errors import SvqbenchError


def _digest(folder):
    return {
        split: hashlib.sha256((folder / split / "frames.npy").read_bytes()).hexdigest()
        for split in ("train", "val", "test")
    }


def test_prep_is_deterministic(tmp_path):
    a = data.prepare("digits", root=tmp_path / "a", train=3, val=2, test=2)
    b = data.prepare("digits", root=tmp_path / "b", train=3, val=2, test=2)
    assert _digest(a) == _digest(b)
    assert _digest(a)["train"] != _digest(a)["val"]  # splits use different seeds


def test_second_prep_is_a_noop_and_force_redoes(tmp_path):
    folder = data.prepare("digits", root=tmp_path, train=2, val=1, test=1)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert data.prepare("digits", root=tmp_path, train=2, val=1, test=1) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    data.prepare("digits", root=tmp_path, force=True, train=2, val=1, test=1)
    assert (folder / "manifest.json").stat().st_mtime_ns != stamp


def test_different_options_need_force(tmp_path):
    data.prepare("digits", root=tmp_path, train=2, val=1, test=1)
    with pytest.raises(SvqbenchError, match="--force"):
        data.prepare("digits", root=tmp_path, train=5, val=1, test=1)


def test_items_have_documented_shapes_and_range(digits_root):
    info = data.info("digits", digits_root)
    train = data.create("digits", "train", digits_root)
    assert len(train) == 12
    inputs, targets = train[3]
    assert inputs.shape == (info.frames_in, 1, 64, 64) and targets.shape == (info.frames_out, 1, 64, 64)
    assert inputs.dtype == targets.dtype
    assert 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0 and float(inputs.max()) > 0.5
    frames = np.load(digits_root / "digits" / "train" / "frames.npy", mmap_mode="r")
    assert frames.dtype == np.uint8


def test_missing_data_names_the_prep_command(tmp_path):
    with pytest.raises(SvqbenchError, match="svqbench prep digits"):
        data.create("digits", "train", tmp_path)


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "digits" / "train").mkdir(parents=True)
    with pytest.raises(SvqbenchError, match="incomplete"):
        data.create("digits", "train", tmp_path)


def test_unknown_dataset_and_option(tmp_path):
    with pytest.raises(SvqbenchError, match="unknown dataset 'cifar'"):
        data.prepare("cifar", root=tmp_path)
    with pytest.raises(SvqbenchError, match="unknown option 'size'"):
        data.prepare("digits", root=tmp_path, size=3)
    with pytest.raises(SvqbenchError, match="no split 'dev'"):
        data.create("digits", "dev", data.prepare("digits", root=tmp_path, train=1, val=1, test=1).parent)


def test_digits_small_is_one_small_digit_from_the_same_generator(tmp_path):
    folder = data.prepare("digits_small", root=tmp_path, train=3, val=1, test=1)
    assert folder.name == "digits_small"
    inputs, targets = data.create("digits_small", "train", tmp_path)[0]
    assert inputs.shape == (10, 1, 32, 32) and targets.shape == (10, 1, 32, 32)
    frames = np.load(folder / "train" / "frames.npy")
    for frame in frames:  # one 16x16 digit: its lit pixels fit in a 16x16 box
        ys, xs = np.nonzero(frame[0])
        assert 0 < np.ptp(ys) < 16 and 0 < np.ptp(xs) < 16
    again = data.prepare("digits_small", root=tmp_path / "again", train=3, val=1, test=1)
    assert _digest(folder) == _digest(again)
