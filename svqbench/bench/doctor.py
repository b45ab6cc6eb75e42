"""``svqbench doctor``: what this installation will use, on one screen, for "why is it slow / missing?"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from svqbench import __version__, data
from svqbench.config import list_recipes, recipes_dir
from svqbench.data import checks
from svqbench.data.base import read_manifest
from svqbench.engine.machine import bf16_support, resolve_device
from svqbench.errors import SvqbenchError
from svqbench.metrics import i3d_weights, lpips_weights
from svqbench.results.leaderboard import leaderboards_dir


def _devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return names


def prepared_datasets(root: Path) -> list[str]:
    """Names of the folders under ``root`` holding a complete prepared dataset, with their shapes and whether
    their files still match the checksums of the manifest."""
    found = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        try:
            manifest = read_manifest(folder)
        except SvqbenchError as error:
            found.append(f"{folder.name} (damaged: {error})")
            continue
        if manifest is not None:
            info = manifest.get("info", {})
            problems = checks.verify(folder, manifest)
            state = (
                "checksums match"
                if not problems
                else ("no checksums recorded" if "files" not in manifest else f"DAMAGED: {problems[0]}")
            )
            found.append(
                f"{folder.name} ({manifest.get('spec', '?')}, {info.get('frames_in')}->{info.get('frames_out')}, "
                f"{info.get('channels')}x{info.get('height')}x{info.get('width')}; {state})"
            )
    return found


def lpips_status() -> str:
    if os.environ.get(lpips_weights.ENV_VAR):
        return f"${lpips_weights.ENV_VAR} = {os.environ[lpips_weights.ENV_VAR]}"
    cached = lpips_weights.cache_dir() / lpips_weights.CONVERTED_NAME
    if cached.is_file():
        return f"cached: {cached}"
    return f"not cached (fetched once on first LPIPS use; or `python -m svqbench.metrics`): {cached}"


def diagnose(root: Path | None = None) -> dict[str, Any]:
    """Facts about torch, devices, bf16, threads, data, LPIPS and FVD (I3D) weights, recipes and leaderboards."""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
    auto = resolve_device("auto")
    bf16 = bf16_support(auto)
    root = Path(root) if root is not None else data.default_root()
    boards = leaderboards_dir()
    return {
        "svqbench": __version__,
        "torch": f"{torch.__version__} ({build})",
        "devices": ", ".join(_devices()),
        "device auto": str(auto),
        "bf16": (
            f"{bf16.capability}; bf16/fp32 matmul speed {bf16.speedup}x"
            if bf16.speedup is not None
            else bf16.capability
        )
        + f"; quickstart autocast: {'bf16' if bf16.use_autocast else 'fp32'}",
        "threads": f"torch {torch.get_num_threads()} of {os.cpu_count()} CPUs",
        "data root": f"{root.resolve()}" + ("" if root.is_dir() else " (does not exist yet)"),
        "datasets": ", ".join(prepared_datasets(root)) or "none prepared (svqbench prep NAME)",
        "LPIPS weights": lpips_status(),
        "FVD weights": i3d_weights.status(),
        "recipes": f"{len(list_recipes())} in {recipes_dir().resolve()}",
        "leaderboards": f"{boards.resolve()} ({len(list(boards.glob('*.csv')))} tables)",
    }
