from pathlib import Path

import pytest
from data_standins import write_avi

from svqbench import data
from svqbench.errors import SvqbenchError

REFERENCE_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "videos"


def test_reference_clips_split_by_name(tmp_path):
    if not REFERENCE_VIDEOS.is_dir():
        pytest.skip("shared reference videos absent")
    data.prepare("videos", root=tmp_path, src=REFERENCE_VIDEOS, folder_name="clips", size=32, workers=2)
    manifest = data.load_manifest("clips", tmp_path)
    assert manifest["spec"] == "videos" and manifest["dataset"] == "clips"
    # 75-frame clips, 20-frame windows without overlap: 3 per clip; 2 train, 2 val, 1 test clip
    assert {s: c["windows"] for s, c in manifest["splits"].items()} == {"train": 6, "val": 6, "test": 3}
    x, y = data.create("clips", "val", tmp_path)[5]
    assert x.shape == (10, 3, 32, 32) and y.shape == (10, 3, 32, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_untagged_files_are_shared_by_fraction_with_stride_and_crop(tmp_path):
    src = tmp_path / "mine"
    (src / "sub").mkdir(parents=True)
    for i in range(10):
        write_avi(src / "sub" / f"clip{i}.avi", 14, size=(48, 24), seed=i)
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
    manifest = data.load_manifest("mine", tmp_path)
    assert {s: c["videos"] for s, c in manifest["splits"].items()} == {"train": 6, "val": 2, "test": 2}
    # windows of 6 frames every 2 frames in 14 frames: starts 0, 2, 4, 6, 8
    assert manifest["splits"]["train"]["windows"] == 6 * 5
    x, y = data.create("mine", "train", tmp_path)[0]
    assert x.shape == (4, 1, 16, 16) and y.shape == (2, 1, 16, 16)


def test_bad_inputs_are_one_line_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SvqbenchError, match="no video files"):
        data.prepare("videos", root=tmp_path, src=src)
    write_avi(src / "train_a.avi", 30)
    write_avi(src / "val_a.avi", 30)
    (src / "test_a.avi").write_bytes(b"\x00" * 1000)
    with pytest.raises(SvqbenchError, match="test_a.avi") as err:
        data.prepare("videos", root=tmp_path, src=src, workers=1)
    assert "\n" not in str(err.value) and not (tmp_path / "videos").exists()
    with pytest.raises(SvqbenchError, match="frames='10'"):
        data.prepare("videos", root=tmp_path, src=src, frames="10")
