"""The paired comparisons behind README's answers on the noise and budget studies.

For every perturbation ratio of ``recipes/studies/digits_small_noise.yaml`` and both budgets of
``recipes/studies/digits_small_budget.yaml`` (500 and 2,000 steps), compares SimVP+SVQ with SimVP and with the
bottleneck MLP SVQ folds into, and each model's 2,000-step runs with its 500-step ones, seeds 1-3 as groups:
the same numbers as

    svqbench compare --a RUNS/simvp_svq-p0.3-seed1 --a ...seed2 --a ...seed3 --b RUNS/simvp-p0.3-seed1 ...

Prints a Markdown table (A - B, the 95% interval over test sequences, the Welch interval across seeds and the
verdict). Run after both sweeps:

    python scripts/svq_answers.py --noise runs/studies/digits_small_noise --budget runs/studies/digits_small_budget
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from svqbench.errors import SvqbenchError
from svqbench.results.compare import compare_groups

SEEDS = (1, 2, 3)
RATIOS = ("0.0", "0.1", "0.3", "0.5")
PAIRS = (("simvp_svq", "simvp"), ("simvp_svq", "simvp_mlp"))


def runs(folder: Path, label: str) -> list[Path]:
    return [folder / f"{label}-seed{seed}" for seed in SEEDS]


def rows(title: str, a: list[Path], b: list[Path], metrics: tuple[str, ...]) -> list[str]:
    result = compare_groups(a, b, metrics)
    lines = []
    for metric, entry in result["metrics"].items():
        d, s = entry["difference"], entry["seeds"]
        seeds = f"[{s['low']:+.4g}, {s['high']:+.4g}]" if s else "-"
        lines.append(
            f"| {title} | {metric} | {entry['a']:.5g} | {entry['b']:.5g} | {d['mean']:+.4g} | "
            f"[{d['low']:+.4g}, {d['high']:+.4g}] | {seeds} | {entry['verdict']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=Path, required=True, help="the noise study's run folder")
    parser.add_argument("--budget", type=Path, help="the budget study's run folder")
    parser.add_argument("--metrics", default="mse,ssim")
    args = parser.parse_args()
    metrics = tuple(args.metrics.split(","))
    comparisons = [
        (f"{a} vs {b}, perturb {ratio}", runs(args.noise, f"{a}-p{ratio}"), runs(args.noise, f"{b}-p{ratio}"))
        for ratio in RATIOS
        for a, b in PAIRS
    ]
    if args.budget:
        comparisons += [
            (f"{a} vs {b}, {steps} steps", runs(args.budget, f"{a}{suffix}"), runs(args.budget, f"{b}{suffix}"))
            for steps, suffix in (("2,000", ""), ("500", "-500"))
            for a, b in PAIRS
        ]
        comparisons += [
            (f"{label}: 2,000 vs 500 steps", runs(args.budget, label), runs(args.budget, f"{label}-500"))
            for label in ("simvp", "simvp_svq", "simvp_mlp")
        ]
    lines = [line for title, a, b in comparisons for line in rows(title, a, b, metrics)]  # every run found first
    print("| A vs B | metric | A | B | A - B | 95% over sequences | 95% across seeds | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except SvqbenchError as error:  # a user mistake (a missing run, a bad --set): one line, no traceback
        sys.exit(f"error: {error}")
