"""Preparing a dataset never loses a complete one: concurrent preps wait, a failed re-prep keeps the old."""

from __future__ import annotations

import functools
import os
import threading
import time

import numpy as np
import pytest

from svqbench import data, fileio
from svqbench.data.digits import Digits
from svqbench.errors import SvqbenchError

SMALL = {"train": 2, "val": 1, "test": 1}


def frames(root, split="train") -> np.ndarray:
    return np.load(root / "digits" / split / "frames.npy")


def test_concurrent_preps_wait_for_each_other_and_prepare_once(tmp_path, monkeypatch, capsys):
    calls = []
    original = Digits.prepare

    @functools.wraps(original)  # keeps the signature that prep checks options against
    def slow_prepare(self, target, src, **options):
        calls.append(target)
        time.sleep(0.5)  # long enough for the second prep to find the lock held
        return original(self, target, src, **options)

    monkeypatch.setattr(Digits, "prepare", slow_prepare)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(data.prepare("digits", root=tmp_path, **SMALL)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results == [tmp_path / "digits"] * 2
    assert "waiting for another prep" in capsys.readouterr().err
    assert len(data.create("digits", "train", tmp_path)) == 2
    assert not list(tmp_path.glob(".digits.*.partial")) and not list(tmp_path.glob(".digits.*.old"))


def test_failed_force_reprep_keeps_the_old_dataset(tmp_path, monkeypatch):
    data.prepare("digits", root=tmp_path, **SMALL)
    before = frames(tmp_path)

    @functools.wraps(Digits.prepare)
    def crash_midway(self, target, src, **options):
        (target / "train").mkdir()
        np.save(target / "train" / "frames.npy", np.zeros((1, 1, 64, 64), np.uint8))
        raise RuntimeError("killed in the middle of the prep")

    monkeypatch.setattr(Digits, "prepare", crash_midway)
    with pytest.raises(RuntimeError, match="killed"):
        data.prepare("digits", root=tmp_path, force=True, **SMALL)
    np.testing.assert_array_equal(frames(tmp_path), before)
    assert len(data.create("digits", "val", tmp_path)) == 1
    assert not list(tmp_path.glob(".digits.*.partial"))


def test_failed_swap_puts_the_old_dataset_back(tmp_path, monkeypatch):
    data.prepare("digits", root=tmp_path, **SMALL)
    before = frames(tmp_path)
    renames = []

    def replace_failing_on_the_new_folder(source, target):
        renames.append((source, target))
        if str(source).endswith(".partial"):
            raise OSError("disk gone")
        os.rename(source, target)

    monkeypatch.setattr(fileio.os, "replace", replace_failing_on_the_new_folder)
    with pytest.raises(OSError, match="disk gone"):
        data.prepare("digits", root=tmp_path, force=True, train=3, val=1, test=1)
    monkeypatch.undo()
    assert any(str(target).endswith(".old") for _, target in renames)  # the old one was only moved aside
    np.testing.assert_array_equal(frames(tmp_path), before)


def test_crash_between_the_swap_renames_is_repaired_by_the_next_prep(tmp_path, monkeypatch):
    """A kill after the old folder was moved aside, before the new one took its place."""
    data.prepare("digits", root=tmp_path, **SMALL)
    before = frames(tmp_path)
    os.replace(tmp_path / "digits", tmp_path / ".digits.x1y2.old")

    @functools.wraps(Digits.prepare)
    def must_not_run(*args, **kwargs):
        pytest.fail("the old dataset was complete")

    monkeypatch.setattr(Digits, "prepare", must_not_run)
    assert data.prepare("digits", root=tmp_path, **SMALL) == tmp_path / "digits"
    np.testing.assert_array_equal(frames(tmp_path), before)
    assert not list(tmp_path.glob(".digits.*.old"))


def test_outdated_folder_is_refused_with_the_prep_command(tmp_path, monkeypatch):
    data.prepare("digits", root=tmp_path, **SMALL)
    manifest = tmp_path / "digits" / "manifest.json"
    text = manifest.read_text()
    monkeypatch.setattr(Digits, "format_version", Digits.format_version + 1)  # a newer svqbench splits differently
    with pytest.raises(SvqbenchError, match=r"older svqbench .*svqbench prep digits .*--force"):
        data.create("digits", "train", tmp_path)
    data.prepare("digits", root=tmp_path, **SMALL)  # a plain prep brings it up to date
    assert manifest.read_text() != text
    assert len(data.create("digits", "train", tmp_path)) == 2
