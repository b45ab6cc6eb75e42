"""eval --frames N (rollout past the training horizon) and --dataset OTHER (another prepared dataset of the run's
clip shape): curves over the whole horizon, rows that say so, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_MODEL
from test_cli import assert_one_line_error, invoke

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.results import leaderboard

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def long_root(tmp_path_factory, digits_root):
    """The tiny digits (10 -> 10) beside the same sequences generated 10 -> 30 (``prep digits --frames 10:30``),
    and digits_small (another frame size)."""
    root = tmp_path_factory.mktemp("long")
    for name in ("digits",):
        (root / name).symlink_to(digits_root / name)
    data.prepare("digits", root=root, folder_name="digits_long", train=12, val=4, test=4, frames="10:30")
    data.prepare("digits_small", root=root, train=12, val=4, test=4)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, long_root):
    folder = tmp_path_factory.mktemp("horizon")
    recipe = folder / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "simvp", **TINY_MODEL},
                "train": {"epochs": 1, "max_steps": 2, "batch_size": 4, "num_workers": 0},
                "eval": {"metrics": ["mae", "mse"], "batch_size": 4},
            }
        )
    )
    return train(load_recipe(str(recipe)), folder / "run", CPU, data_root=long_root)


def test_a_10_to_10_run_rolls_out_over_30_frames_on_longer_windows(run, long_root, isolated_leaderboards):
    standard = evaluate(run, CPU, data_root=long_root)
    long = evaluate(run, CPU, data_root=long_root, dataset="digits_long", frames=30, plot=True)
    assert len(long["per_frame"]["mse"]) == 30 and len(standard["per_frame"]["mse"]) == 10
    assert long["split"] == "digits_long:test/frames=30" and long["horizon"] == 10 and long["frames_out"] == 30
    assert long["trained_on"] == "digits" and long["dataset"] == "digits_long"
    # the longer windows start with the very same 20 frames: the first 10 predicted frames score the same
    np.testing.assert_allclose(long["per_frame"]["mse"][:10], standard["per_frame"]["mse"], rtol=1e-5)
    assert (run / "horizon.png").is_file()
    table = leaderboard.read("digits")
    rolled = table[table["split"] == "digits_long:test/frames=30"].iloc[0]
    assert rolled["frames"] == "10->30" and rolled["horizon"] == 10 and rolled["eval_dataset"] == "digits_long"
    assert len(table[table["split"] == "test"]) == 1  # two rows: never ranked together (different splits)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "digits_long:test/frames=30"


def test_fewer_frames_than_trained_and_the_same_dataset(run, long_root, isolated_leaderboards):
    short = evaluate(run, CPU, data_root=long_root, frames=5, update_leaderboard=False)
    assert short["split"] == "test/frames=5" and len(short["per_frame"]["mae"]) == 5


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--frames", "30"], ["--frames 30: dataset 'digits' has 10 target frames", "--dataset NAME"]),
        (["--dataset", "digits_long", "--frames", "40"], ["--frames 40: dataset 'digits_long' has 30"]),
        (
            ["--dataset", "digits_small"],
            ["--dataset digits_small: its clips are 10 input frames of 1x32x32", "1x64x64"],
        ),
        (["--dataset", "nowhere"], ["nowhere"]),
        (["--frames", "0"], ["--frames 0: valid: an integer >= 1"]),
    ],
)
def test_mismatches_are_one_line(run, long_root, args, needles):
    result = invoke("eval", run, "--root", long_root, "--device", "cpu", *args)
    assert_one_line_error(result, *needles)


def test_prep_takes_window_lengths_and_records_them(tmp_path):
    data.prepare("digits_small", root=tmp_path, train=2, val=1, test=1, frames="5:15")
    info = data.info("digits_small", tmp_path)
    assert (info.frames_in, info.frames_out) == (5, 15)
    assert data.load_manifest("digits_small", tmp_path)["options"]["frames"] == "5:15"
    inputs, targets = data.create("digits_small", "test", tmp_path)[0]
    assert inputs.shape[0] == 5 and targets.shape[0] == 15
    with pytest.raises(SvqbenchError, match="expected IN:OUT"):
        data.prepare("digits_small", root=tmp_path / "x", train=2, val=1, test=1, frames="5")


def test_window_building_preps_take_the_window_lengths(tmp_path):
    """WeatherBench (as KTH, KittiCaltech and the generated sets): ``--frames IN:OUT`` cuts other windows from the
    same recordings and records them; the default keeps the dataset's own."""
    from data_standins import weatherbench_year

    for year in range(2010, 2014):
        weatherbench_year(tmp_path / "src", "2m_temperature", "t2m", year, 40)
    years = {"train": "2010-2011", "val": "2012", "test": "2013"}
    data.prepare("weather_t2m", root=tmp_path, src=tmp_path / "src", frames="6:18", **years)
    info = data.info("weather_t2m", tmp_path)
    assert (info.frames_in, info.frames_out) == (6, 18)
    assert data.load_manifest("weather_t2m", tmp_path)["splits"]["test"]["windows"] == 40 - 24 + 1
    inputs, targets = data.create("weather_t2m", "test", tmp_path)[0]
    assert inputs.shape[0] == 6 and targets.shape[0] == 18


def test_load_run_forecasts_in_the_python_api(run, long_root):
    import svqbench

    forecaster = svqbench.load_run(run, device="cpu")
    inputs, targets = data.create("digits", "test", long_root)[0]
    one = forecaster.forecast(inputs)
    assert one.shape == targets.shape
    batch = forecaster.forecast(inputs[None].repeat(2, 1, 1, 1, 1), frames_out=25)  # a rollout past 10 frames
    assert batch.shape == (2, 25, 1, 64, 64)
    torch.testing.assert_close(batch[0, :10], one)
    with pytest.raises(SvqbenchError, match="the run takes"):
        forecaster.forecast(torch.zeros(2, 5, 1, 64, 64))
