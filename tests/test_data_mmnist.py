import dataclasses

import numpy as np
import pytest
import torch
from data_standins import md5, mnist_idx_gz, mnist_test_seq

from svqbench import data
from svqbench.data import mmnist
from svqbench.errors import SvqbenchError


@pytest.fixture
def src(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    digits = mnist_idx_gz(folder / "train-images-idx3-ubyte.gz")
    test = mnist_test_seq(folder / "mnist_test_seq.npy")
    monkeypatch.setattr(mmnist, "DIGITS", dataclasses.replace(mmnist.DIGITS, md5=md5(digits)))
    monkeypatch.setattr(mmnist, "TEST", dataclasses.replace(mmnist.TEST, md5=md5(test)))
    return folder


def test_splits_and_reproducible_epochs(src, tmp_path):
    data.prepare("mmnist", root=tmp_path, src=src, train_length=8, val=3, val_digits=10)
    train = data.create("mmnist", "train", tmp_path)
    assert len(train) == 8
    x, y = train[5]
    assert x.shape == (10, 1, 64, 64) and y.shape == (10, 1, 64, 64)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.4
    assert torch.equal(train[5][0], x)
    train.set_epoch(1)
    assert not torch.equal(train[5][0], x)
    assert len(data.create("mmnist", "val", tmp_path)) == 3
    # training draws from the first 40 of the 50 digits only; val from the last 10
    digits = mmnist.read_idx_images(src / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(np.load(tmp_path / "mmnist" / "train" / "digits.npy"), digits[:40])
    test = data.create("mmnist", "test", tmp_path)
    assert len(test) == 6
    xt, yt = test[2]
    # frame t of sequence 2 was filled with 2*20+t
    assert np.allclose(xt[:, 0, 0, 0].numpy() * 255, 40 + np.arange(10))
    assert np.allclose(yt[:, 0, 0, 0].numpy() * 255, 50 + np.arange(10))


def test_published_checksum_rejects_a_different_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    mnist_idx_gz(src / "train-images-idx3-ubyte.gz")
    mnist_test_seq(src / "mnist_test_seq.npy")
    with pytest.raises(SvqbenchError, match="train-images-idx3-ubyte.gz: md5 .* does not match"):
        data.prepare("mmnist", root=tmp_path, src=src)
    assert not (tmp_path / "mmnist").exists()


def test_truncated_digits_file_is_named(src, tmp_path, monkeypatch):
    digits = src / "train-images-idx3-ubyte.gz"
    digits.write_bytes(digits.read_bytes()[:200])
    monkeypatch.setattr(mmnist, "DIGITS", dataclasses.replace(mmnist.DIGITS, md5=md5(digits)))
    with pytest.raises(SvqbenchError, match="train-images-idx3-ubyte.gz"):
        data.prepare("mmnist", root=tmp_path, src=src)
