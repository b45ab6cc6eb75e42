from pathlib import Path

import numpy as np
import pytest
from data_standins import kth_archives, kth_sequence_file

from svqbench import data
from svqbench.data import kth
from svqbench.errors import SvqbenchError

VIDEOS = {
    "boxing": [(1, 35), (16, 55), (17, 31)],
    "handclapping": [(2, 31)],
    "handwaving": [(25, 30)],
    "walking": [(3, 29)],
    "jogging": [(20, 53)],
    "running": [(1, 52), (16, 33), (17, 36)],
}


@pytest.fixture(scope="module")
def kth_src(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("kth_src")
    return folder, kth_archives(folder, VIDEOS)


@pytest.fixture(scope="module")
def prepared(kth_src, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    data.prepare("kth", root=root, src=kth_src[0], workers=1)
    return root


def openstl_scan(videos: list[tuple[str, str, int]], seq_len: int) -> set[tuple[str, int]]:
    """OpenSTL's backward scan over all frames of ``videos`` (name, action, frames) laid end to end."""
    marks, actions, names, local = [], [], [], []
    for mark, (name, action, n) in enumerate(videos):
        marks += [mark] * n
        actions += [action] * n
        names += [name] * n
        local += list(range(n))
    found = set()
    index = len(marks) - 1
    while index >= seq_len - 1:
        if marks[index] == marks[index - seq_len + 1]:
            found.add((names[index], local[index - seq_len + 1]))
            index -= seq_len - 1 if actions[index] not in ("jogging", "running") else 2
        index -= 1
    return found


def prepared_windows(root: Path, name: str, split: str) -> set[tuple[str, int]]:
    manifest = data.load_manifest(name, root)
    starts = np.load(root / name / split / "starts.npy")
    offsets, found = {}, set()
    offset = 0
    for stem, frames, _ in manifest["videos"][split]:
        offsets[stem] = (offset, frames)
        offset += frames
    for s in starts:
        stem = next(k for k, (o, n) in offsets.items() if o <= s < o + n)
        found.add((stem, int(s) - offsets[stem][0]))
    return found


def test_window_counts_follow_the_protocol_formula():
    for n in (29, 30, 31, 59, 60, 61, 200):
        assert len(kth.window_starts(n, 30, "boxing")) == n // 30
        assert len(kth.window_starts(n, 30, "running")) == ((n - 30) // 3 + 1 if n >= 30 else 0)


def scanned(made: dict, persons) -> set[tuple[str, int]]:
    videos = [(f"person{p:02d}_{a}_d1_uncomp", a, n) for (p, a), n in sorted(made.items()) if p in persons]
    return openstl_scan(videos, 30)


@pytest.mark.parametrize("split, persons", [("train", range(1, 15)), ("val", (15, 16)), ("test", range(17, 26))])
def test_windows_equal_openstl_scan(prepared, kth_src, split, persons):
    expected = scanned(kth_src[1], persons)
    assert expected and prepared_windows(prepared, "kth", split) == expected


def test_holdout_false_trains_on_persons_1_to_16_as_the_paper(kth_src, tmp_path):
    data.prepare("kth", root=tmp_path, src=kth_src[0], workers=1, holdout="false")
    assert prepared_windows(tmp_path, "kth", "train") == scanned(kth_src[1], range(1, 17))
    assert prepared_windows(tmp_path, "kth", "val") == scanned(kth_src[1], (15, 16))
    manifest = data.load_manifest("kth", tmp_path)
    assert manifest["val_held_out"] is False and "also in train" in manifest["info"]["protocol"]


def test_splits_serve_documented_shapes_in_unit_range(prepared):
    for split in ("train", "val", "test"):
        ds = data.create("kth", split, prepared)
        x, y = ds[len(ds) - 1]
        assert x.shape == (10, 1, 128, 128) and y.shape == (20, 1, 128, 128)
        assert 0.0 <= float(x.min()) and float(y.max()) <= 1.0 and float(x.max()) > 0.5
    manifest = data.load_manifest("kth", prepared)
    assert manifest["splits"]["val"]["persons"] == [15, 16]
    assert {v[0][:8] for v in manifest["videos"]["val"]} == {"person16"}
    assert all(len(record["sha256"]) == 64 for record in manifest["sources"])


def test_holdout_removes_val_persons_from_train(kth_src, tmp_path):
    data.prepare("kth", root=tmp_path, src=kth_src[0], workers=1, holdout="true", val_persons="1")
    manifest = data.load_manifest("kth", tmp_path)
    assert 1 not in manifest["splits"]["train"]["persons"] and 16 in manifest["splits"]["train"]["persons"]
    assert {v[0][:8] for v in manifest["videos"]["val"]} == {"person01"}
    assert manifest["val_held_out"] is True


def test_kth40_uses_fifty_frame_windows(kth_src, tmp_path):
    data.prepare("kth40", root=tmp_path, src=kth_src[0], workers=2)
    ds = data.create("kth40", "train", tmp_path)
    x, y = ds[0]
    assert x.shape[0] == 10 and y.shape[0] == 40
    # training videos of 50+ frames: person 01 running ((52 - 50) // 3 + 1 = 1); person 16 boxing is in val
    assert len(ds) == 1 and len(data.create("kth40", "val", tmp_path)) == 1


def test_second_prep_is_a_noop_and_force_redoes(prepared, kth_src):
    manifest = prepared / "kth" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    data.prepare("kth", root=prepared, src=kth_src[0], workers=1)
    assert manifest.stat().st_mtime_ns == before
    data.prepare("kth", root=prepared, src=kth_src[0], workers=1, force=True)
    assert manifest.stat().st_mtime_ns != before


def test_interrupted_prep_leaves_nothing_that_looks_complete(kth_src, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kth, "write_video_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.prepare("kth", root=tmp_path, src=kth_src[0], workers=1)
    with pytest.raises(SvqbenchError, match="not prepared"):
        data.create("kth", "train", tmp_path)
    monkeypatch.undo()
    data.prepare("kth", root=tmp_path, src=kth_src[0], workers=1)
    assert len(data.create("kth", "test", tmp_path)) > 0
    assert not list(tmp_path.glob(".kth.*.partial"))


def test_missing_archive_is_a_one_line_error(kth_src, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "boxing.zip").write_bytes((kth_src[0] / "boxing.zip").read_bytes())
    with pytest.raises(SvqbenchError, match=r"handclapping\.zip not found in --src") as err:
        data.prepare("kth", root=tmp_path / "root", src=src, workers=1)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "root" / "kth").exists()


def test_corrupt_video_is_a_one_line_error_naming_it(kth_src, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for action in VIDEOS:
        (src / f"{action}.zip").write_bytes((kth_src[0] / f"{action}.zip").read_bytes())
    bad = src / "extracted" / "person05_walking_d2_uncomp.avi"
    bad.parent.mkdir()
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(SvqbenchError, match="person05_walking_d2_uncomp.avi") as err:
        data.prepare("kth", root=tmp_path / "root", src=src, workers=1)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "root" / "kth").exists()


SEQUENCES = {
    "person01_boxing_d1": "1-35, 1-40",  # both give the window at frames 5-34: kept once
    "person16_boxing_d1": "1-45, 10-55",  # overlapping subsequences with different windows
    "person01_running_d1": "1-40, 41-60",  # the second runs past the video's 52 frames and is too short
    "person17_boxing_d1": "2-31",
    "person17_running_d1": "1-36",
    "person20_jogging_d1": "5-53",
    "person25_handwaving_d1": "1-12, 13-30",
}  # person02_handclapping, person03_walking and person16_running are not listed: no windows


def sequence_windows(made: dict, persons) -> set[tuple[str, int]]:
    """OpenSTL's scan run separately over each listed subsequence, clipped to the video."""
    found = set()
    for (person, action), n in made.items():
        name = f"person{person:02d}_{action}_d1"
        if person not in persons or name not in SEQUENCES:
            continue
        for text in SEQUENCES[name].split(","):
            first, last = (int(v) for v in text.split("-"))
            length = min(last, n) - (first - 1)
            local = openstl_scan([(name + "_uncomp", action, length)], 30)
            found |= {(stem, start + first - 1) for stem, start in local}
    return found


@pytest.fixture(scope="module")
def sequences_src(kth_src, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kth_sequences_src")
    for action in VIDEOS:
        (folder / f"{action}.zip").symlink_to(kth_src[0] / f"{action}.zip")
    kth_sequence_file(folder / "00sequences.txt", SEQUENCES, missing=("person13_handclapping_d3",))
    return folder


def test_sequences_protocol_keeps_windows_inside_listed_subsequences(sequences_src, kth_src, tmp_path):
    data.prepare("kth", root=tmp_path, src=sequences_src, workers=1, protocol="sequences")
    for split, persons in (("train", range(1, 15)), ("test", range(17, 26))):
        expected = sequence_windows(kth_src[1], persons)
        assert expected and prepared_windows(tmp_path, "kth", split) == expected
    manifest = data.load_manifest("kth", tmp_path)
    assert "00sequences.txt" in manifest["info"]["protocol"]
    assert manifest["sources"][-1]["file"] == "00sequences.txt"
    # person01 running: 4 windows in frames 1-40 instead of 8 over all 52 frames
    assert ["person01_running_d1_uncomp", 52, 4] in manifest["videos"]["train"]


def test_subsequence_windows_use_the_backward_scan_per_subsequence():
    starts = kth.subsequence_window_starts(52, 30, "running", [(0, 40), (40, 60)])
    np.testing.assert_array_equal(starts, kth.window_starts(40, 30, "running"))
    assert len(kth.subsequence_window_starts(100, 30, "boxing", [])) == 0


def test_bad_sequence_line_is_a_one_line_error_naming_it(sequences_src, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for action in VIDEOS:
        (src / f"{action}.zip").symlink_to(sequences_src / f"{action}.zip")
    kth_sequence_file(src / "00sequences.txt", {"person01_boxing_d1": "1-35", "person02_boxing_d1": "40-12"})
    with pytest.raises(SvqbenchError, match=r"00sequences\.txt:\d+: .*person02_boxing_d1") as err:
        data.prepare("kth", root=tmp_path / "root", src=src, workers=1, protocol="sequences")
    assert "\n" not in str(err.value)
    (src / "00sequences.txt").unlink()
    with pytest.raises(SvqbenchError, match=r"00sequences\.txt not found in --src"):
        data.prepare("kth", root=tmp_path / "root", src=src, workers=1, protocol="sequences")
