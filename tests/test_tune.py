"""svqbench tune: equal searches per recipe, trials as runs, validation only, concurrent workers sharing one study
(journal file and a real PostgreSQL server), killed workers, the best recipes and the tuned sweep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import postgres_server
import pytest
import torch
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app
from svqbench.errors import SvqbenchError
from svqbench.flows.sweep import load_study, sweep
from svqbench.flows.tune import open_storage, outcomes, slot_trials, tune

optuna = pytest.importorskip("optuna")
runner = CliRunner()
TINY = (
    "dataset: digits\n"
    "model: {name: simvp, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu}\n"
    "train: {epochs: 1, max_steps: 4, batch_size: 4, num_workers: 0}\n"
    "eval: {metrics: [mae, mse], batch_size: 4}\n"
)
TUNE = (
    "tune:\n"
    "  trials: {trials}\n  steps: 6\n  val_every: 2\n  startup_trials: 1\n  pruner: {pruner}\n  seed: 3\n"
    "  space:\n"
    "    train.lr: {{log_uniform: [1.0e-5, 3.0e-2]}}\n"
    "    model.hid_S: {{choice: [4, 8]}}\n"
)


@pytest.fixture
def study_file(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes" / "digits"
    recipes.mkdir(parents=True)
    (recipes / "simvp_tiny.yaml").write_text(TINY)
    (recipes / "persistence.yaml").write_text("dataset: digits\nmodel: {name: persistence}\ntrain: {batch_size: 4}\n")
    monkeypatch.setenv("SVQBENCH_RECIPES", str(tmp_path / "recipes"))

    def write(trials: int = 4, pruner: str = "successive_halving", extra: str = "") -> Path:
        path = tmp_path / "study.yaml"
        path.write_text(
            "name: tiny\ndataset: digits\nrecipes: [digits/persistence, digits/simvp_tiny]\nseeds: [1, 2]\n"
            "eval: {metrics: [mae, mse], batch_size: 4}\n"
            f"runs: {tmp_path / 'runs'}\nout: {tmp_path / 'out'}\n"
            + TUNE.format(trials=trials, pruner=pruner)
            + f"  runs: {tmp_path / 'tune'}\n"
            + extra
        )
        return path

    return write


def trials_of(study_path: Path, storage_url: str | None = None):
    study = load_study(study_path)
    storage = open_storage(storage_url, study.tune.runs_dir(study.name))
    return optuna.load_study(study_name="tiny:simvp_tiny", storage=storage).get_trials()


def check_exactly(trials, count: int, tune_dir: Path) -> None:
    """``count`` slots, each ending complete or pruned, each in its own run folder, none run twice."""
    state = optuna.trial.TrialState
    assert len(slot_trials(trials)) == count
    final = outcomes(trials)
    assert sorted(final) == list(range(len(final))) or len(final) == count
    assert all(t.state in (state.COMPLETE, state.PRUNED) for t in final.values()), [t.state for t in final.values()]
    folders = sorted(p.name for p in (tune_dir / "simvp_tiny").iterdir() if p.name.startswith("trial-"))
    assert len(folders) == count
    run_dirs = [t.user_attrs["run_dir"] for t in final.values()]
    assert len(set(run_dirs)) == count
    for trial in final.values():  # every slot trained in its own folder, to its end or its pruning step
        log = [json.loads(line) for line in (Path(trial.user_attrs["run_dir"]) / "log.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in log]
        assert steps == sorted(set(steps)), steps  # a resumed trial repeats no step
        if trial.state == state.COMPLETE:
            assert steps[-1] == 6


def worker(study_path: Path, root: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "svqbench", "tune", str(study_path), "--root", str(root), "--device", "cpu", *args],
        env={**os.environ, "SVQBENCH_TUNE_GRACE": "2", "SVQBENCH_TUNE_HEARTBEAT": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def killed_then_two_workers(study_path: Path, root: Path, storage: tuple[str, ...]) -> list[str]:
    """A worker that SIGKILLs itself after step 3 of its first trial, then two concurrent workers."""
    crashing = worker(study_path, root, {"SVQBENCH_TEST_CRASH_AT_STEP": "3"}, *storage)
    crashing.communicate(timeout=300)
    assert crashing.returncode == -9
    time.sleep(3)  # past the heartbeat grace: the dead trial is stale, whichever storage
    pair = [worker(study_path, root, {}, *storage) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in pair]
    for process, (_stdout, stderr) in zip(pair, outputs):
        assert process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
    return [stdout for stdout, _ in outputs]


def test_journal_workers_run_exactly_n_trials_and_a_killed_one_is_resumed(study_file, digits_root, tmp_path):
    study_path = study_file(trials=5)
    outputs = killed_then_two_workers(study_path, digits_root, ())
    trials = trials_of(study_path)
    check_exactly(trials, 5, tmp_path / "tune")
    assert not [t for t in trials if t.state == optuna.trial.TrialState.FAIL]  # taken over, not failed
    shown = "".join(outputs)
    assert "[simvp_tiny trial 1/5]" in shown  # the dead worker's trial 0, finished by another worker
    assert (tmp_path / "tune" / "best" / "simvp_tiny.yaml").is_file()
    status = runner.invoke(app, ["tune", str(study_path), "--status", "--root", str(digits_root)])
    assert status.exit_code == 0 and "simvp_tiny: 5 of 5 trials" in status.output


@pytest.fixture(scope="module")
def postgres_url():
    try:
        url, stop = postgres_server.start()
    except postgres_server.Unavailable as why:
        pytest.skip(f"no PostgreSQL server: {why}")
    yield url
    stop()


def test_postgres_workers_share_one_study_and_retry_a_killed_trial(study_file, digits_root, tmp_path, postgres_url):
    study_path = study_file(trials=5)
    killed_then_two_workers(study_path, digits_root, ("--storage", postgres_url))
    trials = trials_of(study_path, postgres_url)
    check_exactly(trials, 5, tmp_path / "tune")
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert len(failed) == 1 and len(retries) == 1  # Optuna's heartbeat failed the dead trial and queued it again
    assert retries[0].system_attrs["failed_trial"] == failed[0].number
    assert retries[0].user_attrs["run_dir"] == failed[0].user_attrs["run_dir"]  # resumed in its own folder
    status = runner.invoke(app, ["tune", str(study_path), "--status", "--storage", postgres_url, "--root", "x"])
    assert status.exit_code == 0 and f"(retry of {failed[0].number})" in status.output


def test_a_search_never_opens_the_test_split_and_prunes(study_file, digits_root, tmp_path, monkeypatch):
    study = load_study(study_file(trials=6))
    create, opened = data.create, []

    def guarded(name, split, root=None):
        opened.append(split)
        if split == "test":
            raise AssertionError("a tuning step opened the test split")
        return create(name, split, root)

    monkeypatch.setattr(data, "create", guarded)
    lines = []
    result = tune(study, torch.device("cpu"), digits_root, echo=lines.append)
    assert set(opened) == {"train", "val"}
    (row,) = result["effort"]
    assert row["trials"] == 6 and row["complete"] + row["pruned"] == 6 and row["pruned"] >= 1
    assert row["steps"] < 6 * 6  # pruned trials stopped early
    assert sum("pruned at step" in line for line in lines) == row["pruned"]
    best = tmp_path / "tune" / "best" / "simvp_tiny.yaml"
    text = best.read_text()
    assert f"trial {row['best_trial']}" in text and "train.lr=" in text and "max_steps: 4" in text
    effort = json.loads((tmp_path / "tune" / "best" / "tuning.json").read_text())
    assert effort["spec"]["trials"] == 6 and effort["effort"][0]["pruned"] == row["pruned"]

    monkeypatch.setattr(data, "create", create)  # the final phase: default and tuned recipes over the seeds, on test
    outcome = sweep(study, torch.device("cpu"), digits_root, echo=lines.append)
    labels = sorted({Path(r["run_dir"]).name.rsplit("-seed", 1)[0] for r in outcome["runs"]})
    assert labels == ["persistence", "simvp_tiny", "simvp_tiny_tuned"]
    markdown = Path(outcome["markdown"]).read_text()
    assert "## Tuning" in markdown and "### Default against tuned settings" in markdown
    assert f"| simvp_tiny | 6 | {row['complete']} | {row['pruned']} |" in markdown
    assert markdown.index("## Tuning") < markdown.index("## Runs")


def test_a_second_search_adds_nothing(study_file, digits_root):
    study = load_study(study_file(trials=2, pruner="none"))
    first = tune(study, torch.device("cpu"), digits_root, echo=lambda _: None)
    for trial_dir in Path(study.tune.runs).glob("*/trial-*"):  # the journal carried to a machine without them
        shutil.rmtree(trial_dir)
    lines = []
    again = tune(study, torch.device("cpu"), digits_root, echo=lines.append)
    assert again["effort"][0]["trials"] == 2 and not any("trial" in line and " in " in line for line in lines[:-1])
    assert again["effort"][0]["steps"] == first["effort"][0]["steps"] == 2 * study.tune.steps  # read from storage


@pytest.mark.parametrize(
    "extra, args, needle",
    [
        ("", ["--recipe", "digits/nope"], "--recipe 'digits/nope': not a recipe of study tiny; valid: persistence"),
        ("", ["--storage", "sqlite:///x.db"], "SQLite does not serve parallel workers"),
        ("", ["--trials", "0"], "--trials 0: valid: an integer >= 1"),
        ("    model.codebook_size: {choice: [8, 16]}\n", [], "tune.space.model.codebook_size cannot be set on"),
        ("    train.nope: {uniform: [0, 1]}\n", [], "--set train.nope: no such key"),
    ],
)
def test_mistakes_are_one_line(study_file, digits_root, extra, args, needle):
    path = study_file()
    path.write_text(path.read_text().replace("  runs:", extra + "  runs:", 1) if extra else path.read_text())
    result = runner.invoke(app, ["tune", str(path), "--root", str(digits_root), "--device", "cpu", *args])
    assert result.exit_code == 1 and needle in result.output and "Traceback" not in result.output, result.output


def test_a_key_limited_to_other_recipes_is_accepted(study_file):
    path = study_file()
    path.write_text(
        path.read_text().replace("  runs:", "    model.codebook_size: {choice: [8, 16], recipes: [elsewhere]}\n  runs:")
    )
    with pytest.raises(SvqbenchError, match="recipes: 'elsewhere' is not one of its recipes"):
        tune(load_study(path), torch.device("cpu"))


def test_a_validation_split_that_is_not_held_out_is_refused(study_file, digits_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(digits_root, root)
    manifest = root / "digits" / "manifest.json"
    content = json.loads(manifest.read_text())
    content["val_held_out"] = False
    manifest.write_text(json.dumps(content))
    with pytest.raises(SvqbenchError, match="validation split is not held out from training"):
        tune(load_study(study_file()), torch.device("cpu"), root)


def test_space_entries_are_checked_in_the_study_file(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\ndataset: digits\nrecipes: [digits/simvp]\n"
        "tune: {trials: 2, steps: 5, space: {train.lr: {uniform: [1, 0.5]}}}\n"
    )
    with pytest.raises(SvqbenchError, match="the low bound must be below the high one"):
        load_study(path)
    path.write_text(path.read_text().replace("train.lr: {uniform: [1, 0.5]}", "train.seed: {int: [1, 5]}"))
    with pytest.raises(SvqbenchError, match="the budget and the seed are the study's"):
        load_study(path)


def test_a_baseline_study_supplies_the_defaults(study_file, digits_root, tmp_path):
    """With tune.baseline the sweep trains only the tuned recipes (and the floors); the defaults' rows come from the
    baseline study's leaderboard, compared with the tuned ones across seeds."""
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        "name: base\ndataset: digits\nrecipes: [digits/persistence, digits/simvp_tiny]\nseeds: [1, 2]\n"
        "eval: {metrics: [mae, mse], batch_size: 4}\n"
        f"runs: {tmp_path / 'base_runs'}\nout: {tmp_path / 'out'}\n"
    )
    sweep(load_study(baseline), torch.device("cpu"), digits_root, echo=lambda _: None)
    study = load_study(study_file(trials=2, pruner="none", extra=f"  baseline: {baseline}\n"))
    tune(study, torch.device("cpu"), digits_root, echo=lambda _: None)
    outcome = sweep(study, torch.device("cpu"), digits_root, echo=lambda _: None)
    labels = sorted({Path(r["run_dir"]).name.rsplit("-seed", 1)[0] for r in outcome["runs"]})
    assert labels == ["persistence", "simvp_tiny_tuned"]  # the defaults were not trained again
    markdown = Path(outcome["markdown"]).read_text()
    section = markdown[markdown.index("### Default against tuned settings") :]
    row = next(line for line in section.splitlines() if line.startswith("| simvp_tiny |"))
    assert row.count("(n=2)") == 4 and row.count("[") == 2  # mean ± std (n) of each side, an interval per metric
    rows = pd.read_csv(outcome["csv"])
    assert set(rows["run"].map(lambda r: r.rsplit("-seed", 1)[0])) == {"persistence", "simvp_tiny", "simvp_tiny_tuned"}
    assert len(rows) == 3 * len(study.seeds)  # the floors once: the study's own, not the baseline's as well


def test_the_report_gains_a_tuning_section(study_file, digits_root):
    """Optimisation history and parameter importances (Optuna's matplotlib plots) and the best parameters per model."""
    from svqbench.flows.report import tuning_html

    path = study_file(trials=3, pruner="none")
    tune(load_study(path), torch.device("cpu"), digits_root, echo=lambda _: None)
    page = tuning_html(str(path))
    assert page.startswith("<h2>Tuning</h2>") and "<h3>simvp_tiny</h3>" in page
    assert 'alt="history of simvp_tiny" src="data:image/png;base64,' in page
    assert "Best: trial " in page and "train.lr = " in page
    assert 'alt="importances of simvp_tiny" src="data:image/png;base64,' in page
