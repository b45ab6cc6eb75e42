"""The run directory: the only contract between ``train``, ``eval``, ``render`` and ``predict``.

``RUN/recipe.yaml`` (resolved recipe), ``RUN/log.jsonl`` (one JSON object per line),
``RUN/best.pt`` (lowest validation loss), ``RUN/last.pt`` (end of the latest epoch),
``RUN/metrics.json`` (from eval). A checkpoint carries its own recipe and dataset facts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from svqbench.config import Recipe, validate_recipe
from svqbench.data.base import DatasetInfo
from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path, write_text
from svqbench.models import create_model


def new_run_dir(recipe: Recipe, base: Path = Path("runs")) -> Path:
    # the dataset actually used (after --set dataset=...), then the recipe's own name
    stem = f"{recipe.dataset}-{recipe.name.split('/')[-1] or recipe.model_name}"
    return base / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_recipe(run_dir: Path, recipe: Recipe) -> None:
    write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def save_checkpoint(path: Path, **state: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """``best.pt`` when present (falls back to ``last.pt``), or exactly ``which``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SvqbenchError(f"run directory {run_dir} does not exist")
    order = ["best.pt", "last.pt"] if which == "best" else [f"{which}.pt"]
    for name in order:
        if (run_dir / name).is_file():
            return run_dir / name
    raise SvqbenchError(f"{run_dir}: no checkpoint ({' or '.join(order)}); train it with `svqbench train`")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise SvqbenchError(f"{path}: not a readable svqbench checkpoint ({type(e).__name__})") from None


class LoadedRun:
    """A trained model with its recipe and dataset facts, ready for evaluation or prediction."""

    def __init__(self, run_dir: Path, device: torch.device, which: str = "best"):
        self.dir = Path(run_dir)
        self.checkpoint_file = checkpoint_path(self.dir, which)
        state = load_checkpoint(self.checkpoint_file, device)
        self.recipe: Recipe = validate_recipe(state["recipe"], str(self.checkpoint_file))
        self.info = DatasetInfo.from_dict(state["info"])
        self.epoch: int = state.get("epoch", 0)
        self.model: nn.Module = create_model(self.recipe.model_name, self.info, **self.recipe.model_args)
        self.model.load_state_dict(state["model"])
        self.model.to(device).eval()
        self.device = device
