import pickle
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from data_standins import human_archives, human_clip_list, human_images

from svqbench import data
from svqbench.data import human
from svqbench.errors import SvqbenchError

VIDEOS = {
    "S1_Walking.54138969": 15,
    "S1_Eating.55011271": 12,
    "S9_Walking.54138969": 15,
    "S9_Greeting.58860488": 12,
}
SMALL = {"train_subjects": "1", "test_subjects": "9"}


def formula(images: int, stride: int = 5) -> int:
    return (images - 8) // stride + 1 if images >= 8 else 0


@pytest.fixture(scope="module")
def human_src(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("human_src")
    human_archives(folder, VIDEOS)
    return folder


@pytest.fixture(scope="module")
def prepared(human_src, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    data.prepare("human", root=root, src=human_src, workers=1, **SMALL)
    return root


@pytest.fixture(scope="module")
def expected_frames(tmp_path_factory) -> dict[str, dict[int, np.ndarray]]:
    """Each stand-in image read independently: {video: {frame number: (3, 256, 256) uint8 RGB}}."""
    folder = tmp_path_factory.mktemp("expected")
    made = human_images(folder, VIDEOS)
    frames = {}
    for video, numbers in made.items():
        frames[video] = {}
        for number in numbers:
            bgr = cv2.imread(str(folder / video / f"{video}_{number:06d}.jpg"))
            rgb = cv2.resize(bgr[:, :, ::-1], (256, 256), interpolation=cv2.INTER_LINEAR)
            frames[video][number] = rgb.transpose(2, 0, 1)
    return frames


def clip(expected, video: str, begin: int) -> np.ndarray:
    """(8, 3, 256, 256) uint8: images begin, begin + 5, ..., begin + 35 of ``video``."""
    return np.stack([expected[video][begin + 5 * k] for k in range(8)])


def as_uint8(x, y) -> np.ndarray:
    return np.round(np.concatenate([x.numpy(), y.numpy()]) * 255).astype(np.uint8)


def copy_src(human_src: Path, folder: Path, subjects=("S1", "S9")) -> Path:
    folder.mkdir()
    for subject in subjects:
        shutil.copy(human_src / f"{subject}.tar", folder)
    return folder


def test_clip_counts_follow_the_protocol_formula():
    for n in (0, 7, 8, 12, 13, 15, 100):
        assert len(human.clip_starts(n, 5)) == formula(n)
        assert len(human.clip_starts(n, 1)) == formula(n, 1)


def test_runs_break_at_missing_images():
    runs = human.runs_of("S1_A.1", {1, 6, 11, 21, 26, 3})
    assert [(r.first, r.length) for r in runs] == [(1, 3), (3, 1), (21, 2)]


def test_worker_jobs_survive_pickling_for_spawned_processes(human_src):
    run = human.Run("S1_Walking.54138969", 1, 2)
    job = (human.read_images, run.images({run.video: {1: human_src / "a.jpg", 6: human_src / "b.jpg"}}))
    assert pickle.loads(pickle.dumps(job)) == job


def test_subjects_protocol_window_counts_and_val_trials(prepared):
    manifest = data.load_manifest("human", prepared)
    splits = manifest["splits"]
    # S1's trials in name order: S1_Eating (-> val), S1_Walking (-> train)
    assert splits["val"]["trials"] == ["S1_Eating"]
    assert splits["train"]["windows"] == formula(VIDEOS["S1_Walking.54138969"])
    assert splits["val"]["windows"] == formula(VIDEOS["S1_Eating.55011271"])
    assert splits["test"]["windows"] == formula(15) + formula(12)
    assert splits["train"]["subjects"] == [1] and splits["test"]["subjects"] == [9]
    assert "S1" in manifest["info"]["protocol"] and len(manifest["sources"][0]["sha256"]) == 64


def test_splits_serve_rgb_clips_in_unit_range(prepared, expected_frames):
    for split in ("train", "val", "test"):
        ds = data.create("human", split, prepared)
        x, y = ds[len(ds) - 1]
        assert x.shape == (4, 3, 256, 256) and y.shape == (4, 3, 256, 256)
        assert 0.0 <= float(x.min()) and float(y.max()) <= 1.0
        red = x[0, 0] > 0.8
        assert red.any() and float(x[0, 2][red].max()) < 0.3  # channel 0 is red: RGB, not BGR
    train = data.create("human", "train", prepared)
    for i, begin in enumerate((1, 26)):  # clips every 5 images = 25 frames
        np.testing.assert_array_equal(as_uint8(*train[i]), clip(expected_frames, "S1_Walking.54138969", begin))


def test_extracted_images_give_the_same_dataset(prepared, tmp_path):
    src = tmp_path / "human"
    human_images(src / "images", VIDEOS, flat=True)  # OpenSTL's data/human/images layout
    data.prepare("human", root=tmp_path / "root", src=src, workers=1, **SMALL)
    for split in ("train", "val", "test"):
        a = np.load(prepared / "human" / split / "frames.npy")
        b = np.load(tmp_path / "root" / "human" / split / "frames.npy")
        np.testing.assert_array_equal(a, b)


TRAIN_CLIPS = [
    ("S1_Walking.54138969", 1),
    ("S1_Walking.54138969", 26),
    ("S1_Eating.55011271", 6),
    ("S9_Walking.54138969", 11),
]
TEST_CLIPS = [("S1_Walking.54138969", 26), ("S9_Greeting.58860488", 1)]


def test_openstl_protocol_follows_the_clip_lists(human_src, tmp_path, expected_frames):
    src = copy_src(human_src, tmp_path / "src")
    human_clip_list(src / "train.txt", TRAIN_CLIPS)
    human_clip_list(src / "test.txt", TEST_CLIPS)
    data.prepare("human", root=tmp_path / "root", src=src, workers=1, protocol="openstl")
    manifest = data.load_manifest("human", tmp_path / "root")
    splits = manifest["splits"]
    # val: per subject the first trial in name order, its training clips, which leave train
    assert splits["val"]["trials"] == ["S1_Eating", "S9_Walking"] and splits["val"]["windows"] == 2
    assert splits["train"]["windows"] == len(TRAIN_CLIPS) - 2 and splits["test"]["windows"] == len(TEST_CLIPS)
    # only the listed images are stored: S1_Walking 1..61 (13) in train, S1_Eating 6..41 and S9_Walking 11..46 in val
    assert splits["train"]["frames"] == 13 and splits["val"]["frames"] == 8 + 8
    assert splits["train"]["subjects"] == [1, 9] and splits["test"]["subjects"] == [1, 9]
    assert manifest["val_held_out"] is True
    test = data.create("human", "test", tmp_path / "root")
    for i, (video, begin) in enumerate(TEST_CLIPS):
        np.testing.assert_array_equal(as_uint8(*test[i]), clip(expected_frames, video, begin))
    # holdout=false: the published training list whole, as the paper trained
    data.prepare("human", root=tmp_path / "whole", src=src, workers=1, protocol="openstl", holdout="false")
    manifest = data.load_manifest("human", tmp_path / "whole")
    assert manifest["splits"]["train"]["windows"] == len(TRAIN_CLIPS) and manifest["splits"]["val"]["windows"] == 2
    assert manifest["splits"]["train"]["frames"] == 13 + 8 + 8 and manifest["val_held_out"] is False


def test_openstl_lists_are_downloaded_when_not_in_src(human_src, tmp_path):
    src = copy_src(human_src, tmp_path / "src")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    human_clip_list(mirror / "train.txt", TRAIN_CLIPS)
    human_clip_list(mirror / "test.txt", TEST_CLIPS)
    root = tmp_path / "root"
    data.prepare("human", root=root, src=src, workers=1, protocol="openstl", url=mirror.as_uri() + "/")
    manifest = data.load_manifest("human", root)
    assert manifest["splits"]["test"]["windows"] == len(TEST_CLIPS)
    assert (root / "downloads" / "human_train.txt").is_file()


def test_clip_needing_an_absent_image_is_a_one_line_error(human_src, tmp_path):
    src = copy_src(human_src, tmp_path / "src")
    human_clip_list(src / "train.txt", TRAIN_CLIPS)
    human_clip_list(src / "test.txt", [("S9_Greeting.58860488", 26)])  # needs 26..61, the video ends at 56
    with pytest.raises(SvqbenchError, match=r"S9_Greeting\.58860488_000061\.jpg") as err:
        data.prepare("human", root=tmp_path / "root", src=src, workers=1, protocol="openstl")
    assert "\n" not in str(err.value)


def test_missing_subject_archive_is_a_one_line_error(human_src, tmp_path):
    with pytest.raises(SvqbenchError, match=r"S5\.tar not found in --src") as err:
        data.prepare("human", root=tmp_path / "root", src=human_src, workers=1)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "root" / "human").exists()


def test_corrupt_image_is_a_one_line_error_naming_it(tmp_path):
    src = tmp_path / "src"
    human_images(src / "images", VIDEOS, flat=True)
    bad = src / "images" / "S9_Walking.54138969_000021.jpg"
    bad.write_bytes(b"not a jpeg" * 20)
    with pytest.raises(SvqbenchError, match="S9_Walking.54138969_000021.jpg") as err:
        data.prepare("human", root=tmp_path / "root", src=src, workers=1, **SMALL)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "root" / "human").exists()


