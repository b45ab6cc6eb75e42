"""``svqbench quickstart``: the whole loop in minutes on a CPU, with both floors in the table.

It prepares the embedded ``digits_small`` dataset (one digit in 32x32, 10 -> 10 frames), trains
and evaluates ``blank``, ``persistence`` and a small SimVP with SVQ for as many steps as fit the wall-time budget
(``--minutes``, default 3) on this machine, timed by a short warm-up (the comparison with plain SimVP is the
committed study's, `svqbench sweep recipes/studies/digits_small.yaml`), and renders the SVQ model's prediction.
Everything it writes goes into one new working folder (``./quickstart-YYYYmmdd-HHMMSS/``: ``runs/``,
``leaderboards/``, the GIF and a PNG strip); the repository's ``assets/quickstart.gif`` and
``leaderboards/digits_small.*`` change only with ``refresh_assets``.
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
from svqbench.engine.batches import steps_per_epoch
from svqbench.engine.evaluate import evaluate
from svqbench.engine.machine import bf16_support
from svqbench.engine.predict import predict_sample
from svqbench.engine.runs import LoadedRun, RunDir, read_log
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.progress import Reporter
from svqbench.render import comparison_frames, strip, write_gif, write_png
from svqbench.results.directions import LOWER_IS_BETTER

DATASET = "digits_small"
RECIPES = ("blank", "persistence", "simvp_svq")  # the floors first, SVQ last
# SVQ's budget is wall time (--minutes), not steps: a few timed warm-up steps of the real model in the chosen
# precision give its samples/s on this machine, and the steps are what fits the minutes left after prep, the
# floors, evaluation and rendering (scripts/quickstart_frontier.py: SSIM at +10 of 0.62 / 0.69 / 0.72 after
# 500 / 1000 / 1500 steps on 2 EPYC cores)
DEFAULT_MINUTES = 3.0
WARMUP_STEPS = 16  # timed over the second half (the first steps allocate and warm the kernels)
MIN_STEPS, MAX_STEPS = 20, 20000
SAFETY = 0.93  # of the estimated time left: the estimates' error, and the GIF
METRICS = ("mae", "mse", "ssim", "psnr")
RENDER_INDEX = 0
GIF_NAME = "quickstart.gif"


@dataclass
class QuickstartResult:
    folder: Path
    seconds: float
    precision: str
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe name -> evaluate() report
    minutes: float = DEFAULT_MINUTES
    steps: int = 0  # SVQ's training steps, as chosen
    choice: str = ""  # why: "AVX2 CPU, fp32, 21 samples/s: 310 steps fit 3 minutes"

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


def speed_levers(device: torch.device, precision: str) -> list[str]:
    """The settings that speed up training on ``device`` at no cost in quality: channels-last weights for fp32 on a
    CPU (``scripts/quickstart_levers.py``: 1.57x on AVX2 kernels, 1.34x on AVX-512; no gain under bf16 autocast).
    torch.compile is not one: its first call (16-37 s) repays only after 400-800 steps, most of a 3-minute budget."""
    return ["train.channels_last=true"] if device.type == "cpu" and precision == "fp32" else []


def machine_kind(device: torch.device, precision: str) -> str:
    """``AVX2 CPU, fp32, channels-last`` / ``AVX512 CPU, bf16`` / ``NVIDIA H100, bf16``: what the speed depends on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {precision}"
    levers = ", channels-last" if speed_levers(device, precision) else ""
    return f"{torch.backends.cpu.get_cpu_capability()} CPU, {precision}{levers}"


def plan_steps(seconds_left: float, samples_per_s: float, batch_size: int) -> int:
    """The training steps that fit ``seconds_left`` at the measured rate, within [MIN_STEPS, MAX_STEPS]."""
    fitting = int(max(seconds_left, 0.0) * SAFETY * samples_per_s / batch_size)
    return max(MIN_STEPS, min(MAX_STEPS, fitting))


def measure_rate(recipe_name: str, settings: list[str], device: torch.device, root: Path | None, folder: Path) -> float:
    """Training samples/s of ``recipe_name`` under ``settings`` (``--set`` strings) on ``device``: WARMUP_STEPS real
    steps in a throwaway run folder, timed over the second half (a validation on one batch between the halves
    splits the log)."""
    half = WARMUP_STEPS // 2
    warmup = [f"train.max_steps={WARMUP_STEPS}", f"train.val_every={half}", "train.val_samples=16"]
    recipe = load_recipe(recipe_name, [*settings, *warmup])
    run_dir = folder / ".warmup"
    try:
        train(recipe, run_dir, device, data_root=root, reporter=Reporter(quiet=True))
        records = read_log(RunDir(run_dir).log)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    rate = records[-1].get("samples_per_s") if records else None
    if not rate:
        raise SvqbenchError(f"the warm-up of {recipe_name} logged no training rate; pass --set train.max_steps=N")
    return float(rate)


