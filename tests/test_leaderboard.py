"""Leaderboard rows: keyed by run id, ranked only within a section, summarised over seeds, written safely."""

from __future__ import annotations

import io
import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from svqbench.errors import SvqbenchError
from svqbench.results import leaderboard
from svqbench.results.views import analyse, export, plot, publish


def row(
    run_id, mse, ssim, recipe="digits/simvp", seed=1, convention="standard", protocol="default", run=None, overrides=""
):
    return {
        "run_id": run_id,
        "run": run or run_id,
        "recipe": recipe,
        "overrides": overrides,
        "model": "simvp",
        "params": 10,
        "seed": seed,
        "protocol": protocol,
        "val_held_out": True,
        "frames": "10->10",
        "size": "1x64x64",
        "selection": "best",
        "selected_epoch": 1,
        "convention": convention,
        "split": "test",
        "mse": mse,
        "ssim": ssim,
    }


def test_rows_are_keyed_by_run_id_not_folder_name(isolated_leaderboards):
    publish("digits", row("aaaaaaaaaaaa", 0.02, 0.8, run="simvp"))
    publish("digits", row("bbbbbbbbbbbb", 0.01, 0.7, run="simvp"))  # same folder name, another run
    publish("digits", row("aaaaaaaaaaaa", 0.03, 0.9, run="simvp"))  # re-evaluation replaces
    publish("digits", row("aaaaaaaaaaaa", 30.0, 0.95, run="simvp", convention="openstl"))
    table = leaderboard.read("digits")
    assert sorted(zip(table["run_id"], table["convention"], table["mse"])) == [
        ("aaaaaaaaaaaa", "openstl", 30.0),
        ("aaaaaaaaaaaa", "standard", 0.03),
        ("bbbbbbbbbbbb", "standard", 0.01),
    ]
    assert "epochs" not in table and "selected_epoch" in table


def test_protocols_and_conventions_are_never_ranked_together(isolated_leaderboards):
    for run_id, protocol, convention in [
        ("a", "openstl", "standard"),
        ("b", "sequences", "standard"),
        ("c", "openstl", "openstl"),
    ]:
        publish("kth", row(run_id, 0.01, 0.8, protocol=protocol, convention=convention))
    sections = analyse(leaderboard.read("kth"))
    assert sorted((s["key"]["protocol"], s["key"]["convention"], len(s["rows"])) for s in sections) == [
        ("openstl", "openstl", 1),
        ("openstl", "standard", 1),
        ("sequences", "standard", 1),
    ]


def test_seeds_are_grouped_with_mean_std_and_n_and_overrides_kept_apart(isolated_leaderboards):
    for seed, mse in [(1, 0.010), (2, 0.012), (3, 0.014)]:
        publish("digits", row(f"s{seed}", mse, 0.8, seed=seed, overrides=f"train.seed={seed}"))
    publish("digits", row("o1", 0.5, 0.1, overrides="dataset=other train.lr=0.1"))
    (section,) = analyse(leaderboard.read("digits"))
    summary = section["summary"].set_index("overrides")
    assert summary.loc["", "n"] == 3 and summary.loc["", "mse_mean"] == pytest.approx(0.012)
    assert summary.loc["", "mse_std"] == pytest.approx(0.002)
    assert summary.loc["dataset=other train.lr=0.1", "n"] == 1
    markdown = (isolated_leaderboards / "digits.md").read_text()
    assert "digits/simvp*" in markdown and "0.012 ± 0.002" in markdown


def _three_seeds(recipe, values):
    return [row(f"{recipe}{i}", v, 0.5, recipe=recipe, seed=i) for i, v in enumerate(values)]


@pytest.mark.parametrize("other, marked", [([0.020, 0.021, 0.022], True), ([0.0105, 0.012, 0.0095], False)])
def test_best_is_marked_only_when_distinguishable(isolated_leaderboards, other, marked):
    table = pd.DataFrame(_three_seeds("digits/a", [0.010, 0.011, 0.009]) + _three_seeds("digits/b", other))
    (section,) = analyse(table)
    assert ("mse" in section["best"]) is marked
    assert any("Welch" in line and ("not distinguishable" in line) is not marked for line in section["tests"])
    assert "ssim" not in section["best"]  # identical values: no interval, no mark


