"""A study's results against one swept setting (svqbench.results.study_axis) and the committed studies that use it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t

from svqbench.errors import SvqbenchError
from svqbench.flows.sweep import load_study, plan
from svqbench.results import study_axis
from svqbench.results.stats import mean_interval

REPO = Path(__file__).resolve().parents[1]
KEY = "train.perturb_ratio"


def rows() -> pd.DataFrame:
    """Two models at settings 0 and 0.5, 3 seeds; a floor that does not set the key.

    mse = base + slope * setting + seed noise: "a" worsens by 0.010 at 0.5, "b" by 0.004."""
    records = []
    noise = {1: 0.001, 2: -0.002, 3: 0.0015}
    for model, slope in (("a", 0.02), ("b", 0.008)):
        for setting in (0.0, 0.5):
            for seed in (1, 2, 3):
                records.append(
                    {
                        "recipe": f"digits/{model}",
                        "seed": seed,
                        "overrides": f"train.precision=bf16 {KEY}={setting}",
                        "mse": 0.1 + slope * setting + noise[seed] * (1 + setting),
                        "ssim": 0.5,
                    }
                )
    records += [
        {"recipe": "digits/blank", "seed": s, "overrides": "train.precision=bf16", "mse": 0.3, "ssim": 0.2}
        for s in (1, 2, 3)
    ]
    return pd.DataFrame(records)


def test_setting_is_read_from_the_overrides():
    assert study_axis.setting_of("train.precision=bf16 train.perturb_ratio=0.3", KEY) == 0.3
    assert math.isnan(study_axis.setting_of("train.precision=bf16", KEY))
    assert math.isnan(study_axis.setting_of(float("nan"), KEY))
    with pytest.raises(SvqbenchError, match="'x' is not a number"):
        study_axis.setting_of(f"{KEY}=x", KEY)


def test_curves_hold_the_mean_and_the_t_interval_across_seeds():
    frame = study_axis.axis_frame(rows(), KEY)
    points = {(p.model, p.setting): p for p in study_axis.curves(frame, "mse")}
    assert set(points) == {("a", 0.0), ("a", 0.5), ("b", 0.0), ("b", 0.5)}  # the floor is not a curve
    values = np.array([0.1 + 0.01 + n * 1.5 for n in (0.001, -0.002, 0.0015)])
    point = points[("a", 0.5)]
    half = t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert point.seeds == 3
    assert point.interval.mean == pytest.approx(values.mean())
    assert (point.interval.low, point.interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert study_axis.floors(frame, "mse") == {"blank": pytest.approx(0.3)}


def test_changes_are_paired_by_seed_and_compared_with_the_reference():
    frame = study_axis.axis_frame(rows(), KEY)
    ((interval, delta),) = study_axis.changes(frame, "a", "mse").values()
    # seed k at 0.5 minus seed k at 0: 0.010 + 0.5 * noise_k
    assert delta == pytest.approx([0.010 + 0.0005, 0.010 - 0.001, 0.010 + 0.00075])
    assert interval.mean == pytest.approx(np.mean(delta)) and interval.distinguishable
    markdown = study_axis.to_markdown(frame, KEY, ("mse",), reference="b")
    assert (
        "| a | " in markdown
        and "| blank |" not in markdown
        and "Floors (not trained with the setting): blank 0.3" in markdown
    )
    line = next(line for line in markdown.splitlines() if line.startswith("- a at 0.5"))
    assert "minus b's change: +0.006" in line and "(Welch across seeds)" in line


def test_a_change_inside_the_seed_spread_is_called_that():
    table = rows()
    table.loc[table["recipe"] == "digits/b", "mse"] = [0.10, 0.11, 0.09, 0.11, 0.09, 0.10]
    markdown = study_axis.to_markdown(study_axis.axis_frame(table, KEY), KEY, ("mse",), reference=None)
    assert "- b at 0.5: +0 [" in markdown and "inside the seed spread" in markdown.split("- b at 0.5")[1]


def test_one_seed_has_no_interval():
    assert math.isnan(mean_interval(np.array([0.2])).low)
    frame = study_axis.axis_frame(rows()[lambda r: r["seed"] == 1], KEY)
    assert "(no interval)" in study_axis.to_markdown(frame, KEY, ("mse",), reference="b")


def test_report_has_a_section_per_split_clean_first_and_a_png(tmp_path):
    clean = rows().assign(split="test", convention="standard")
    perturbed = clean.assign(split="test/perturb=0.3", mse=clean["mse"] + 0.05)
    markdown = study_axis.report("toy", pd.concat([perturbed, clean]), KEY, ("mse", "ssim"), "b", tmp_path / "toy.png")
    titles = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert titles == [f"## Against {KEY} (test, standard)", f"## Against {KEY} (test/perturb=0.3, standard)"]
    assert (tmp_path / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SvqbenchError, match="no run sets train.lr"):
        study_axis.report("toy", clean, "train.lr", ("mse",), None, tmp_path / "x.png")
    with pytest.raises(SvqbenchError, match="not evaluated with lpips"):
        study_axis.report("toy", clean, KEY, ("mse", "lpips"), None, tmp_path / "x.png")


def test_an_axis_no_entry_sets_or_evaluates_is_refused_before_anything_trains(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: s\ndataset: digits_small\nrecipes: [digits_small/blank, digits_small/simvp]\naxis: {key: train.lr}\n"
    )
    with pytest.raises(
        SvqbenchError,
        match=r"axis.key 'train.lr': no entry sets it; give the entries "
        r"`set: \[train.lr=VALUE\]`",
    ):
        plan(load_study(study))
    study.write_text(
        "name: s\ndataset: digits_small\nrecipes: [{name: digits_small/simvp, set: [train.lr=0.01]}]\n"
        "eval: {metrics: [mse]}\naxis: {key: train.lr, metrics: [mse, lpips]}\n"
    )
    with pytest.raises(SvqbenchError, match="axis.metrics lpips: not evaluated by every run; valid: mse"):
        plan(load_study(study))


@pytest.mark.parametrize("name", ["digits_small_noise", "digits_small_budget"])
def test_committed_issue_studies_are_valid_with_three_seeds(name):
    study = load_study(REPO / "recipes" / "studies" / f"{name}.yaml")
    planned = plan(study)
    assert study.seeds == (1, 2, 3)
    models = {recipe.model["name"] for _, _, recipe, _ in planned}
    assert {"simvp", "simvp_svq", "simvp_mlp", "blank", "persistence"} <= models
    if name == "digits_small_noise":
        assert study.axis is not None and study.axis.key == KEY
        ratios = {recipe.train.perturb_ratio for _, _, recipe, _ in planned if recipe.model["name"].startswith("simvp")}
        assert ratios == {0.0, 0.1, 0.3, 0.5}
    else:
        assert study.axis is not None and study.axis.key == "train.max_steps"
        steps = {recipe.train.max_steps for _, _, recipe, _ in planned if recipe.model["name"].startswith("simvp")}
        assert steps == {500, 2000}
