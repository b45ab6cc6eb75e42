"""Installed packages join through the entry-point groups ``svqbench.models`` and ``svqbench.datasets``:
a small package is built and installed into a folder here (no network), then put on sys.path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app
from svqbench.errors import SvqbenchError
from svqbench.models import create_model

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "svqbench-tinyplug"
version = "0.1"

[tool.setuptools]
packages = ["tinyplug"]

[project.entry-points."svqbench.models"]
tinynet = "tinyplug.nets:TinyNet"
brokennet = "tinyplug.nets:NoSuchNet"

[project.entry-points."svqbench.datasets"]
tinyds = "tinyplug.data:TinyData"
notads = "tinyplug.nets:TinyNet"
"""
NETS = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, shape, hidden: int = 4):
        super().__init__()
        self.net = nn.Conv2d(shape.frames_in * shape.channels, shape.frames_in * shape.channels, 3, padding=1)

    def forward(self, inputs):
        b, t, c, h, w = inputs.shape
        return self.net(inputs.reshape(b, t * c, h, w)).reshape(b, t, c, h, w)
"""
DATA = """
import numpy as np

from svqbench.data.base import DatasetInfo, DatasetSpec, write_split


class TinyData(DatasetSpec):
    info = DatasetInfo(name="tinyds", frames_in=2, frames_out=2, channels=1, height=8, width=8)

    def prepare(self, target, src):
        rng = np.random.default_rng(0)
        for split in ("train", "val", "test"):
            frames = rng.integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)
            write_split(target, split, frames, np.arange(0, 9, 4))
        return {}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The folder a tiny plugin package was pip-installed into."""
    source = tmp_path_factory.mktemp("tinyplug")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "tinyplug").mkdir()
    (source / "tinyplug" / "__init__.py").write_text("")
    (source / "tinyplug" / "nets.py").write_text(NETS)
    (source / "tinyplug" / "data.py").write_text(DATA)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def test_installed_model_and_dataset_are_found_trained_and_named(
    installed, tmp_path, monkeypatch, isolated_leaderboards
):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    assert "tinyds" in data.DATASETS and "tinyds" in data.DATASETS.names()
    data.prepare("tinyds", root=root)
    listed = CliRunner().invoke(app, ["models", "--dataset", "tinyds", "--root", str(root)])
    assert listed.exit_code == 0, listed.output
    tinynet = next(line for line in listed.output.splitlines() if "tinynet" in line)
    assert "entry point" in tinynet and f" {2 * 2 * 9 + 2} " in tinynet  # one 3x3 conv 2 -> 2 frames, with bias
    assert "brokennet" in listed.output and "cannot load" in listed.output

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "dataset: tinyds\nmodel: {name: tinynet}\n"
        "train: {epochs: 1, batch_size: 2, num_workers: 0}\neval: {metrics: [mae, mse], batch_size: 2}\n"
    )
    for command in (
        ["train", str(recipe), "--root", str(root), "--run-dir", "run", "--device", "cpu", "--quiet"],
        ["eval", "run", "--root", str(root)],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    row = pd.read_csv(isolated_leaderboards / "tinyds.csv").iloc[0]
    assert row["model"].startswith("tinynet@") and len(row["plugin_sha256"]) == 64
    assert row["plugin"] == "tinynet = tinyplug.nets:TinyNet (svqbench-tinyplug 0.1)"


def test_broken_entry_points_are_one_line_errors(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    with pytest.raises(SvqbenchError, match=r"model 'brokennet' \(entry point 'tinyplug.nets:NoSuchNet'.*cannot load"):
        create_model("brokennet", data.DatasetInfo("x", 2, 2, 1, 8, 8))
    with pytest.raises(SvqbenchError, match="dataset 'notads'.*expected a subclass of DatasetSpec"):
        data.prepare("notads")
