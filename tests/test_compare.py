"""Intervals and paired comparisons: per-window metrics, bootstrap, Welch, compare over runs and groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from svqbench.compare import compare_groups
from svqbench.errors import SvqbenchError
from svqbench.metrics import MetricAccumulator
from svqbench.stats import paired_bootstrap, welch_interval


@pytest.mark.parametrize("convention", ["standard", "openstl"])
def test_per_window_values_average_to_the_overall_ones_in_window_order(convention):
    torch.manual_seed(0)
    accumulator = MetricAccumulator(["mae", "mse", "rmse", "ssim", "psnr"], convention, frames_out=3, device="cpu")
    noise = [0.05, 0.1, 0.2, 0.3, 0.4]
    true = torch.rand(5, 3, 1, 16, 16)
    pred = true + torch.stack([s * torch.randn(3, 1, 16, 16) for s in noise])
    accumulator.update(pred[:2], true[:2])
    accumulator.update(pred[2:], true[2:])
    overall, windows = accumulator.result()["overall"], accumulator.per_window()
    for name in ("mae", "mse", "ssim", "psnr"):
        assert windows[name].dtype == np.float64 and windows[name].shape == (5,)
        assert windows[name].mean() == pytest.approx(overall[name], rel=1e-9)
    assert np.all(np.diff(windows["mse"]) > 0) and np.all(np.diff(windows["psnr"]) < 0)  # noise grows by window
    assert windows["rmse"] == pytest.approx(np.sqrt(windows["mse"]))


def test_bootstrap_interval_separates_a_shift_and_covers_zero_for_noise():
    rng = np.random.default_rng(1)
    shifted = paired_bootstrap(0.5 + rng.normal(size=400), resamples=2000)
    assert shifted.distinguishable and shifted.low < 0.5 < shifted.high
    centred = paired_bootstrap(np.tile([-1.0, 1.0], 200), resamples=2000)  # mean exactly 0
    assert not centred.distinguishable and centred.low < 0 < centred.high
    assert paired_bootstrap(np.arange(10.0), seed=5) == paired_bootstrap(np.arange(10.0), seed=5)


def test_welch_interval():
    interval = welch_interval([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert interval.mean == pytest.approx(-1.0) and interval.high < 0 and "Welch" in interval.method
    assert welch_interval([1.0], [2.0, 2.1]) is None


def fake_run(folder, mse, dataset="digits", convention="standard"):
    folder.mkdir(parents=True)
    np.savez(folder / "per_window.npz", mse=np.asarray(mse, dtype=np.float64), ssim=1.0 - np.asarray(mse))
    (folder / "metrics.json").write_text(json.dumps({"dataset": dataset, "split": "test", "convention": convention}))
    return folder


def test_compare_runs_and_groups(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.01, 0.05, size=200)
    a = fake_run(tmp_path / "a", base)
    b = fake_run(tmp_path / "b", base + 0.002 + rng.normal(0, 0.001, 200))
    result = compare_groups([a], [b], ["mse", "ssim"], resamples=2000)
    assert result["windows"] == 200
    assert result["metrics"]["mse"]["verdict"] == "A better" and result["metrics"]["ssim"]["verdict"] == "A better"
    c = fake_run(tmp_path / "c", base + rng.normal(0, 0.001, 200))
    d = fake_run(tmp_path / "d", base - rng.normal(0, 0.001, 200))
    tie = compare_groups([c, d], [a], ["mse"], resamples=2000)["metrics"]["mse"]
    assert tie["verdict"] == "not distinguishable" and tie["a"] == pytest.approx(base.mean(), abs=2e-4)


def test_compare_refuses_mismatched_runs(tmp_path):
    a = fake_run(tmp_path / "a", [0.1, 0.2])
    with pytest.raises(SvqbenchError, match="convention"):
        compare_groups([a], [fake_run(tmp_path / "b", [0.1, 0.2], convention="openstl")])
    with pytest.raises(SvqbenchError, match="test windows"):
        compare_groups([a], [fake_run(tmp_path / "c", [0.1, 0.2, 0.3])])
    with pytest.raises(SvqbenchError, match="no per_window.npz"):
        compare_groups([a], [tmp_path / "missing"])
