"""Seeds, complete rows, compare and the study sweep, end to end on the tiny digits fixture."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from filelock import Timeout
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.errors import SvqbenchError
from svqbench.flows.sweep import load_study, parse_shard, plan, run_lock, shard_runs, sweep
from svqbench.results import per_window

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
TINY_SIMVP = (
    "dataset: digits\n"
    "model: {name: simvp, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu}\n"
    "train: {epochs: 1, max_steps: 2, batch_size: 4, num_workers: 0}\n"
    "eval: {metrics: [mae, mse, ssim, psnr], batch_size: 4}\n"
)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_seeds_rows_and_compare(tmp_path, digits_root, isolated_leaderboards):
    recipe = tmp_path / "simvp_tiny.yaml"
    recipe.write_text(TINY_SIMVP)
    trained = invoke(
        "train",
        recipe,
        "--seeds",
        "1,2",
        "--run-dir",
        tmp_path / "runs",
        "--root",
        digits_root,
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "train.lr=0.002",
    )
    assert trained.exit_code == 0, trained.output
    runs = [tmp_path / "runs" / "seed1", tmp_path / "runs" / "seed2"]
    assert trained.output.split() == [str(r) for r in runs]
    for run in runs:
        assert invoke("eval", run, "--root", digits_root, "--device", "cpu").exit_code == 0
        windows = per_window.read(run, "test", "standard")
        assert sorted(windows.values) == ["mae", "mse", "psnr", "ssim"] and windows.values["mse"].shape == (4,)
        assert windows.unit == "sequence" and windows.unit_count == 4
        assert windows.values["mse"].mean() == pytest.approx(
            json.loads((run / "metrics.json").read_text())["overall"]["mse"]
        )

    table = pd.read_csv(isolated_leaderboards / "digits.csv", dtype={"run_id": str})
    assert table["seed"].tolist() == [1, 2] and table["run_id"].nunique() == 2
    assert all(re.fullmatch(r"[0-9a-f]{12}", r) for r in table["run_id"])
    first = table.iloc[0]
    assert first["overrides"] == "train.lr=0.002" and first["recipe"].endswith("simvp_tiny")
    assert (first["protocol"], first["frames"], first["size"], first["selection"]) == (
        "default",
        "10->10",
        "1x64x64",
        "best",
    )
    # 2 steps of a 3-step epoch: no epoch completed
    assert (first["steps_trained"], first["epochs_trained"], first["precision"]) == (2, 0, "fp32")
    assert first["train_seconds"] > 0 and first["svqbench_version"] and first["evaluated_at"]

    compared = invoke("compare", *runs, "--resamples", "500")
    assert compared.exit_code == 0, compared.output
    assert "4 test windows" in compared.output and "mse" in compared.output
    grouped = invoke("compare", "--a", runs[0], "--a", runs[1], "--b", runs[1], "--b", runs[0], "--metrics", "mse")
    assert grouped.exit_code == 0 and "not distinguishable" in grouped.output

    shown = invoke("leaderboard", "digits", "--format", "json")
    assert shown.exit_code == 0, shown.output
    (section,) = json.loads(shown.output)["sections"]
    assert section["groups"][0]["n"] == 2 and section["groups"][0]["seeds"] == "1 2"
    plotted = invoke("leaderboard", "digits", "--plot", tmp_path / "digits.png", "--format", "latex")
    assert plotted.exit_code == 0 and (tmp_path / "digits.png").is_file() and "tabular" in plotted.output


@pytest.mark.parametrize("args, needle", [(["--seeds", "1,x"], "--seeds '1,x'"), (["--seeds", "1,1"], "distinct")])
def test_bad_seeds_are_one_line_errors(args, needle):
    result = invoke("train", "digits/simvp", *args)
    assert result.exit_code == 1 and needle in result.output and "Traceback" not in result.output


def write_study(tmp_path, recipes):
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: tinystudy\ndataset: digits\n"
        f"recipes: [{', '.join(recipes)}]\nseeds: [1, 2]\n"
        "set: [train.num_workers=0]\n"
        "eval: {metrics: [mae, mse], batch_size: 4}\n"
        f"runs: {tmp_path / 'runs'}\nout: {tmp_path / 'out'}\n"
    )
    return path


def test_sweep_trains_evaluates_skips_and_resumes(tmp_path, digits_root, isolated_leaderboards, monkeypatch):
    recipes = tmp_path / "recipes" / "digits"
    recipes.mkdir(parents=True)
    (recipes / "simvp_tiny.yaml").write_text(TINY_SIMVP)
    (recipes / "persistence.yaml").write_text("dataset: digits\nmodel: {name: persistence}\ntrain: {batch_size: 4}\n")
    monkeypatch.setenv("SVQBENCH_RECIPES", str(tmp_path / "recipes"))
    study = load_study(write_study(tmp_path, ["digits/persistence", "digits/simvp_tiny"]))
    lines = []
    result = sweep(study, torch.device("cpu"), digits_root, echo=lines.append)
    assert [r["state"] for r in result["runs"]] == ["new"] * 4
    assert lines[0].startswith("[1/4] digits/persistence seed 1: trained") and "elapsed" in lines[3]
    assert lines[-1].startswith("study tinystudy: 4 runs (0 already done) in ")
    study_rows = pd.read_csv(tmp_path / "out" / "tinystudy.csv")
    assert sorted(zip(study_rows["recipe"], study_rows["seed"])) == [
        ("digits/persistence", 1),
        ("digits/persistence", 2),
        ("digits/simvp_tiny", 1),
        ("digits/simvp_tiny", 2),
    ]
    markdown = (tmp_path / "out" / "tinystudy.md").read_text()
    assert "| digits/simvp_tiny* | train.num_workers=0 | simvp | 2 | 1 2 |" in markdown
    # distinguishable needs both the window bootstrap and (with 2 seeds a side) the interval across seeds
    assert "paired bootstrap over 4 units (sequence)" in markdown or "Welch t across seeds (2 vs 2 runs)" in markdown
    assert (tmp_path / "out" / "tinystudy.png").is_file()

    shutil.rmtree(tmp_path / "runs" / "simvp_tiny-seed2" / "eval")  # interrupted before its evaluation
    (tmp_path / "runs" / "simvp_tiny-seed1" / "metrics.json").write_text("{garbage")  # never read by the sweep
    again = sweep(study, torch.device("cpu"), digits_root, echo=lines.append)
    assert [r["state"] for r in again["runs"]] == ["done", "done", "done", "resume"]

    (tmp_path / "runs" / "simvp_tiny-seed1" / "recipe.yaml").write_bytes(b"train: [unclosed\n\xff")
    with pytest.raises(SvqbenchError, match="recipe.yaml: not a readable recipe"):
        sweep(study, torch.device("cpu"), digits_root, echo=lines.append)


def test_sweep_names_a_missing_recipe_before_running(tmp_path):
    study = load_study(write_study(tmp_path, ["digits/persistence", "digits/no_such_recipe"]))
    with pytest.raises(SvqbenchError, match="unknown recipe digits/no_such_recipe "):
        sweep(study, torch.device("cpu"))
    assert not (tmp_path / "runs").exists()
    result = invoke("sweep", tmp_path / "study.yaml")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    bad_set = tmp_path / "bad.yaml"
    bad_set.write_text(
        write_study(tmp_path, ["digits/persistence"]).read_text().replace("train.num_workers", "train.nope")
    )
    with pytest.raises(SvqbenchError, match="recipe 'digits/persistence' cannot be used: .*train.nope"):
        sweep(load_study(bad_set), torch.device("cpu"))


def test_committed_study_file_is_valid():
    study = load_study(Path(__file__).resolve().parents[1] / "recipes" / "studies" / "digits_small.yaml")
    names = [entry.name for entry in study.entries]
    assert study.dataset == "digits_small" and study.seeds == (1, 2, 3)
    models = (
        "persistence",
        "blank",
        "simvp",
        "simvp_svq",
        "simvp_svq_frozen",
        "simvp_mlp",
        "simvp_vq",
        "convlstm",
        "predrnn",
        "predrnn_v2",
        "predrnn_pp",
        "mim",
        "e3d_lstm",
        "mau",
        "phydnet",
        "tau",
        "swinlstm",
    )
    assert set(names) == {f"digits_small/{model}" for model in models}


def test_study_entries_with_their_own_overrides_get_their_own_folders(tmp_path):
    path = write_study(tmp_path, ["digits/persistence"])
    text = path.read_text().replace(
        "recipes: [digits/persistence]",
        "recipes: [digits/simvp, {name: digits/simvp, set: [model.hid_S=16], label: simvp16}]",
    )
    path.write_text(text)
    planned = plan(load_study(path))
    assert [(label, seed, run.name) for label, seed, _, run in planned] == [
        ("digits/simvp", 1, "simvp-seed1"),
        ("digits/simvp (simvp16)", 1, "simvp16-seed1"),
        ("digits/simvp", 2, "simvp-seed2"),
        ("digits/simvp (simvp16)", 2, "simvp16-seed2"),
    ]
    recipe = planned[3][2]
    assert recipe.model["hid_S"] == 16 and recipe.train.seed == 2
    assert recipe.overrides == ("train.num_workers=0", "model.hid_S=16")
    path.write_text(text.replace(", label: simvp16", ""))
    with pytest.raises(SvqbenchError, match="share run folders 'simvp'"):
        plan(load_study(path))


def sweep_process(study_file: Path, root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "svqbench", "sweep", str(study_file), "--root", str(root), "--device", "cpu", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_sweeps_do_each_run_once(tmp_path, digits_root, isolated_leaderboards, monkeypatch):
    recipes = tmp_path / "recipes" / "digits"
    recipes.mkdir(parents=True)
    (recipes / "simvp_tiny.yaml").write_text(TINY_SIMVP)
    (recipes / "simvp_tinier.yaml").write_text(TINY_SIMVP.replace("hid_T: 16", "hid_T: 8"))
    monkeypatch.setenv("SVQBENCH_RECIPES", str(tmp_path / "recipes"))
    study_file = write_study(tmp_path, ["digits/simvp_tiny", "digits/simvp_tinier"])
    sweeps = [sweep_process(study_file, digits_root), sweep_process(study_file, digits_root)]
    outputs = [process.communicate(timeout=600) for process in sweeps]
    for process, (_, stderr) in zip(sweeps, outputs):
        assert process.returncode == 0, stderr[-3000:]
    lines = "".join(stdout for stdout, _ in outputs).splitlines()
    trained = [line for line in lines if ": trained in" in line]
    assert len(trained) == 4, lines  # each run by one of the two sweeps
    assert len([line for line in lines if ": already done in" in line]) == 4

    runs = sorted((tmp_path / "runs").iterdir())
    assert [run.name for run in runs] == [
        "simvp_tinier-seed1",
        "simvp_tinier-seed2",
        "simvp_tiny-seed1",
        "simvp_tiny-seed2",
    ]
    table = pd.read_csv(isolated_leaderboards / "digits.csv", dtype={"run_id": str})
    run_ids = [json.loads((run / "run.json").read_text())["run_id"] for run in runs]
    assert sorted(table["run_id"]) == sorted(run_ids)  # one row per run
    assert all(len((run / "log.jsonl").read_text().splitlines()) == 1 for run in runs)  # trained once: one epoch line
    study_rows = pd.read_csv(tmp_path / "out" / "tinystudy.csv", dtype={"run_id": str})
    assert sorted(study_rows["run_id"]) == sorted(run_ids)


def test_shards_split_the_runs_and_a_dead_sweeps_lock_is_taken_over(tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path, ["digits/persistence", "digits/simvp"]))
    planned = plan(study)
    everything = [run_dir for *_, run_dir in planned]
    assert [parse_shard(text) for text in ("1/2", " 2 / 2 ")] == [(1, 2), (2, 2)]
    shards = [[run_dir for *_, run_dir in shard_runs(planned, (k, 3))] for k in (1, 2, 3)]
    assert shards == [everything[0::3], everything[1::3], everything[2::3]] and sum(map(len, shards)) == 4
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(SvqbenchError, match=f"--shard '{bad}': expected K/N with 1 <= K <= N"):
            parse_shard(bad)
    assert_one_line = invoke("sweep", tmp_path / "study.yaml", "--shard", "3/2")
    assert assert_one_line.exit_code == 1 and "--shard '3/2'" in assert_one_line.output

    run_dir = everything[0]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom svqbench.flows.sweep import run_lock\n"
            "lock = run_lock(__import__('pathlib').Path(sys.argv[1]))\nlock.acquire()\nprint('held', flush=True)\n"
            "time.sleep(600)",
            str(run_dir),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Timeout):
        run_lock(run_dir).acquire(timeout=0)
    holder.kill()  # SIGKILL: no clean-up; the lock file stays, the kernel drops the lock
    holder.wait()
    assert (run_dir / ".lock").exists()
    lock = run_lock(run_dir)
    lock.acquire(timeout=0)
    lock.release()
