"""Where do 2 processes and 1 differ? The first training step's gradients at 1 thread, 2 threads and 2 processes
(torchrun, gloo), each against a float64 computation of the same step (same init, batch and keyed draws), per
part of the model: README's table ("At a larger setting the thread-count floor is no floor").

    PYTHONPATH=. python scripts/world_size_accuracy.py --root data [--recipe R] [--batch 16] [--set KEY=VALUE]
    PYTHONPATH=. python scripts/world_size_accuracy.py --root data --train-steps 20

``--train-steps N`` instead trains the recipe N steps three times (1 thread, 2 threads, torchrun with 2 processes
of 1 thread) and prints the final weights' relative differences: README's first table there.

Holding torch and oneDNN to AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`) shows an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from svqbench.bench.step_gradients import relative_difference, step_gradients
from svqbench.config import load_recipe
from svqbench.engine.runs import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

TORCHRUN = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
ISSUE_SETTING = ["model.translator=gsta", "model.drop_path=0.1", "train.seed=5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data"))
    parser.add_argument("--recipe", default="recipes/digits/simvp_svq_quick.yaml")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--set", action="append", default=None, help="recipe overrides (default: the issue's)")
    parser.add_argument("--train-steps", type=int, default=0, help="compare final weights after N training steps")
    args = parser.parse_args()
    if args.train_steps:
        return compare_trained(args)
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(load_recipe(args.recipe, args.set or ISSUE_SETTING).to_dict()))
        out = Path(folder) / "two_processes.pt"
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
            + ["svqbench.bench.step_gradients", str(recipe), str(args.root), str(args.batch), str(out)],
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
            check=True,
        )
        runs = {"2 processes": torch.load(out)}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs[f"1 process, {threads} thread{'s' * (threads > 1)}"] = step_gradients(
                str(recipe), args.root, args.batch
            )
        torch.set_num_threads(1)
        exact = step_gradients(str(recipe), args.root, args.batch, dtype=torch.float64)
    one, two, threads2 = runs["1 process, 1 thread"], runs["2 processes"], runs["1 process, 2 threads"]
    parts = {name.split(".")[0]: [] for name in exact}
    for name in exact:
        parts[name.split(".")[0]].append(name)
    parts["all"] = list(exact)
    print("| part | 1 process, 1 thread | 1 process, 2 threads | 2 processes | 1 vs 2 threads | 2 processes vs 1 |")
    print("|---|---|---|---|---|---|")
    for part, keys in parts.items():

        def rel(a, b, keys=keys):
            return relative_difference({k: a[k] for k in keys}, {k: b[k] for k in keys})

        cells = [rel(one, exact), rel(threads2, exact), rel(two, exact), rel(threads2, one), rel(two, one)]
        print(f"| {part} | " + " | ".join(f"{c:.1e}" for c in cells) + " |")


def compare_trained(args: argparse.Namespace) -> None:
    """Train 1 thread, 2 threads and 2 processes; print the final weights' relative differences."""
    overrides = [*(args.set or ISSUE_SETTING), f"train.max_steps={args.train_steps}"]
    sets = [part for o in overrides for part in ("--set", o)]
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for label, threads, launcher in (("1 thread", 1, []), ("2 threads", 2, []), ("2 processes", 1, TORCHRUN)):
            runs[label] = Path(folder) / label.replace(" ", "-")
            command = [*launcher, "svqbench", "train", args.recipe, *sets, "--run-dir", str(runs[label])]
            subprocess.run(
                [sys.executable, "-m", *command, "--root", str(args.root), "--device", "cpu", "--quiet"],
                env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)},
                check=True,
                stdout=subprocess.DEVNULL,
            )
        weights = {label: load_checkpoint(run / "last.pt")["model"] for label, run in runs.items()}
    one = {k: v.double() for k, v in weights["1 thread"].items() if v.is_floating_point()}
    floor = relative_difference({k: weights["2 threads"][k].double() for k in one}, one)
    gap = relative_difference({k: weights["2 processes"][k].double() for k in one}, one)
    steps = args.train_steps
    print(f"after {steps} steps: 1 vs 2 threads {floor:.2e}, 2 processes vs 1 {gap:.2e}, ratio {gap / floor:.1f}")


if __name__ == "__main__":
    main()
