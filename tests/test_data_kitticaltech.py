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


def test_hickle_files_are_read_as_plain_hdf5_never_unpickled(tmp_path, monkeypatch):
    """hickle 5 files (as PredNet's loader reads them) and the older one-dataset layout, read with h5py only."""
    import h5py
    import hickle

    from svqbench.data import kitticaltech

    monkeypatch.setattr(hickle, "load", lambda *args, **kwargs: pytest.fail("hickle.load unpickles; never call it"))
    names = ["city-2011_09_26_drive_0001_sync"] * 3 + ["road-2011_09_26_drive_0015_sync"] * 2 + ["é"]
    hickle.dump(list(names), tmp_path / "names5.hkl")
    hickle.dump(np.arange(6 * 4 * 5 * 3, dtype=np.uint8).reshape(6, 4, 5, 3), tmp_path / "frames5.hkl")
    assert kitticaltech.read_hickle(tmp_path / "names5.hkl", want_strings=True) == names
    frames = kitticaltech.read_hickle(tmp_path / "frames5.hkl", want_strings=False)
    np.testing.assert_array_equal(frames[()], np.arange(360, dtype=np.uint8).reshape(6, 4, 5, 3))
    with h5py.File(tmp_path / "names2.hkl", "w") as f:  # hickle 2/3: one dataset data_0 of byte strings
        f.create_dataset("data_0", data=np.array([n.encode() for n in names]))
        f["data_0"].attrs["type"] = [b"list"]
    assert kitticaltech.read_hickle(tmp_path / "names2.hkl", want_strings=True) == names
    with h5py.File(tmp_path / "empty.hkl", "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(SvqbenchError, match="no readable list of source names"):
        kitticaltech.read_hickle(tmp_path / "empty.hkl", want_strings=True)


def test_a_val_recording_found_in_train_leaves_train(tmp_path):
    src = tmp_path / "src"
    (src / "set06").mkdir(parents=True)
    kitti_hickle(src, "train", {"city_1": 12, "city_3": 22})
    kitti_hickle(src, "val", {"city_3": 11}, seed=1)
    norpix_seq(src / "set06" / "V000.seq", 40)
    data.prepare("kitticaltech", root=tmp_path, src=src, workers=1)
    manifest = data.load_manifest("kitticaltech", tmp_path)
    assert (
        manifest["splits"]["train"]["windows"] == 1
        and manifest["splits"]["train"]["recordings_also_in_val_dropped"] == 1
    )
    assert manifest["videos"]["train"] == [["city_1", 12, 1], ["city_3", 22, 0]]