def test_groups_of_one_recipe_are_named_by_the_overrides_that_set_them_apart(isolated_leaderboards):
    def seeds(ratio, values):
        return [
            row(f"r{ratio}-{i}", v, 0.5, seed=i, overrides=f"train.precision=bf16 train.perturb_ratio={ratio}")
            for i, v in enumerate(values)
        ]

    (section,) = analyse(pd.DataFrame(seeds(0.1, [0.010, 0.011, 0.009]) + seeds(0.3, [0.020, 0.021, 0.022])))
    line = next(line for line in section["tests"] if line.startswith("mse"))
    assert line.startswith("mse: digits/simvp (train.perturb_ratio=0.1) vs digits/simvp (train.perturb_ratio=0.3): ")


def test_reported_numbers_stay_apart(isolated_leaderboards):
    publish("kth", row("r1", 41.0, 0.9, convention="openstl", protocol="openstl"))
    table, reported = leaderboard.read("kth"), leaderboard.reported("kth")
    assert {"method", "source", "convention"} <= set(reported.columns) and len(reported) == 11
    markdown = export("kth", table, "md", reported)
    measured, published = markdown.split("## Reported")
    assert "PredRNN.V2" in published and "PredRNN" not in measured and "39.57" in published and "PredRNN++" in published
    assert "**" not in published


def test_exports_and_plot(isolated_leaderboards, tmp_path):
    for r in _three_seeds("digits/a", [0.010, 0.011, 0.009]) + _three_seeds("digits/b", [0.02, 0.021, 0.022]):
        publish("digits", r)
    table = leaderboard.read("digits")
    as_json = json.loads(export("digits", table, "json"))
    assert as_json["sections"][0]["best"] == {"mse": "digits/a"} and as_json["sections"][0]["groups"][0]["n"] == 3
    flat = pd.read_csv(io.StringIO(export("digits", table, "csv")))
    assert flat["mse_best"].tolist() == [True, False]
    latex = export("digits", table, "latex")
    assert r"\textbf{0.01 $\pm$ 0.001}" in latex and r"digits/a" in latex
    with pytest.raises(SvqbenchError, match="--format 'html'"):
        export("digits", table, "html")
    png = plot("digits", table, tmp_path / "bars.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _add_rows(directory, worker, count):
    for i in range(count):
        publish("digits", row(f"w{worker}-{i}", 0.01 * (i + 1), 0.5, seed=i), directory)


def test_concurrent_writers_lose_no_row(isolated_leaderboards):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_rows, args=(isolated_leaderboards, w, 6)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0] * 4
    table = leaderboard.read("digits")
    assert len(table) == 24 and table["run_id"].nunique() == 24
    markdown = (isolated_leaderboards / "digits.md").read_text()  # written under the same lock as the CSV
    assert all(f"w{w}-{i}" in markdown for w in range(4) for i in range(6))


def test_missing_leaderboard_is_an_error(isolated_leaderboards):
    with pytest.raises(SvqbenchError, match="no leaderboard for 'kth'"):
        leaderboard.read("kth")


def test_lock_is_portable():
    assert "fcntl" not in vars(leaderboard)  # filelock works on every OS; fcntl exists only on POSIX


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "leaderboards" / "reported").glob("*.csv")),
    ids=lambda p: p.stem,
)
def test_every_reported_number_names_its_source_and_convention(path):
    table = pd.read_csv(path, comment="#")
    assert {"method", "convention", "source", "protocol", "frames"} <= set(table.columns)
    assert table["source"].notna().all() and set(table["convention"]) <= {"openstl", "standard"}
    assert table[leaderboard.metric_columns(table)].notna().any(axis=1).all()
