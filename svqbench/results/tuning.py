"""The tuning section of a tuned study's leaderboard: the effort each model got, default against tuned settings,
and the models against each other after equal tuning, each difference with its interval.

Rows come from the study's table (one per run, ``run`` = ``LABEL-seedK`` for a default recipe and
``LABEL_tuned-seedK`` for its best recipe); the effort from ``BEST/tuning.json``, which ``svqbench tune`` writes.
Differences use :func:`svqbench.results.compare.compare_groups` (paired bootstrap over test windows, and Welch
across seeds, the seed spread overruling) when every run's per-window file is reachable, else Welch alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from svqbench.errors import SvqbenchError
from svqbench.results.directions import HIGHER_IS_BETTER
from svqbench.results.stats import Interval, welch_interval

TUNED_SUFFIX = "_tuned"
EFFORT_FILE = "tuning.json"


def read_effort(path: Path) -> dict[str, Any] | None:
    """``BEST/tuning.json``: ``{"spec": {...}, "effort": [per recipe: trials, complete, pruned, ...]}``, or None."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise SvqbenchError(f"{path}: not JSON; run `svqbench tune` on the study again to rewrite it") from None


def label_of(run: str) -> str:
    return str(run).rsplit("-seed", 1)[0]


def groups(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows per run label (``simvp``, ``simvp_tuned``, ...)."""
    return {label: rows for label, rows in table.groupby(table["run"].map(label_of), sort=False)}


def difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, split: str, convention: str) -> tuple[Interval, str]:
    """A - B on ``metric``: paired over test windows when both groups' per-window files are reachable, else
    Welch across seeds; with the verdict compare prints."""
    from svqbench.results.compare import compare_groups, has_per_window, verdict

    runs_a, runs_b = list(a["path"].astype(str)), list(b["path"].astype(str))
    if all(has_per_window(r, split, convention) for r in runs_a + runs_b):
        result = compare_groups(runs_a, runs_b, [metric], split=split, convention=convention)["metrics"][metric]
        diff = result["difference"]
        method = diff["method"] + (f"; {result['seeds']['method']}" if result["seeds"] else "")
        return Interval(diff["mean"], diff["low"], diff["high"], method), result["verdict"]
    seeds = welch_interval(a[metric].to_numpy(np.float64), b[metric].to_numpy(np.float64))
    if seeds is None:
        mean = float(a[metric].mean() - b[metric].mean())
        return Interval(mean, float("nan"), float("nan"), "no interval (fewer than 2 seeds a side)"), "no interval"
    return seeds, verdict(metric, seeds.low, seeds.high)


def _cell(interval: Interval, verdict: str) -> str:
    if not interval.comparable:
        return f"{interval.mean:+.4g} ({verdict})"
    return f"{interval.mean:+.4g} [{interval.low:+.4g}, {interval.high:+.4g}] {verdict}"


def _mean_std(rows: pd.DataFrame, metric: str) -> str:
    values = rows[metric].to_numpy(np.float64)
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4g} ± {spread:.2g} (n={len(values)})"


def markdown(
    table: pd.DataFrame,
    tuning: dict[str, Any] | None,
    metrics: list[str],
    reference: str | None,
    split: str,
    convention: str,
) -> str:
    """The section, in Markdown: effort, default vs tuned per model, tuned models against the reference."""
    lines = ["", "## Tuning", ""]
    if tuning is not None:
        spec = tuning.get("spec", {})
        lines += [
            f"Each model: {spec.get('trials')} trials of {spec.get('steps')} steps, objective validation "
            f"{spec.get('objective')}, pruner {spec.get('pruner')}, sampler {spec.get('sampler')} (seed "
            f"{spec.get('seed')}); the test split was not read while tuning. Best recipes retrained at the study's "
            "budget over its seeds.",
            "",
            "| model | trials | complete | pruned | failed | retried | steps trained | best trial | best value "
            "| best parameters |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in tuning.get("effort", []):
            params = ", ".join(f"{k}={_short(v)}" for k, v in row.get("best_params", {}).items())
            best = row.get("best_value")
            lines.append(
                f"| {row['label']} | {row['trials']} | {row['complete']} | {row['pruned']} | {row['failed']} "
                f"| {row['retried']} | {row['steps']} | {row.get('best_trial')} "
                f"| {'' if best is None else f'{best:.5g}'} | {params} |"
            )
        lines.append("")
    by_label = groups(table)
    pairs = [(label, f"{label}{TUNED_SUFFIX}") for label in by_label if f"{label}{TUNED_SUFFIX}" in by_label]
    if not pairs:
        return "\n".join(lines + ["No tuned recipe has been evaluated yet.", ""])
    lines += [
        "### Default against tuned settings",
        "",
        "Tuned minus default, 95% interval; "
        + ", ".join(f"{m} {'higher' if m in HIGHER_IS_BETTER else 'lower'} is better" for m in metrics)
        + ".",
        "",
        "| model | " + " | ".join(f"{m} default | {m} tuned | {m} tuned - default" for m in metrics) + " |",
        "|---|" + "---|---|---|" * len(metrics),
    ]
    for default, tuned in pairs:
        cells = []
        for metric in metrics:
            interval, verdict = difference(by_label[tuned], by_label[default], metric, split, convention)
            cells += [
                _mean_std(by_label[default], metric),
                _mean_std(by_label[tuned], metric),
                _cell(interval, verdict),
            ]
        lines.append(f"| {default} | " + " | ".join(cells) + " |")
    reference = reference if reference in dict(pairs) else pairs[0][0]
    others = [d for d, _ in pairs if d != reference]
    if others:
        lines += [
            "",
            f"### {reference} against the others, all tuned equally",
            "",
            f"{reference} (tuned) minus each other tuned model, 95% interval.",
            "",
            "| against | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for other in others:
            cells = [
                _cell(
                    *difference(
                        by_label[f"{reference}{TUNED_SUFFIX}"], by_label[f"{other}{TUNED_SUFFIX}"], m, split, convention
                    )
                )
                for m in metrics
            ]
            lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