@pytest.mark.parametrize("cut", ["header", "data"])
def test_truncated_archive_is_a_one_line_error_naming_it(human_src, tmp_path, cut):
    src = copy_src(human_src, tmp_path / "src")
    with tarfile.open(src / "S1.tar") as tf:
        member = tf.getmembers()[5]
    end = member.offset + 100 if cut == "header" else member.offset_data + 100
    (src / "S1.tar").write_bytes((src / "S1.tar").read_bytes()[:end])
    with pytest.raises(SvqbenchError, match=r"S1\.tar: .*truncated") as err:
        data.prepare("human", root=tmp_path / "root", src=src, workers=1, **SMALL)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"protocol": "strpm"}, "protocol='strpm'"),
        ({"protocol": "openstl", "stride": "1"}, "protocol=subjects only"),
        ({"train_subjects": "1,9", "test_subjects": "9"}, "shared subjects"),
        ({"train_subjects": "one"}, "train_subjects='one'"),
    ],
)
def test_bad_options_are_one_line_errors(human_src, tmp_path, options, message):
    with pytest.raises(SvqbenchError, match=message):
        data.prepare("human", root=tmp_path, src=human_src, workers=1, **options)


def test_src_is_required(tmp_path):
    with pytest.raises(SvqbenchError, match="needs --src"):
        data.prepare("human", root=tmp_path)
