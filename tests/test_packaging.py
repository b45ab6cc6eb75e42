"""The wheel ships every module and every named recipe, and an installed copy finds its recipes from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info folders."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("svqbench", "recipes"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
        ],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        if "No module named pip" in built.stderr:
            pytest.skip("pip is not available")
        raise AssertionError(built.stderr)
    return next((work / "dist").glob("svqbench-*.whl"))


def test_wheel_holds_every_recipe_and_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = [p.relative_to(REPO / "recipes").as_posix() for p in (REPO / "recipes").glob("*/*.yaml")]
    assert recipes and {f"svqbench/recipes/{r}" for r in recipes} <= names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "svqbench").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_installed_copy_lists_recipes_from_an_empty_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel, unpacked = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SVQBENCH_RECIPES"} | {"PYTHONPATH": str(site)}
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from svqbench.config import list_recipes, recipes_dir; print(recipes_dir()); print(*list_recipes())",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    where, names = listed.stdout.splitlines()
    assert Path(where) == site / "svqbench" / "recipes"
    assert "digits_small/simvp_svq" in names.split() and "videos/simvp_svq" in names.split()
