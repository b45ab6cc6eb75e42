"""Checked prepared data: the manifest's file records, checks on open, `prep --verify`, doctor, and eval refusing
changed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_cli import assert_one_line_error, invoke

from svqbench import data
from svqbench.bench.doctor import prepared_datasets
from svqbench.config import load_recipe
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError


@pytest.fixture
def small_root(tmp_path) -> Path:
    root = tmp_path / "data"
    data.prepare("digits", root=root, train=4, val=2, test=2)
    return root


def flip_a_byte(path: Path, offset_from_end: int = 100) -> None:
    blob = bytearray(path.read_bytes())
    blob[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_manifest_records_every_prepared_file(small_root):
    manifest = json.loads((small_root / "digits" / "manifest.json").read_text())
    files = manifest["files"]
    assert set(files) == {f"{s}/{n}.npy" for s in ("train", "val", "test") for n in ("frames", "starts")}
    frames = files["test/frames.npy"]
    assert frames["shape"] == [40, 1, 64, 64] and frames["dtype"] == "|u1" and len(frames["sha256"]) == 64
    assert frames["bytes"] == (small_root / "digits" / "test" / "frames.npy").stat().st_size
    assert data.verify("digits", small_root) == []
    assert invoke("prep", "digits", "--root", small_root, "--verify").exit_code == 0


def test_flipped_bytes_are_found_by_verify_doctor_and_eval(tmp_path, small_root, tiny_recipe, isolated_leaderboards):
    run_dir = tmp_path / "run"
    train(load_recipe(tiny_recipe), run_dir, torch.device("cpu"), data_root=small_root)
    assert invoke("eval", run_dir, "--root", small_root, "--device", "cpu").exit_code == 0
    row_before = (isolated_leaderboards / "digits.csv").read_text()
    frames = small_root / "digits" / "test" / "frames.npy"
    flip_a_byte(frames)
    expected = (str(frames), "checksum differs", f"svqbench prep digits --root {small_root} --force")
    assert_one_line_error(invoke("prep", "digits", "--root", small_root, "--verify"), *expected)
    assert_one_line_error(invoke("eval", run_dir, "--root", small_root, "--device", "cpu"), *expected)
    assert (isolated_leaderboards / "digits.csv").read_text() == row_before  # the good row stays
    assert "DAMAGED" in " ".join(prepared_datasets(small_root))


def test_a_truncated_array_or_a_damaged_header_is_one_line(small_root):
    frames = small_root / "digits" / "test" / "frames.npy"
    original = frames.read_bytes()
    frames.write_bytes(original[: len(original) // 2])
    with pytest.raises(SvqbenchError, match=r"frames.npy: \d+ bytes, the manifest records \d+ .*--force"):
        data.create("digits", "test", small_root)
    frames.write_bytes(original[:20] + b"\x00" * 40 + original[60:])  # same size, header destroyed
    with pytest.raises(SvqbenchError, match=r"frames.npy: damaged .npy header.*--force"):
        data.create("digits", "test", small_root)


def test_a_folder_prepared_without_records_still_gives_one_line(small_root):
    manifest_path = small_root / "digits" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"]
    manifest_path.write_text(json.dumps(manifest))
    frames = small_root / "digits" / "test" / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:1000])
    with pytest.raises(SvqbenchError, match=r"test: unreadable .*--force"):
        data.create("digits", "test", small_root)
    assert "without checksums" in data.verify("digits", small_root)[0]
