"""Hostile inputs to the CLI (issue 26, "Faults found"): each ends in exit 1 and exactly one ``error:`` line on
stderr, never a traceback. Each case runs ``python -m svqbench`` in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]


def svqbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "svqbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def _truncated_npy(folder: Path) -> Path:
    path = folder / "huge.npy"
    np.save(path, np.zeros((1000, 1, 16, 16), np.uint8))
    with path.open("r+b") as handle:  # keep the header, drop nearly all the data it declares
        handle.truncate(path.stat().st_size - 1000 * 16 * 16 + 100)
    return path


def _object_npy(folder: Path) -> Path:
    path = folder / "objects.npy"
    array = np.empty((20, 1, 4, 4), dtype=object)
    array[...] = 0
    np.save(path, array, allow_pickle=True)
    return path


def _object_npz(folder: Path) -> Path:
    path = folder / "objects.npz"
    array = np.empty((20, 1, 4, 4), dtype=object)
    array[...] = 0
    np.savez(path, frames=array)
    return path


def _empty_file(folder: Path) -> Path:
    path = folder / "empty.npy"
    path.write_bytes(b"")
    return path


def _complex_npy(folder: Path) -> Path:
    path = folder / "complex.npy"
    np.save(path, np.ones((20, 1, 4, 4), np.complex64))
    return path


def _good_npy(folder: Path) -> Path:
    path = folder / "good.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (40, 1, 8, 8), dtype=np.uint8))
    return path


def _recipe(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "simvp", **TINY_MODEL},
                "train": {"epochs": 1, "max_steps": 1, "batch_size": 4, "num_workers": 0},
                "eval": {"metrics": ["mae"], "batch_size": 4},
            }
        )
    )
    return path


def _prep_arrays(source, *extra: str):
    return lambda folder: [
        "prep",
        "arrays",
        "--src",
        str(source(folder)),
        "--name",
        "mine",
        "--frames",
        "2:2",
        "--root",
        str(folder / "data"),
        *extra,
    ]


def _train_seed(seed: str):
    return lambda folder: [
        "train",
        str(_recipe(folder)),
        "--run-dir",
        str(folder / "run"),
        "--root",
        str(folder / "data"),
        "--device",
        "cpu",
        "--set",
        f"train.seed={seed}",
    ]


def _prep_named(name: str):
    return lambda folder: [
        "prep",
        "arrays",
        "--src",
        str(_good_npy(folder)),
        "--name",
        name,
        "--frames",
        "2:2",
        "--root",
        str(folder / "data"),
    ]


def _exiting_plugin(folder: Path) -> list[str]:
    plugin = folder / "quits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    recipe = folder / "plugin.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "quits.py:Model"},
                "train": {"epochs": 1, "max_steps": 1, "batch_size": 4, "num_workers": 0},
            }
        )
    )
    return ["train", str(recipe), "--run-dir", str(folder / "run"), "--root", str(folder / "data"), "--device", "cpu"]


CASES = {
    "3 seed too big": (_train_seed("100000000000000000000000"), "train.seed"),
    "3 seed negative": (_train_seed("-5"), "train.seed"),
    "5 npy header beyond file": (_prep_arrays(_truncated_npy), "huge.npy"),
    "6 object npy": (_prep_arrays(_object_npy), "objects.npy"),
    "7 object npz": (_prep_arrays(_object_npz), "objects.npz"),
    "8 nan split": (_prep_arrays(_good_npy, "--split", "nan,nan,nan"), "nan,nan,nan"),
    "27 empty file": (_prep_arrays(_empty_file), "empty.npy"),
    "28 complex array": (_prep_arrays(_complex_npy), "complex"),
    "14 name climbing out": (_prep_named("../../escape"), "../../escape"),
    "14 name absolute": (_prep_named("/tmp/elsewhere"), "/tmp/elsewhere"),
    "29 plugin sys.exit": (_exiting_plugin, "model.name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_ends_in_one_line(case, tmp_path):
    command, named = CASES[case]
    line = assert_one_error_line(svqbench(*command(tmp_path), cwd=tmp_path))
    assert named in line
    assert not (tmp_path / "run").exists(), "a refused run must not claim its folder"
    assert not (tmp_path / "data" / "mine").exists(), "a refused prep must leave no dataset behind"


def test_names_never_leave_the_data_root(tmp_path):
    """Fault 14: nothing is written beside or above the data root."""
    svqbench(*_prep_named("../escape")(tmp_path), cwd=tmp_path)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("module, dataset", [("mmnist", "mmnist"), ("weather", "weather_t2m")])
def test_mirror_url_without_trailing_slash_is_joined(module, dataset, tmp_path, monkeypatch):
    """Fault 22: ``--url http://mirror/folder`` names files inside the folder, not ``folderFILE``."""
    import importlib

    from svqbench import data
    from svqbench.errors import SvqbenchError

    asked = []

    def fetch(source, target, src, url):
        asked.append(url)
        raise SvqbenchError("stop after the first URL")

    monkeypatch.setattr(importlib.import_module(f"svqbench.data.{module}"), "fetch", fetch)
    with pytest.raises(SvqbenchError):
        data.prepare(dataset, root=tmp_path, url="http://mirror.example/folder")
    assert asked and asked[0].startswith("http://mirror.example/folder/"), asked
