"""``svqbench quickstart``: the whole loop on the embedded ``digits`` dataset, in minutes on a CPU."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from svqbench import data
from svqbench.config import load_recipe
from svqbench.evaluate import evaluate
from svqbench.predict import predict_sample
from svqbench.progress import Reporter
from svqbench.render import comparison_frames, write_gif
from svqbench.runs import LoadedRun
from svqbench.train import train

RECIPES = ("digits/persistence", "digits/simvp_quick", "digits/simvp_svq_quick")


def run_quickstart(device: torch.device, root: Path | None, runs: Path, gif: Path, console: Console) -> Table:
    """Prep, train, evaluate each quick recipe; render the SVQ model; return the results table."""
    started = time.perf_counter()
    console.print("[bold]1/4[/] preparing digits ...")
    data.prepare("digits", root=root)
    reports = []
    for name in RECIPES:
        recipe = load_recipe(name)
        run_dir = runs / name.replace("/", "-")
        console.print(f"[bold]2/4[/] training {name} -> {run_dir}")
        train(recipe, run_dir, device, data_root=root, reporter=Reporter())
        console.print(f"[bold]3/4[/] evaluating {name}")
        reports.append(evaluate(run_dir, device, data_root=root))
    console.print(f"[bold]4/4[/] rendering {gif}")
    run = LoadedRun(runs / RECIPES[-1].replace("/", "-"), device)
    write_gif(comparison_frames(*predict_sample(run, 0, "test", root)), gif)

    table = Table(title=f"digits test set ({reports[0]['convention']}), {time.perf_counter() - started:.0f} s in all")
    metric_names = list(reports[0]["overall"])
    for column in ["recipe", "params", *metric_names]:
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for report in reports:
        table.add_row(report["recipe"], f"{report['parameters']:,}", *(f"{report['overall'][m]:.5g}" for m in metric_names))
    return table
