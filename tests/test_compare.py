"""Intervals and paired comparisons: per-window metrics, bootstrap, Welch, compare over runs and groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from svqbench.data.base import BLOCK_WINDOWS
from svqbench.errors import SvqbenchError
from svqbench.metrics import MetricAccumulator
from svqbench.results import per_window
from svqbench.results.compare import compare_groups, verdict
from svqbench.results.stats import paired_bootstrap, welch_interval


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


def fake_run(folder, mse, dataset="digits", convention="standard", split="test", units=None, unit="sequence"):
    folder.mkdir(parents=True, exist_ok=True)
    mse = np.asarray(mse, dtype=np.float64)
    units = np.arange(len(mse)) if units is None else units
    report = {"dataset": dataset, "split": split, "convention": convention}
    per_window.write(folder, {"mse": mse, "ssim": 1.0 - mse}, units, unit, report)
    (folder / "metrics.json").write_text(json.dumps(report))
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
    with pytest.raises(SvqbenchError, match="does not exist"):
        compare_groups([a], [tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SvqbenchError, match="no per-window values for the test split.*svqbench eval"):
        compare_groups([a], [tmp_path / "empty"])


def overlapping_windows(rng, windows: int, window: int) -> np.ndarray:
    """Per-window differences of two equally good models on stride-1 windows: each window averages the
    frame-level differences of its ``window`` frames, so neighbours share most of their frames. Mean 0."""
    frames = rng.normal(size=windows + window - 1)
    return np.convolve(frames, np.ones(window) / window, mode="valid")


def test_block_bootstrap_is_wider_on_overlapping_windows_and_covers_95_percent():
    window, windows = 24, 2000  # e.g. a stride-1 weather test split
    units = np.arange(windows) // (BLOCK_WINDOWS * window)  # the default unit: blocks of two window lengths
    rng = np.random.default_rng(0)
    covered_old = covered_new = 0
    trials = 200
    for trial in range(trials):
        differences = overlapping_windows(rng, windows, window)
        old = paired_bootstrap(differences, resamples=400, seed=trial)
        new = paired_bootstrap(differences, resamples=400, seed=trial, units=units, unit="block")
        assert new.high - new.low > 1.5 * (old.high - old.low)
        covered_old += old.low <= 0 <= old.high
        covered_new += new.low <= 0 <= new.high
    print(
        f"coverage of 95% intervals over {trials} equal-model pairs: over windows {covered_old / trials:.3f}, "
        f"over blocks {covered_new / trials:.3f}"
    )  # quoted in README (pytest -s)
    assert covered_old / trials < 0.6  # windows treated as independent: far too narrow
    assert 0.91 <= covered_new / trials <= 0.99, covered_new / trials
    assert "42 units (block) of 2000 windows" in new.method


def test_a_single_unit_gives_no_interval_and_no_winner():
    interval = paired_bootstrap(np.array([0.1, 0.2, 0.3]), units=np.zeros(3, int), unit="source video")
    assert not interval.comparable and not interval.distinguishable
    assert verdict("mse", interval.low, interval.high).startswith("not comparable")


def test_nan_is_never_a_winner_and_compare_refuses_non_finite_values(tmp_path):
    for metric in ("mse", "ssim", "other"):
        assert verdict(metric, float("nan"), float("nan")) == "not comparable (no finite interval)"
        assert verdict(metric, float("-inf"), -1.0).startswith("not comparable")
    good = fake_run(tmp_path / "good", [0.1, 0.2, 0.3])
    diverged = fake_run(tmp_path / "nan", [np.nan, np.nan, np.nan])
    with pytest.raises(SvqbenchError, match="3 of 3 mse values are not finite"):
        compare_groups([diverged], [good])


def test_intervals_come_from_the_split_and_convention_asked_for(tmp_path):
    a = fake_run(tmp_path / "a", [0.1, 0.1, 0.1, 0.1])
    b = fake_run(tmp_path / "b", [0.2, 0.2, 0.2, 0.2])
    fake_run(tmp_path / "a", [0.9, 0.9, 0.9], split="val")  # a later eval --split val
    fake_run(tmp_path / "b", [0.1, 0.1, 0.1], split="val")
    test = compare_groups([a], [b], ["mse"], resamples=200)
    assert test["split"] == "test" and test["windows"] == 4 and test["metrics"]["mse"]["a"] == pytest.approx(0.1)
    val = compare_groups([a], [b], ["mse"], resamples=200, split="val")
    assert val["windows"] == 3 and val["metrics"]["mse"]["verdict"] == "B better"
    assert test["unit"] == "sequence" and test["units"] == 4
    fake_run(tmp_path / "a", [30.0, 30.0, 30.0, 30.0], convention="openstl")
    with pytest.raises(SvqbenchError, match="several conventions"):
        compare_groups([a], [b])
    assert compare_groups([a], [b], ["mse"], resamples=200, convention="standard")["windows"] == 4


def test_units_must_match_and_are_resampled_whole(tmp_path):
    a = fake_run(tmp_path / "a", np.linspace(0.1, 0.2, 6), units=np.array([0, 0, 0, 1, 1, 1]), unit="source video")
    b = fake_run(
        tmp_path / "b", np.linspace(0.1, 0.2, 6) + 0.01, units=np.array([0, 0, 0, 1, 1, 1]), unit="source video"
    )
    result = compare_groups([a], [b], ["mse"], resamples=200)
    assert (result["unit"], result["units"]) == ("source video", 2)
    assert "2 units (source video) of 6 windows" in result["metrics"]["mse"]["difference"]["method"]
    c = fake_run(tmp_path / "c", np.linspace(0.1, 0.2, 6), units=np.array([0, 1, 2, 3, 4, 5]))
    with pytest.raises(SvqbenchError, match="different units"):
        compare_groups([a], [c])


def test_a_damaged_per_window_file_is_one_line(tmp_path):
    a = fake_run(tmp_path / "a", [0.1, 0.2])
    per_window.path(a, "test", "standard").write_bytes(b"not a zip file")
    with pytest.raises(SvqbenchError, match="damaged"):
        compare_groups([a], [a])


def test_bold_needs_the_interval_on_the_better_side(tmp_path):
    import pandas as pd

    from svqbench.results.views import analyse

    rng = np.random.default_rng(0)
    runs = {}
    for name, level in (("a", 0.3), ("b", 0.1)):  # per window, a is worse than b ...
        runs[name] = tmp_path / name
        values = level + rng.normal(0, 0.01, 40)
        per_window.write(
            runs[name],
            {"rmse": values},
            np.arange(40),
            "sequence",
            {"dataset": "digits", "split": "test", "convention": "standard"},
        )
    rows = pd.DataFrame(
        [  # ... but its overall value (as RMSE over all pixels can) ranks it first
            {
                "run_id": "a",
                "recipe": "ra",
                "overrides": "",
                "model": "m",
                "seed": 1,
                "convention": "standard",
                "split": "test",
                "path": str(runs["a"]),
                "rmse": 0.1,
            },
            {
                "run_id": "b",
                "recipe": "rb",
                "overrides": "",
                "model": "m",
                "seed": 1,
                "convention": "standard",
                "split": "test",
                "path": str(runs["b"]),
                "rmse": 0.2,
            },
        ]
    )
    section = analyse(rows)[0]
    assert "rmse" not in section["best"]
    assert (
        "the interval disagrees with the ranking" in section["tests"][0]
        and "40 units (sequence)" in section["tests"][0]
    )
    rows.loc[0, "rmse"], rows.loc[1, "rmse"] = 0.3, 0.1  # ranking and interval agree: b is bold
    section = analyse(rows)[0]
    assert section["summary"].loc[section["best"]["rmse"], "recipe"] == "rb"


def test_compare_perturb_reads_the_evaluations_on_perturbed_inputs(tmp_path):
    from typer.testing import CliRunner

    from svqbench.cli import app

    a = fake_run(tmp_path / "a", [0.1, 0.1, 0.1, 0.1])
    b = fake_run(tmp_path / "b", [0.2, 0.2, 0.2, 0.2])
    fake_run(tmp_path / "a", [0.5, 0.5, 0.5, 0.5], split="test/perturb=0.3")  # eval --perturb 0.3
    fake_run(tmp_path / "b", [0.3, 0.3, 0.3, 0.3], split="test/perturb=0.3")
    runner = CliRunner()
    clean = runner.invoke(app, ["compare", str(a), str(b), "--metrics", "mse", "--resamples", "200"])
    assert clean.exit_code == 0 and "A better" in clean.output
    noisy = runner.invoke(
        app, ["compare", str(a), str(b), "--metrics", "mse", "--resamples", "200", "--perturb", "0.3"]
    )
    assert noisy.exit_code == 0 and "test/perturb=0.3 windows" in noisy.output and "B better" in noisy.output
    missing = runner.invoke(app, ["compare", str(a), str(b), "--perturb", "0.5"])
    assert missing.exit_code == 1
    assert (
        "evaluate it first with `svqbench eval " in missing.output and "--split test --perturb 0.5`" in missing.output
    )
    assert "valid: the share" in runner.invoke(app, ["compare", str(a), str(b), "--perturb", "2"]).output


@pytest.mark.parametrize(
    "windows_low, seeds, overrules",
    [(0.1, (0.05, 0.2), False), (0.1, (-0.05, 0.2), True), (0.1, (-0.3, -0.1), True), (-0.2, (-0.3, -0.1), False)],
)
def test_the_seed_spread_rule(windows_low, seeds, overrules):
    """One rule for compare and the leaderboards: the across-seed interval must exclude 0 on the windows' side."""
    from svqbench.results.stats import seed_spread_overrules

    assert seed_spread_overrules(windows_low, *seeds) is overrules
