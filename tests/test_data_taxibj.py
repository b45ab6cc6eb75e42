import zipfile

import numpy as np
import pytest
from data_standins import taxibj_npz

from svqbench import data
from svqbench.data import taxibj
from svqbench.errors import SvqbenchError


def test_release_archive_is_mapped_to_unit_range(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    npz = taxibj_npz(tmp_path / "dataset.npz")
    with zipfile.ZipFile(src / "taxibj_dataset.zip", "w") as zf:
        zf.write(npz, "taxibj/dataset.npz")
    monkeypatch.setattr(taxibj, "ROWS", 4)  # several blocks per array
    data.prepare("taxibj", root=tmp_path / "root", src=src, val=5)
    arrays = np.load(npz)
    test = data.create("taxibj", "test", tmp_path / "root")
    assert len(test) == 7
    x, y = test[3]
    assert x.shape == (4, 2, 32, 32) and y.shape == (4, 2, 32, 32)
    assert np.allclose(x.numpy(), (arrays["X_test"][3] + 1) / 2, atol=1e-6)
    assert np.allclose(y.numpy(), (arrays["Y_test"][3] + 1) / 2, atol=1e-6)
    train = data.create("taxibj", "train", tmp_path / "root")
    val = data.create("taxibj", "val", tmp_path / "root")
    assert len(train) == 25 and len(val) == 5  # independent random samples: none shares a frame with val
    assert np.allclose(val[0][0].numpy(), (arrays["X_train"][25] + 1) / 2, atol=1e-6)
    assert np.allclose(train[24][1].numpy(), (arrays["Y_train"][24] + 1) / 2, atol=1e-6)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_npz_in_src_holdout_and_bad_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    taxibj_npz(src / "dataset.npz", train=12, test=3)
    data.prepare("taxibj", root=tmp_path / "root", src=src, val=2, holdout="false")
    assert len(data.create("taxibj", "train", tmp_path / "root")) == 12
    assert data.load_manifest("taxibj", tmp_path / "root")["val_held_out"] is False
    blob = (src / "dataset.npz").read_bytes()
    (src / "dataset.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SvqbenchError, match="dataset.npz"):
        data.prepare("taxibj", root=tmp_path / "root2", src=src, val=2)
    assert not (tmp_path / "root2" / "taxibj").exists()


def test_training_samples_sharing_a_frame_with_val_leave_train(tmp_path):
    """The release's samples slide over one series: sample i's frames are series[i : i + 8]."""
    src = tmp_path / "src"
    src.mkdir()
    npz = taxibj_npz(src / "dataset.npz", train=20, test=3, sliding=True)
    data.prepare("taxibj", root=tmp_path, src=src, val=4)
    manifest = data.load_manifest("taxibj", tmp_path)
    # val = samples 16-19 (series frames 16-26); samples 9-15 reach frame 16 or later
    assert (
        manifest["splits"]["train"]["windows"] == 9 and manifest["splits"]["train"]["dropped_sharing_val_frames"] == 7
    )
    train = data.create("taxibj", "train", tmp_path)
    assert np.allclose(train[8][1].numpy(), (np.load(npz)["Y_train"][8] + 1) / 2, atol=1e-6)
