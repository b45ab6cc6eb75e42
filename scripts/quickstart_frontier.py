"""The quickstart's frontier: wall time against SSIM at the last predicted frame, per training budget.

Trains ``digits_small/simvp_svq`` (or ``--recipe``) with each ``--steps`` budget and any shared ``--set``
overrides, evaluates it on the whole test split and prints one line per budget: training seconds, SSIM at
+1 and at the last frame (standard convention). Run it on an otherwise idle machine; the times are this
machine's.

    python scripts/quickstart_frontier.py --steps 500,1000,1500 --set train.precision=bf16 --device cpu
    python scripts/quickstart_frontier.py --minutes 1,2,3 --set train.precision=fp32 --set train.channels_last=true

``--minutes`` budgets training time as the quickstart does: the warm-up's measured samples/s (16 real steps in
the ``--set`` precision) turns each budget into the steps that fit it (the quickstart's own ``plan_steps``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.machine import resolve_device
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.flows.quickstart import measure_rate, plan_steps
from svqbench.progress import Reporter


def budgets(args: argparse.Namespace, device, work: Path) -> list[int]:
    """The step budgets: ``--steps`` as given, or the steps that fit each of ``--minutes`` at the measured rate."""
    if args.minutes is None:
        return [int(s) for s in args.steps.split(",")]
    recipe = load_recipe(args.recipe, args.set)
    rate = measure_rate(args.recipe, args.set, device, args.root, work)
    steps = [plan_steps(float(m) * 60, rate, recipe.train.batch_size) for m in args.minutes.split(",")]
    print(f"{rate:.1f} samples/s in {recipe.train.precision}: {args.minutes} min -> {steps} steps", flush=True)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits_small/simvp_svq")
    parser.add_argument("--steps", default="500,1000", help="comma list of training budgets (optimiser steps)")
    parser.add_argument("--minutes", default=None, help="comma list of training minutes (instead of --steps)")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides shared by every budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SVQBENCH_DATA or ./data)")
    parser.add_argument("--out", type=Path, default=None, help="also write the lines as JSON here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data.prepare("digits_small", root=args.root)
    lines = []
    with tempfile.TemporaryDirectory() as work:
        for steps in budgets(args, device, Path(work)):
            base = load_recipe(args.recipe, args.set)
            windows = base.train.train_samples or len(data.create(base.dataset, "train", args.root))
            per_epoch = max(1, windows // base.train.batch_size)
            recipe = load_recipe(
                args.recipe, [*args.set, f"train.max_steps={steps}", f"train.epochs={-(-steps // per_epoch)}"]
            )
            run_dir = Path(work) / f"steps{steps}"
            started = time.perf_counter()
            train(recipe, run_dir, device, data_root=args.root, reporter=Reporter(quiet=True))
            trained = time.perf_counter() - started
            report = evaluate(run_dir, device, ("ssim", "mse"), data_root=args.root, update_leaderboard=False)
            ssim = report["per_frame"]["ssim"]
            line = {
                "recipe": recipe.name,
                "steps": steps,
                "overrides": args.set,
                "train_seconds": round(trained, 1),
                "eval_seconds": report["seconds"],
                "ssim": report["overall"]["ssim"],
                "ssim_first": ssim[0],
                "ssim_last": ssim[-1],
                "mse": report["overall"]["mse"],
            }
            lines.append(line)
            print(
                f"{steps:>6} steps: train {trained:6.1f} s, eval {report['seconds']:5.1f} s; SSIM {line['ssim']:.3f}, "
                f"+1 {ssim[0]:.3f}, +{len(ssim)} {ssim[-1]:.3f}; MSE {line['mse']:.4f}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(lines, indent=1))


if __name__ == "__main__":
    try:
        main()
    except SvqbenchError as error:  # a user mistake (a missing run, a bad --set): one line, no traceback
        sys.exit(f"error: {error}")
