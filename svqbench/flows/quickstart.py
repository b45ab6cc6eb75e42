"""``svqbench quickstart``: the whole loop in minutes on a CPU, with both floors in the table.

It prepares the embedded ``digits_small`` dataset (one digit in 32x32, 10 -> 10 frames), trains
and evaluates ``blank``, ``persistence`` and a small SimVP with SVQ (1,000 steps: the budget that
plain SimVP and SVQ shared before, spent on SVQ alone; the comparison between them is the committed
study's, `svqbench sweep recipes/studies/digits_small.yaml`), and renders the SVQ model's prediction. Everything it
writes goes into one new
working folder (``./quickstart-YYYYmmdd-HHMMSS/``: ``runs/``, ``leaderboards/``, the GIF and a PNG
strip); the repository's ``assets/quickstart.gif`` and ``leaderboards/digits_small.*`` change only
with ``refresh_assets``.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from rich.console import Console
from rich.table import Table

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.machine import bf16_support
from svqbench.engine.predict import predict_sample
from svqbench.engine.runs import LoadedRun
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.progress import Reporter
from svqbench.render import comparison_frames, strip, write_gif, write_png
from svqbench.results.directions import LOWER_IS_BETTER

DATASET = "digits_small"
RECIPES = ("blank", "persistence", "simvp_svq")  # the floors first, SVQ last
# SVQ's budget: scripts/quickstart_frontier.py measured SSIM at +10 of 0.62 / 0.69 / 0.72 after 500 / 1000 / 1500
# steps (81 / 167 / 260 s of training on 2 EPYC cores); 1000 keeps the whole quickstart within about 3 minutes
SVQ_BUDGET = ("train.max_steps=1000", "train.epochs=2")
METRICS = ("mae", "mse", "ssim", "psnr")
RENDER_INDEX = 0
GIF_NAME = "quickstart.gif"


@dataclass
class QuickstartResult:
    folder: Path
    seconds: float
    precision: str
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe name -> evaluate() report

    def scores(self, recipe: str, first_frame: bool = False) -> dict[str, float]:
        report = self.reports[recipe]
        return {m: report["per_frame"][m][0] if first_frame else report["overall"][m] for m in METRICS}

    def svq_beats_floors(self) -> bool:
        """The SVQ model is better than blank and persistence on every metric, overall and on frame +1."""
        svq = f"{DATASET}/{RECIPES[-1]}"
        floors = [f"{DATASET}/{RECIPES[0]}", f"{DATASET}/{RECIPES[1]}"]
        for first in (False, True):
            mine = self.scores(svq, first)
            for floor in floors:
                theirs = self.scores(floor, first)
                if not all(_better(m, mine[m], theirs[m]) for m in METRICS):
                    return False
        return True


def _better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def default_folder(base: Path = Path(".")) -> Path:
    return base / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"


@contextmanager
def leaderboards_in(folder: Path) -> Iterator[None]:
    """Send leaderboard rows to ``folder`` (via ``$SVQBENCH_LEADERBOARDS``) while active."""
    previous = os.environ.get("SVQBENCH_LEADERBOARDS")
    os.environ["SVQBENCH_LEADERBOARDS"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SVQBENCH_LEADERBOARDS"]
        else:
            os.environ["SVQBENCH_LEADERBOARDS"] = previous


def choose_precision(device: torch.device, precision: str) -> str:
    """``auto``: bf16 autocast where a timed matmul shows it is faster on ``device``, else fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise SvqbenchError(f"--precision {precision!r}: valid: auto, fp32, bf16")
    if precision != "auto":
        return precision
    return "bf16" if bf16_support(device).use_autocast else "fp32"


def run_quickstart(
    device: torch.device,
    root: Path | None,
    folder: Path,
    console: Console,
    precision: str = "auto",
    overrides: tuple[str, ...] = (),
) -> QuickstartResult:
    """Prep, train and evaluate each quick recipe into ``folder``; render the SVQ model.

    ``overrides`` (``--set`` strings) apply to every recipe, e.g. a shorter budget in tests.
    """
    started = time.perf_counter()
    if folder.exists() and any(folder.iterdir()):
        raise SvqbenchError(f"{folder} is not empty; the quickstart writes into a new folder")
    precision = choose_precision(device, precision)
    result = QuickstartResult(folder, 0.0, precision)
    console.print(f"[bold]1/4[/] preparing {DATASET} (training in {precision} on {device}) ...")
    data.prepare(DATASET, root=root)
    with leaderboards_in(folder / "leaderboards"):
        for name in RECIPES:
            budget = SVQ_BUDGET if name == RECIPES[-1] else ()
            recipe = load_recipe(f"{DATASET}/{name}", [f"train.precision={precision}", *budget, *overrides])
            run_dir = folder / "runs" / name
            console.print(f"[bold]2/4[/] training {recipe.name} -> {run_dir}")
            train(recipe, run_dir, device, data_root=root, reporter=Reporter())
            console.print(f"[bold]3/4[/] evaluating {recipe.name}")
            result.reports[recipe.name] = evaluate(run_dir, device, METRICS, data_root=root)
    gif = folder / GIF_NAME
    console.print(f"[bold]4/4[/] rendering {gif}")
    run = LoadedRun(folder / "runs" / RECIPES[-1], device)
    inputs, truth, pred = predict_sample(run, RENDER_INDEX, "test", root)
    write_gif(comparison_frames(inputs, truth, pred), gif)
    write_png(strip(inputs, truth, pred), gif.with_suffix(".png"))
    result.seconds = time.perf_counter() - started
    return result


def results_table(result: QuickstartResult) -> Table:
    """Overall and first-predicted-frame metrics per recipe. No value is marked best: one seed each
    cannot tell close values apart (the study, `svqbench sweep`, can)."""
    minutes, seconds = divmod(round(result.seconds), 60)
    table = Table(
        title=f"{DATASET} test set (standard convention, {result.precision}): {minutes} min {seconds:02d} s in all"
    )
    table.add_column("recipe")
    table.add_column("params", justify="right")
    columns = [(m, False) for m in METRICS] + [(m, True) for m in METRICS]
    for metric, first in columns:
        table.add_column(f"{metric.upper()} +1" if first else metric.upper(), justify="right")
    for name in result.reports:
        cells = [format_metric(metric, result.scores(name, first)[metric]) for metric, first in columns]
        table.add_row(name, f"{result.reports[name]['parameters']:,}", *cells)
    return table


def format_metric(metric: str, value: float) -> str:
    return f"{value:.2f}" if metric == "psnr" else f"{value:.4f}" if metric in LOWER_IS_BETTER else f"{value:.3f}"


def refresh_assets(result: QuickstartResult, repository: Path) -> list[Path]:
    """Copy the GIF to ``repository/assets/quickstart.gif`` and the quickstart's leaderboard to
    ``repository/leaderboards/quickstart/digits_small.*``, apart from the study's rows in
    ``leaderboards/digits_small.*``; on purpose only (``--refresh-assets``)."""
    assets, boards = repository / "assets", repository / "leaderboards"
    if not (repository / "pyproject.toml").is_file() or not assets.is_dir() or not boards.is_dir():
        raise SvqbenchError(f"--refresh-assets: {repository.resolve()} is not the svqbench repository root")
    boards = boards / "quickstart"
    boards.mkdir(exist_ok=True)
    copied = [shutil.copyfile(result.folder / GIF_NAME, assets / GIF_NAME)]
    for suffix in (".csv", ".md"):
        name = f"{DATASET}{suffix}"
        copied.append(shutil.copyfile(result.folder / "leaderboards" / name, boards / name))
    return [Path(p) for p in copied]