def run_quickstart(
    device: torch.device,
    root: Path | None,
    folder: Path,
    console: Console,
    precision: str = "auto",
    overrides: tuple[str, ...] = (),
    minutes: float = DEFAULT_MINUTES,
) -> QuickstartResult:
    """Prep, train and evaluate each quick recipe into ``folder`` within ``minutes``; render the SVQ model.

    The SVQ model's steps are what fits the time left once the floors are done, at the rate a short warm-up
    measures (:func:`plan_steps`). ``overrides`` (``--set`` strings) apply to every recipe; one setting
    ``train.max_steps`` fixes the steps instead (as tests do).
    """
    started = time.perf_counter()
    if not minutes > 0:
        raise SvqbenchError(f"--minutes {minutes}: valid: a positive number of minutes (default {DEFAULT_MINUTES:g})")
    if folder.exists() and any(folder.iterdir()):
        raise SvqbenchError(f"{folder} is not empty; the quickstart writes into a new folder")
    precision = choose_precision(device, precision)
    result = QuickstartResult(folder, 0.0, precision, minutes=minutes)
    console.print(f"[bold]1/4[/] preparing {DATASET} (training in {precision} on {device}) ...")
    data.prepare(DATASET, root=root)
    with leaderboards_in(folder / "leaderboards"):
        evaluations = []
        for name in RECIPES:
            budget = ()
            if name == RECIPES[-1]:
                budget = _svq_budget(result, device, root, folder, overrides, started, max(evaluations))
                console.print(f"[bold]2/4[/] {result.choice}")
            settings = [f"train.precision={precision}", *speed_levers(device, precision), *budget, *overrides]
            recipe = load_recipe(f"{DATASET}/{name}", settings)
            run_dir = folder / "runs" / name
            console.print(f"[bold]2/4[/] training {recipe.name} -> {run_dir}")
            train(recipe, run_dir, device, data_root=root, reporter=Reporter())
            console.print(f"[bold]3/4[/] evaluating {recipe.name}")
            evaluated = time.perf_counter()
            result.reports[recipe.name] = evaluate(run_dir, device, METRICS, data_root=root)
            evaluations.append(time.perf_counter() - evaluated)
    gif = folder / GIF_NAME
    console.print(f"[bold]4/4[/] rendering {gif}")
    run = LoadedRun(folder / "runs" / RECIPES[-1], device)
    inputs, truth, pred = predict_sample(run, RENDER_INDEX, "test", root)
    write_gif(comparison_frames(inputs, truth, pred), gif)
    write_png(strip(inputs, truth, pred), gif.with_suffix(".png"))
    result.seconds = time.perf_counter() - started
    return result


def _svq_budget(
    result: QuickstartResult,
    device: torch.device,
    root: Path | None,
    folder: Path,
    overrides: tuple[str, ...],
    started: float,
    floor_evaluation: float,
) -> tuple[str, ...]:
    """SVQ's ``train.max_steps``/``train.epochs`` for the time left, and why (in ``result.choice``)."""
    name = f"{DATASET}/{RECIPES[-1]}"
    if any(o.startswith("train.max_steps=") for o in overrides):
        recipe = load_recipe(name, list(overrides))
        result.steps = recipe.train.max_steps
        result.choice = f"{result.steps} steps, as --set train.max_steps says"
        return ()
    levers = [f"train.precision={result.precision}", *speed_levers(device, result.precision)]
    rate = measure_rate(name, levers, device, root, folder)
    recipe = load_recipe(name, list(overrides))
    test_windows = len(data.create(DATASET, "test", root))
    # evaluation: the floors' (metrics on every window) plus the model's forward passes (about a third of a step)
    evaluation = floor_evaluation + test_windows / (3.0 * rate)
    left = result.minutes * 60 - (time.perf_counter() - started) - evaluation
    result.steps = plan_steps(left, rate, recipe.train.batch_size)
    fits = "fit" if result.steps > MIN_STEPS else "is the least that runs; it does not fit"
    result.choice = (
        f"{machine_kind(device, result.precision)}, {rate:.0f} samples/s: {result.steps} steps {fits} "
        f"{result.minutes:g} minutes"
    )
    windows = len(data.create(DATASET, "train", root))
    windows = min(windows, recipe.train.train_samples or windows)
    per_epoch = steps_per_epoch(windows, min(recipe.train.batch_size, windows))
    return (f"train.max_steps={result.steps}", f"train.epochs={-(-result.steps // per_epoch)}")


def results_table(result: QuickstartResult) -> Table:
    """Overall and first-predicted-frame metrics per recipe. No value is marked best: one seed each
    cannot tell close values apart (the study, `svqbench sweep`, can)."""
    minutes, seconds = divmod(round(result.seconds), 60)
    table = Table(
        title=f"{DATASET} test set (standard convention, {result.precision}; SVQ {result.steps} steps): {minutes} min "
        f"{seconds:02d} s in all (budget {result.minutes:g} min)"
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
