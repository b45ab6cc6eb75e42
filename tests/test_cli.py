"""The CLI end to end on a tiny recipe, and bad input as one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from svqbench.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_prep_train_eval_render_leaderboard(tmp_path, tiny_recipe, isolated_leaderboards):
    root = tmp_path / "data"
    prepped = invoke("prep", "digits", "--root", root, "--opt", "train=8", "--opt", "val=4", "--opt", "test=4")
    assert prepped.exit_code == 0, prepped.output

    run_dir = tmp_path / "run"
    trained = invoke("train", tiny_recipe, "--root", root, "--run-dir", run_dir, "--device", "cpu", "--quiet")
    assert trained.exit_code == 0, trained.output
    assert trained.output.strip() == str(run_dir)
    for name in ("recipe.yaml", "best.pt", "last.pt", "log.jsonl"):
        assert (run_dir / name).is_file(), name
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[-1]["step"] == 4

    evaluated = invoke("eval", run_dir, "--root", root, "--metrics", "mae,mse,rmse,ssim,psnr", "--plot")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["overall"]) == {"mae", "mse", "rmse", "ssim", "psnr"}
    assert len(metrics["per_frame"]["mse"]) == 10 and metrics["split"] == "test"
    assert (run_dir / "horizon.png").is_file()
    table = pd.read_csv(isolated_leaderboards / "digits.csv")
    assert table["run"].tolist() == ["run"] and table.loc[0, "mse"] == pytest.approx(metrics["overall"]["mse"])
    assert (isolated_leaderboards / "digits.md").is_file()

    rendered = invoke("render", run_dir, "--root", root, "--index", 1, "--out", tmp_path / "clip.gif")
    assert rendered.exit_code == 0, rendered.output
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == 20 and (tmp_path / "clip.png").is_file()

    shown = invoke("leaderboard", "digits")
    assert shown.exit_code == 0 and "simvp_svq" in shown.output

    resumed = invoke(
        "train", "--resume", run_dir, "--root", root, "--set", "train.max_steps=6", "--set", "train.epochs=3", "--quiet"
    )
    assert resumed.exit_code == 0, resumed.output
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["step"] == 6


def test_recipes_command_lists_shipped_recipes():
    result = invoke("recipes")
    assert result.exit_code == 0 and "digits/simvp_svq" in result.output


@pytest.mark.parametrize(
    "args, needles",
    [
        (["prep", "imagenet"], ["unknown dataset 'imagenet'", "digits"]),
        (["prep", "digits", "--opt", "frames"], ["--opt 'frames'"]),
        (["train", "digits/nope"], ["unknown recipe 'digits/nope'"]),
        (["train", "digits/simvp", "--set", "train.momentum=0.9"], ["train.momentum"]),
        (["train", "digits/simvp", "--device", "tpu"], ["--device 'tpu'"]),
        (["train"], ["missing RECIPE", "--resume DIR"]),
        (["leaderboard", "nothing"], ["no leaderboard for 'nothing'"]),
        (["eval", "runs/x", "--range", "cold"], ["--range 'cold'", "LO,HI"]),
    ],
)
def test_bad_input_is_one_line(args, needles):
    assert_one_line_error(invoke(*args), *needles)


def test_missing_data_names_prep_command(tmp_path):
    result = invoke("train", "digits/simvp_quick", "--root", tmp_path, "--run-dir", tmp_path / "r")
    assert_one_line_error(result, f"svqbench prep digits --root {tmp_path}")
    assert not (tmp_path / "r" / "best.pt").exists()


def test_run_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("eval", tmp_path / "empty"), "no checkpoint")
    assert_one_line_error(invoke("render", tmp_path / "missing"), "does not exist")


def test_unknown_metric_and_convention(tmp_path, tiny_recipe, digits_root):
    run_dir = tmp_path / "run"
    assert invoke("train", tiny_recipe, "--root", digits_root, "--run-dir", run_dir, "--quiet").exit_code == 0
    assert_one_line_error(
        invoke("eval", run_dir, "--root", digits_root, "--metrics", "mse,fid"), "unknown metric 'fid'"
    )
    assert_one_line_error(invoke("eval", run_dir, "--root", digits_root, "--convention", "mine"), "mine")
    assert_one_line_error(invoke("render", run_dir, "--root", digits_root, "--index", 99), "--index 99")


def test_predict_continues_a_video(tmp_path, tiny_recipe, digits_root):
    import cv2
    import numpy as np

    run_dir = tmp_path / "run"
    assert invoke("train", tiny_recipe, "--root", digits_root, "--run-dir", run_dir, "--quiet").exit_code == 0
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for t in range(12):
        frame = np.zeros((40, 48, 3), np.uint8)
        frame[10:20, 2 * t : 2 * t + 10] = 255
        writer.write(frame)
    writer.release()
    result = invoke("predict", run_dir, video, "--out", tmp_path / "pred.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "pred.npy").shape == (10, 1, 64, 64)
    assert_one_line_error(invoke("predict", run_dir, tmp_path / "none.avi"), "no such file")
