"""The quickstart on a tiny budget: three recipes, both floors in the table, everything inside its own
folder, and the repository's assets refreshed only on request."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app
from svqbench.errors import SvqbenchError
from svqbench.flows import quickstart

TINY = ("train.max_steps=2",)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.prepare("digits_small", root=root, train=16, val=4, test=4)
    return root


def test_quickstart_writes_only_its_folder(tmp_path, monkeypatch, small_root, isolated_leaderboards):
    monkeypatch.chdir(tmp_path)
    result = runner_invoke(
        "quickstart",
        "--root",
        small_root,
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--out",
        "qs",
        *[a for s in TINY for a in ("--set", s)],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]
    folder = tmp_path / "qs"
    assert sorted(p.name for p in (folder / "runs").iterdir()) == sorted(quickstart.RECIPES)
    assert Image.open(folder / "quickstart.gif").n_frames == 20 and (folder / "quickstart.png").is_file()
    board = pd.read_csv(folder / "leaderboards" / "digits_small.csv")
    assert sorted(board["model"]) == ["blank", "persistence", "simvp_svq"]
    assert not isolated_leaderboards.exists()  # the user's leaderboards folder is left alone
    assert os.environ["SVQBENCH_LEADERBOARDS"] == str(isolated_leaderboards)
    for name in ("digits_small/blank", "digits_small/persistence", "MAE +1", "SSIM +1", "both floors"):
        assert name in result.output, name


def runner_invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_quickstart_refuses_a_used_folder(tmp_path, small_root):
    (tmp_path / "old.txt").write_text("mine")
    with pytest.raises(SvqbenchError, match="not empty"):
        quickstart.run_quickstart(torch.device("cpu"), small_root, tmp_path, Console(quiet=True), "fp32", TINY)


def _result(tmp_path, svq_mae: float) -> quickstart.QuickstartResult:
    def report(mae, ssim):
        values = {"mae": mae, "mse": mae, "ssim": ssim, "psnr": 1 / mae}
        return {"overall": values, "per_frame": {k: [v] for k, v in values.items()}, "parameters": 0}

    result = quickstart.QuickstartResult(tmp_path, 1.0, "fp32")
    result.reports = {
        "digits_small/blank": report(0.04, 0.6),
        "digits_small/persistence": report(0.06, 0.5),
        "digits_small/simvp_svq": report(svq_mae, 0.7),
    }
    return result


def test_svq_must_beat_both_floors_on_every_metric(tmp_path):
    assert _result(tmp_path, 0.03).svq_beats_floors()
    assert not _result(tmp_path, 0.05).svq_beats_floors()  # worse than blank on MAE, MSE, PSNR


def test_refresh_assets_copies_into_the_repository_only(tmp_path):
    result = _result(tmp_path, 0.03)
    (tmp_path / "quickstart.gif").write_bytes(b"GIF89a")
    (tmp_path / "leaderboards").mkdir()
    for suffix in (".csv", ".md"):
        (tmp_path / "leaderboards" / f"digits_small{suffix}").write_text("rows")
    repo = tmp_path / "repo"
    with pytest.raises(SvqbenchError, match="repository root"):
        quickstart.refresh_assets(result, repo)
    for folder in ("assets", "leaderboards"):
        (repo / folder).mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    copied = quickstart.refresh_assets(result, repo)
    assert (repo / "assets" / "quickstart.gif").read_bytes() == b"GIF89a"
    assert (repo / "leaderboards" / "quickstart" / "digits_small.md").read_text() == "rows" and len(copied) == 3
    assert not (repo / "leaderboards" / "digits_small.md").exists()  # the study's rows live there


def test_precision_choice():
    assert quickstart.choose_precision(torch.device("cpu"), "fp32") == "fp32"
    assert quickstart.choose_precision(torch.device("cpu"), "auto") in ("fp32", "bf16")
    with pytest.raises(SvqbenchError, match="--precision"):
        quickstart.choose_precision(torch.device("cpu"), "fp16")


def test_steps_fit_the_budget_at_the_measured_rate():
    assert quickstart.plan_steps(100.0, 32.0, 16) == int(100 * quickstart.SAFETY * 32 / 16)
    assert quickstart.plan_steps(-5.0, 32.0, 16) == quickstart.MIN_STEPS  # no time left: the least that runs
    assert quickstart.plan_steps(1e9, 32.0, 16) == quickstart.MAX_STEPS


def test_the_budget_sets_the_steps_and_says_why(tmp_path, monkeypatch, small_root, isolated_leaderboards):
    """--minutes: a warm-up measures the rate (here pinned), the steps follow from the time left, and the choice is
    printed; too short a budget to beat the floors says so and names the longer command."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quickstart, "measure_rate", lambda *args: 64.0)
    monkeypatch.setattr(quickstart.QuickstartResult, "svq_beats_floors", lambda self: False)  # the short-budget case
    result = runner_invoke(
        "quickstart", "--root", small_root, "--device", "cpu", "--precision", "fp32", "--out", "qs", "--minutes", "0.3"
    )
    assert result.exit_code == 0, result.output
    chosen = next(line for line in result.output.splitlines() if "samples/s" in line)
    assert "CPU, fp32, channels-last, 64 samples/s:" in chosen and "0.3 minutes" in chosen  # fp32 on a CPU
    steps = int(chosen.split("samples/s: ")[1].split(" steps")[0])
    assert quickstart.MIN_STEPS <= steps <= int(18 * 64 / 16)  # at most what 18 s at 64 samples/s allows
    log = (tmp_path / "qs" / "runs" / "simvp_svq" / "log.jsonl").read_text().splitlines()
    assert f'"step": {steps},' in log[-1]
    assert "does NOT beat" in result.output and "svqbench quickstart --minutes 6" in result.output
    assert not (tmp_path / "qs" / ".warmup").exists()
    trained = yaml.safe_load((tmp_path / "qs" / "runs" / "simvp_svq" / "recipe.yaml").read_text())
    assert trained["train"]["channels_last"]


def test_a_budget_must_be_positive(tmp_path, small_root):
    result = runner_invoke(
        "quickstart", "--root", small_root, "--device", "cpu", "--out", tmp_path / "q", "--minutes", "0"
    )
    assert result.exit_code == 1 and "--minutes 0.0: valid: a positive number" in result.output
