"""Shared fixtures: a tiny prepared ``digits`` dataset and isolated leaderboards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from svqbench import data

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

TINY_MODEL = {"hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "translator": "incepu"}


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """A data root holding a 12/4/4-sequence ``digits`` dataset."""
    root = tmp_path_factory.mktemp("data")
    data.prepare("digits", root=root, train=12, val=4, test=4)
    return root


@pytest.fixture(autouse=True)
def isolated_leaderboards(tmp_path, monkeypatch) -> Path:
    """Every test writes leaderboards into its own folder, never into the repository."""
    folder = tmp_path / "leaderboards"
    monkeypatch.setenv("SVQBENCH_LEADERBOARDS", str(folder))
    return folder


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    """A recipe file training a very small SimVP+SVQ for two steps."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "dataset: digits\n"
        "model: {name: simvp_svq, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu, codebook_size: 32}\n"
        "train: {epochs: 2, max_steps: 4, batch_size: 4, lr: 1.0e-3, num_workers: 0}\n"
        "eval: {metrics: [mae, mse, ssim, psnr], batch_size: 4}\n"
    )
    return path
