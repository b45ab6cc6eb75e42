"""A diverged run never reaches a checkpoint or a leaderboard: training stops with one line at the first
non-finite state and leaves the last finite checkpoint; eval refuses non-finite predictions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL
from test_cli import assert_one_line_error, invoke

from svqbench.config import load_recipe
from svqbench.engine import step as step_module
from svqbench.engine import train as train_module
from svqbench.engine.runs import LoadedRun, load_checkpoint
from svqbench.errors import SvqbenchError
from svqbench.models import forecast
from svqbench.results import leaderboard

CPU = torch.device("cpu")


def recipe_file(folder: Path, **train_keys) -> Path:
    keys = {
        "epochs": 4,
        "max_steps": 8,
        "batch_size": 4,
        "lr": 1.0e-3,
        "num_workers": 0,
        "checkpoint_every": 1,
        "val_every": 1,
        **train_keys,
    }
    path = folder / "tiny.yaml"
    model = ", ".join(f"{k}: {v}" for k, v in {"name": "simvp_svq", **TINY_MODEL, "codebook_size": 32}.items())
    train = ", ".join(f"{k}: {v}" for k, v in keys.items())
    path.write_text(
        f"dataset: digits\nmodel: {{{model}}}\ntrain: {{{train}}}\neval: {{metrics: [mae, mse], batch_size: 4}}\n"
    )
    return path


def infinite_gradient_at(step: int, monkeypatch) -> None:
    """From ``step`` on, the gradient reaching the model's output is +inf (the forward pass stays finite)."""
    real = step_module.training_forecast

    def forcing(module, inputs, targets, at):
        out = real(module, inputs, targets, at)
        if at == step:
            out.frames.register_hook(lambda grad: torch.full_like(grad, math.inf))
        return out

    monkeypatch.setattr(step_module, "training_forecast", forcing)


def predicts_finite(checkpoint: Path, digits_root: Path) -> bool:
    run = LoadedRun(checkpoint.parent, CPU, which=checkpoint.stem)
    inputs = torch.rand(2, run.info.frames_in, run.info.channels, run.info.height, run.info.width)
    with torch.no_grad():
        return bool(torch.isfinite(forecast(run.model, inputs, run.info.frames_out).frames).all())


def test_infinite_gradient_stops_training_and_leaves_finite_checkpoints(tmp_path, digits_root, monkeypatch):
    infinite_gradient_at(4, monkeypatch)
    run_dir = tmp_path / "run"
    with pytest.raises(SvqbenchError) as error:
        train_module.train(load_recipe(recipe_file(tmp_path)), run_dir, CPU, data_root=digits_root)
    message = str(error.value)
    assert "diverged at step 5" in message and "train.lr" in message and "train.clip_grad" in message
    left = sorted(run_dir.glob("*.pt"))
    assert {p.name for p in left} == {"best.pt", "last.pt"}
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4  # the last finite state, not the diverged one
    for checkpoint in left:
        assert predicts_finite(checkpoint, digits_root), checkpoint.name
        weights = load_checkpoint(checkpoint)["model"].values()
        assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point()), checkpoint.name


def test_clip_grad_does_not_hide_an_infinite_gradient(tmp_path, digits_root, monkeypatch):
    infinite_gradient_at(2, monkeypatch)
    with pytest.raises(SvqbenchError, match="diverged at step 3"):
        train_module.train(
            load_recipe(recipe_file(tmp_path, clip_grad=1.0)), tmp_path / "run", CPU, data_root=digits_root
        )


def test_huge_learning_rate_is_one_line_and_no_row(tmp_path, digits_root, isolated_leaderboards):
    run_dir = tmp_path / "run"
    result = invoke(
        "train",
        recipe_file(tmp_path),
        "--run-dir",
        run_dir,
        "--root",
        digits_root,
        "--set",
        "train.lr=1e30",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "diverged at step", "train.lr", "train.clip_grad")
    for checkpoint in run_dir.glob("*.pt"):
        assert predicts_finite(checkpoint, digits_root), checkpoint.name


def test_eval_refuses_non_finite_predictions(tmp_path, digits_root, isolated_leaderboards):
    run_dir = tmp_path / "run"
    train_module.train(load_recipe(recipe_file(tmp_path, max_steps=2)), run_dir, CPU, data_root=digits_root)
    checkpoint = load_checkpoint(run_dir / "best.pt")
    first = next(name for name, value in checkpoint["model"].items() if value.is_floating_point() and "weight" in name)
    checkpoint["model"][first].fill_(math.nan)
    torch.save(checkpoint, run_dir / "best.pt")
    result = invoke("eval", run_dir, "--root", digits_root, "--device", "cpu")
    assert_one_line_error(result, "not finite", str(run_dir))
    assert not (isolated_leaderboards / "digits.csv").exists()
    assert not (run_dir / "metrics.json").exists()
    with pytest.raises(SvqbenchError):
        leaderboard.read("digits")
