"""Your own clips in three commands: prep videos, train a generic `videos/` recipe on it, eval / render /
predict; names and leaderboards carry the dataset used; predict prepares a clip as prep did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED, TINY_MODEL
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app
from svqbench.config import load_recipe
from svqbench.engine.predict import read_clip
from svqbench.engine.runs import new_run_dir

VIDEOS = SHARED / "reference" / "videos"
needs_videos = pytest.mark.skipif(not VIDEOS.is_dir(), reason="needs ../shared/reference/videos")


@pytest.mark.parametrize("recipe", ["persistence", "blank", "simvp", "simvp_svq"])
def test_run_names_carry_the_dataset_used(recipe):
    loaded = load_recipe(f"videos/{recipe}", ["dataset=mine"])
    assert new_run_dir(loaded).name.startswith(f"mine-{recipe}-")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@needs_videos
def test_three_commands_on_example_clips(tmp_path, monkeypatch, isolated_leaderboards):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    prepped = invoke(
        "prep",
        "videos",
        "--src",
        VIDEOS,
        "--name",
        "mine",
        "--size",
        24,
        "--frames",
        "3:2",
        "--root",
        root,
        "--opt",
        "channels=1",
    )
    assert prepped.exit_code == 0, prepped.output
    tiny = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        "model.codebook_size=8",
        "train.max_steps=2",
        "train.epochs=1",
        "train.num_workers=0",
    ]
    trained = invoke(
        "train",
        "videos/simvp_svq",
        "--set",
        "dataset=mine",
        *[a for s in tiny for a in ("--set", s)],
        "--root",
        root,
        "--device",
        "cpu",
        "--quiet",
    )
    assert trained.exit_code == 0, trained.output
    run_dir = tmp_path / trained.output.strip()
    assert run_dir.name.startswith("mine-simvp_svq-")
    assert invoke("eval", run_dir, "--root", root).exit_code == 0
    board = (isolated_leaderboards / "mine.csv").read_text()
    assert run_dir.name in board
    assert invoke("render", run_dir, "--root", root, "--out", tmp_path / "r.gif").exit_code == 0
    predicted = invoke("predict", run_dir, VIDEOS / "test_example.avi", "--root", root, "--out", tmp_path / "p.npy")
    assert predicted.exit_code == 0, predicted.output
    assert np.load(tmp_path / "p.npy").shape == (2, 1, 24, 24)


@needs_videos
@pytest.mark.parametrize("channels", [1, 3])
def test_predict_prepares_a_clip_exactly_as_prep(tmp_path, channels):
    """The test split holds only test_example.avi, so its last frames are what predict must read."""
    data.prepare("videos", root=tmp_path, src=VIDEOS, folder_name="mine", size=20, frames="3:2", channels=channels)
    frames = np.load(tmp_path / "mine" / "test" / "frames.npy")
    clip = read_clip(VIDEOS / "test_example.avi", 3, channels, 20, 20)
    torch.testing.assert_close(clip, torch.from_numpy(frames[-3:].astype(np.float32) / 255.0))
