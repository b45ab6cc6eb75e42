"""The README's code blocks marked ``<!-- tested: ... -->`` run as written (CLI blocks with tiny model
settings added to `train`), so the documentation cannot drift from the code. Blocks marked
``<!-- file: NAME -->`` (a plugin, a recipe, a script) are written into the working folder first."""

from __future__ import annotations

import os
import re
import runpy
import shlex
from pathlib import Path

import pytest
from conftest import SHARED, TINY_MODEL
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app
from svqbench.metrics import i3d_weights

README = Path(__file__).resolve().parents[1] / "README.md"
MARKED_BLOCK = re.compile(r"<!-- tested:[^>]*-->\n```(\w+)\n(.*?)```", re.S)
FILE_BLOCK = re.compile(r"<!-- file: (\S+)[^>]*-->\n```\w+\n(.*?)```", re.S)
TINY_TRAIN = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "model.codebook_size=16",
    "train.epochs=1",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.num_workers=0",
]
VIDEOS = SHARED / "reference" / "videos"


def marked_blocks(language: str) -> list[str]:
    return [code for lang, code in MARKED_BLOCK.findall(README.read_text()) if lang == language]


def test_readme_marks_both_kinds_of_block():
    assert marked_blocks("python") and marked_blocks("bash")


@pytest.mark.parametrize("code", marked_blocks("python"))
def test_python_blocks_run(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    data.prepare("digits_small", root=root, train=4, val=2, test=8)  # the block's prepare() then finds it
    monkeypatch.setenv("SVQBENCH_DATA", str(root))
    exec(compile(code, str(README), "exec"), {})
    assert "mse" in capsys.readouterr().out


def as_cli_args(line: str) -> list[str]:
    """One `svqbench ...` line -> CliRunner arguments: shared example clips, tiny training settings."""
    args = [a.replace("clips/", f"{VIDEOS}/") for a in shlex.split(line)[1:]]
    if args[0] == "train":
        own_recipe = args[1].endswith(".yaml")  # a model of one's own: its keys are not SimVP's
        settings = [s for s in TINY_TRAIN if not (own_recipe and s.startswith("model."))]
        args += [a for setting in settings for a in ("--set", setting)] + ["--device", "cpu"]
    return args


@pytest.mark.parametrize("code", marked_blocks("bash"))
def test_bash_blocks_run(code, tmp_path, monkeypatch):
    if "clips/" in code and not VIDEOS.is_dir():
        pytest.skip("needs ../shared/reference/videos")
    if (
        "fvd" in code
        and not (i3d_weights.cache_dir() / i3d_weights.CONVERTED_NAME).is_file()
        and not os.environ.get(i3d_weights.ENV_VAR)
    ):
        pytest.skip("I3D weights not cached: run `python -m svqbench.metrics` once (tests never download)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SVQBENCH_DATA", str(tmp_path / "data"))
    if "prep digits_small" in code:  # a small one: the block's prep then finds it (a no-op), eval reads 8 windows
        data.prepare("digits_small", root=tmp_path / "data", train=4, val=2, test=8)
    for name, text in FILE_BLOCK.findall(README.read_text()):
        (tmp_path / name).write_text(text)
    for line in code.strip().splitlines():
        if line.startswith("python "):
            runpy.run_path(line.split()[1], run_name="__main__")
            continue
        result = CliRunner().invoke(app, as_cli_args(line))
        assert result.exit_code == 0, f"{line}\n{result.output}"
