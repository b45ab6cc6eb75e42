import numpy as np
import pytest
from data_standins import kitti_hickle, norpix_seq, write_avi

from svqbench import data
from svqbench.errors import SvqbenchError


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    (folder / "kitti").mkdir(parents=True)
    kitti_hickle(folder / "kitti", "train", {"city_1": 12, "road_2": 23})
    kitti_hickle(folder / "kitti", "val", {"city_3": 11})
    (folder / "Test" / "set06").mkdir(parents=True)
    (folder / "Test" / "set07").mkdir(parents=True)
    norpix_seq(folder / "Test" / "set06" / "V000.seq", 40)
    write_avi(folder / "Test" / "set07" / "V001.avi", 35, size=(64, 48))
    return folder


def test_kitti_train_and_caltech_test(src, tmp_path):
    data.prepare("kitticaltech", root=tmp_path, src=src, workers=1)
    manifest = data.load_manifest("kitticaltech", tmp_path)
    # KITTI: 12 // 11 + 23 // 11 windows; Caltech: every 3rd frame -> 13 and 11 frames -> 1 + 1
    assert {s: c["windows"] for s, c in manifest["splits"].items()} == {"train": 3, "val": 1, "test": 2}
    x, y = data.create("kitticaltech", "test", tmp_path)[1]
    assert x.shape == (10, 3, 128, 160) and y.shape == (1, 3, 128, 160)
    train = data.create("kitticaltech", "train", tmp_path)
    starts = np.load(tmp_path / "kitticaltech" / "train" / "starts.npy")
    assert sorted(starts.tolist()) == [1, 13, 24]  # windows end at each recording's last frame, then every 11
    assert 0.0 <= float(train[0][0].min()) and float(train[0][0].max()) <= 1.0
    seq_frames = manifest["splits"]["test"]["frames"]
    assert seq_frames == 13 + 11


def test_missing_hickle_is_named(src, tmp_path):
    (src / "kitti" / "sources_val.hkl").unlink()
    with pytest.raises(SvqbenchError, match="kitti_data.zip not found in --src"):
        data.prepare("kitticaltech", root=tmp_path, src=src, workers=1)
    assert not (tmp_path / "kitticaltech").exists()
