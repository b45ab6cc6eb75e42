"""Model plugins: a model in a file outside the repository goes through every command from another working
folder, recorded in its run; bad plugins are one-line errors naming model.name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.config import load_recipe
from svqbench.models import plugins

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """(B, T_in, C, H, W) -> one pass of T_in frames: the last input frame plus a learned change."""

    def __init__(self, shape, hidden: int = 8):
        super().__init__()
        t, c = shape.frames_in, shape.channels
        self.net = nn.Sequential(nn.Conv2d(t * c, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, t * c, 3,
        padding=1))

    def forward(self, inputs):
        b, t, c, h, w = inputs.shape
        return inputs[:, -1:] + self.net(inputs.reshape(b, t * c, h, w)).reshape(b, t, c, h, w)
'''
TRAIN = "train: {epochs: 1, max_steps: 2, batch_size: 2, num_workers: 0}\neval: {batch_size: 4}\n"


def cli(*args, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "svqbench", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def one_line_error(output: str, *needles: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output


def write_clip(path: Path) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 40))
    for t in range(12):
        frame = np.zeros((40, 40, 3), np.uint8)
        frame[10:20, 2 * t : 2 * t + 10] = 255
        writer.write(frame)
    writer.release()


def test_a_file_plugin_goes_through_every_command_from_another_folder(
    tmp_path, digits_root, isolated_leaderboards, monkeypatch
):
    outside, work, elsewhere = tmp_path / "outside", tmp_path / "work", tmp_path / "elsewhere"
    for folder in (outside, work, elsewhere):
        folder.mkdir()
    (outside / "mymodel.py").write_text(PLUGIN)
    (outside / "mine.yaml").write_text(f"dataset: digits\nmodel: {{name: mymodel.py:TinyNet, hidden: 4}}\n{TRAIN}")
    (outside / "svq.yaml").write_text(
        "dataset: digits\nmodel: {name: simvp_svq, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, "
        f"translator: incepu, codebook_size: 16}}\n{TRAIN}"
    )
    sha = hashlib.sha256(PLUGIN.encode()).hexdigest()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SVQBENCH_DATA": str(digits_root),
        "SVQBENCH_LEADERBOARDS": str(isolated_leaderboards),
        "OMP_NUM_THREADS": "1",
    }
    monkeypatch.setenv("SVQBENCH_DATA", str(digits_root))

    # training and a first evaluation in processes of their own, each from its own working folder
    ok(cli("train", outside / "mine.yaml", "--run-dir", "runs/mine", "--device", "cpu", "--quiet", cwd=work, env=env))
    run = work / "runs" / "mine"
    assert (run / "plugins" / "mymodel.py").read_text() == PLUGIN
    record = json.loads((run / "run.json").read_text())["model_plugin"]
    assert record["kind"] == "file" and record["sha256"] == sha and record["import"].endswith("mymodel.py:TinyNet")
    edited_source = PLUGIN + "# edited after training\n"
    (outside / "mymodel.py").write_text(edited_source)
    edited = cli("eval", run, cwd=elsewhere, env=env)
    ok(edited)
    assert f"sha256 {sha} then, {hashlib.sha256(edited_source.encode()).hexdigest()} now" in edited.stderr

    # the run folder alone from now on (this process never imported the original file)
    (outside / "mymodel.py").unlink()
    monkeypatch.chdir(elsewhere)
    assert (
        invoke(
            "train", outside / "svq.yaml", "--run-dir", work / "runs" / "svq", "--device", "cpu", "--quiet"
        ).exit_code
        == 0
    )
    for command in (("eval", run), ("eval", work / "runs" / "svq"), ("render", run, "--out", "mine.gif")):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
    write_clip(elsewhere / "clip.avi")
    predicted = invoke("predict", run, "clip.avi", "--out", "pred.npy")
    assert predicted.exit_code == 0 and (elsewhere / "pred.npy").is_file(), predicted.output
    compared = invoke("compare", run, work / "runs" / "svq", "--resamples", 200)
    assert compared.exit_code == 0 and "mse" in compared.output, compared.output
    one_line_error(invoke("fold", run, "--out", "folded").output, "cannot be folded")

    table = pd.read_csv(isolated_leaderboards / "digits.csv")
    row = table[table["run"] == "mine"].iloc[0]
    assert row["model"] == f"mymodel.py:TinyNet@{sha[:12]}" and row["plugin_sha256"] == sha
    assert row["plugin"].endswith("mymodel.py:TinyNet")
    board = invoke("leaderboard", "digits").output
    assert f"mymodel.py:TinyNet@{sha[:12]}" in board and "simvp_svq" in board

    shutil.rmtree(run / "plugins")
    one_line_error(invoke("eval", run).output, "model plugin file is missing", "mymodel.py")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


BAD_PLUGINS = {
    "no_module": ("nonexistent_pkg.nets:Net", "", "no module named 'nonexistent_pkg'"),
    "no_attribute": ("plugin.py:Missing", PLUGIN, "'Missing' in"),
    "no_file": ("absent.py:TinyNet", "", "no file"),
    "import_fails": ("plugin.py:TinyNet", "import not_a_module_anywhere\n", "ModuleNotFoundError"),
    "factory_raises": (
        "plugin.py:Broken",
        PLUGIN + "\ndef Broken(shape):\n    raise ValueError('needs 3 channels')\n",
        "Broken(ClipShape(frames_in=10",
    ),
    "wrong_shape": (
        "plugin.py:Shrinks",
        PLUGIN + "\nclass Shrinks(TinyNet):\n    def forward(self, inputs):\n"
        "        return super().forward(inputs)[..., :-1]\n",
        "expected (1, T, 1, 64, 64)",
    ),
    "not_a_module": ("plugin.py:Number", PLUGIN + "\ndef Number(shape):\n    return 3\n", "expected a torch.nn.Module"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_bad_plugins_are_one_line_errors_naming_model_name(case, tmp_path, digits_root):
    name, source, needle = BAD_PLUGINS[case]
    (tmp_path / "plugin.py").write_text(source)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"dataset: digits\nmodel: {{name: '{name}'}}\n{TRAIN}")
    result = CliRunner().invoke(
        app, ["train", str(recipe), "--root", str(digits_root), "--run-dir", str(tmp_path / "run"), "--device", "cpu"]
    )
    assert result.exit_code == 1, result.output
    one_line_error(result.output, "model.name=", needle)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_plugin_paths_are_read_from_the_recipe_folder_and_set_from_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mymodel.py").write_text(PLUGIN)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "mine.yaml"
    recipe.write_text(f"dataset: digits\nmodel: {{name: ../nets/mymodel.py:TinyNet}}\n{TRAIN}")
    expected = f"{(tmp_path / 'nets' / 'mymodel.py').resolve()}:TinyNet"
    assert load_recipe(str(recipe)).model_name == expected
    monkeypatch.chdir(tmp_path / "nets")
    overridden = load_recipe(str(recipe), ["model.name=mymodel.py:TinyNet", "model.hidden=4"])
    assert overridden.model_name == expected and overridden.model_args == {"hidden": 4}


def test_models_lists_builtins_and_plugins_with_parameters(tmp_path, monkeypatch):
    (tmp_path / "mymodel.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["models", "--dataset", "digits", "--model", "mymodel.py:TinyNet"])
    assert result.exit_code == 0, result.output
    assert "simvp_svq" in result.output and "TinyNet" in result.output and "1x64x64" in result.output
    # TinyNet(hidden=8) at 10 frames of 1 channel: conv 10->8 (3x3) and 8->10 (3x3), with biases
    assert f"{10 * 8 * 9 + 8 + 8 * 10 * 9 + 10:,}" in result.output
    one_line_error(CliRunner().invoke(app, ["models", "--dataset", "nope"]).output, "unknown dataset 'nope'")


def test_a_plugin_run_resumes_from_its_copy(tmp_path, digits_root, monkeypatch):
    (tmp_path / "mymodel.py").write_text(PLUGIN)
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        f"dataset: digits\nmodel: {{name: mymodel.py:TinyNet}}\n{TRAIN.replace('max_steps: 2', 'max_steps: 1')}"
    )
    run = tmp_path / "run"
    assert invoke("train", recipe, "--root", digits_root, "--run-dir", run, "--device", "cpu", "--quiet").exit_code == 0
    (tmp_path / "mymodel.py").unlink()
    monkeypatch.setattr(plugins, "_factories", {})  # as a new process: nothing imported yet
    resumed = invoke("train", "--resume", run, "--set", "train.max_steps=2", "--root", digits_root, "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
