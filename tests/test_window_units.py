"""The independent resampling unit of each window: source videos, sequences, or blocks of windows."""

from __future__ import annotations

import numpy as np
from data_standins import write_avi

from svqbench import data
from svqbench.data.base import BLOCK_WINDOWS, DatasetInfo, DatasetSpec
from svqbench.data.taxibj import TaxiBJ


def test_video_windows_belong_to_their_source_video(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    for i in range(10):
        write_avi(src / f"clip{i}.avi", 14, size=(24, 24), seed=i)
    data.prepare(
        "videos",
        root=tmp_path,
        src=src,
        folder_name="mine",
        size=16,
        frames="4:2",
        stride="2",
        channels="1",
        val="0.2",
        test="0.2",
        workers=1,
    )
    units, unit = data.window_units("mine", "train", tmp_path)
    assert unit == "source video"
    assert np.array_equal(units, np.repeat(np.arange(6), 5))  # 6 videos of 5 windows each, in window order


def test_digits_windows_are_whole_sequences(digits_root):
    units, unit = data.window_units("digits", "test", digits_root)
    assert unit == "sequence" and np.array_equal(units, np.arange(4))


def test_default_units_are_blocks_of_two_window_lengths(tmp_path):
    info = DatasetInfo("stride1", frames_in=12, frames_out=12, channels=1, height=4, width=4)
    (tmp_path / "test").mkdir()
    np.save(tmp_path / "test" / "starts.npy", np.arange(100, 200))  # stride-1 windows
    units, unit = DatasetSpec().window_units(tmp_path, "test", {"info": info.to_dict()})
    span = BLOCK_WINDOWS * info.window
    assert np.array_equal(units, np.arange(100) // span) and unit == f"block of windows starting within {span} frames"
    np.save(tmp_path / "test" / "starts.npy", np.arange(10) * 8)
    units, unit = TaxiBJ().window_units(tmp_path, "test", {"info": TaxiBJ.info.to_dict()})
    assert np.array_equal(units, np.arange(10) // 16) and unit == "block of 16 consecutive samples"
