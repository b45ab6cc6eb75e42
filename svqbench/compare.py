"""Paired comparison of two runs (or two groups of runs) over the same test windows.

Each run's ``RUN/per_window.npz`` (written by ``svqbench eval``) holds one value per test window and
metric. A group's value for a window is the mean over its runs (e.g. its seeds); the difference A - B
is taken window by window and its mean gets a seeded bootstrap 95% interval
(:func:`svqbench.stats.paired_bootstrap`). That interval covers the sampling of test windows only.
When both groups hold several runs (seeds), the runs' overall values also get a Welch interval across
seeds (:func:`svqbench.stats.welch_interval`), and a difference counts as distinguishable only when
both intervals exclude 0: a gap smaller than the seed-to-seed spread is not a win.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from svqbench.errors import SvqbenchError
from svqbench.leaderboard import HIGHER_IS_BETTER, LOWER_IS_BETTER
from svqbench.stats import RESAMPLES, Interval, paired_bootstrap, welch_interval

PER_WINDOW = "per_window.npz"
_MATCHING = ("dataset", "split", "convention")


def has_per_window(run_dir: str | Path) -> bool:
    return (Path(run_dir) / PER_WINDOW).is_file() and (Path(run_dir) / "metrics.json").is_file()


def load_per_window(run_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """({metric: (N_windows,) float64}, the run's metrics.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SvqbenchError(f"run directory {run_dir} does not exist, so it has no per_window.npz to compare")
    if not has_per_window(run_dir):
        raise SvqbenchError(f"{run_dir}: no {PER_WINDOW}; evaluate it first with `svqbench eval {run_dir}`")
    report = json.loads((run_dir / "metrics.json").read_text())
    with np.load(run_dir / PER_WINDOW) as arrays:
        return {name: arrays[name].astype(np.float64) for name in arrays.files}, report


def _group_windows(runs: Sequence[Path], label: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """Per-window values averaged over the runs of one group, the evaluation settings they share, and
    each run's overall value per metric (mean over windows, shape (N_runs,))."""
    if not runs:
        raise SvqbenchError(f"group {label} is empty: name at least one run")
    loaded = [load_per_window(run) for run in runs]
    first = loaded[0][1]
    for (_, report), run in zip(loaded, runs):
        for key in _MATCHING:
            if report.get(key) != first.get(key):
                raise SvqbenchError(
                    f"{run} was evaluated with {key}={report.get(key)!r}, {runs[0]} with {first.get(key)!r}: "
                    "compare runs evaluated the same way"
                )
    names = set.intersection(*(set(values) for values, _ in loaded))
    means, per_run = {}, {}
    for name in names:
        stacked = [values[name] for values, _ in loaded]
        if len({len(v) for v in stacked}) != 1:
            raise SvqbenchError(f"group {label}: runs have different numbers of test windows for {name}")
        means[name] = np.mean(stacked, axis=0)
        per_run[name] = np.array([v.mean() for v in stacked])
    return means, first, per_run


def verdict(metric: str, low: float, high: float) -> str:
    """'A better', 'B better' or 'not distinguishable' from the interval of A - B."""
    if low <= 0 <= high:
        return "not distinguishable"
    a_larger = low > 0
    if metric in HIGHER_IS_BETTER:
        return "A better" if a_larger else "B better"
    if metric in LOWER_IS_BETTER:
        return "B better" if a_larger else "A better"
    return "A larger" if a_larger else "B larger"


def compare_groups(
    group_a: Sequence[str | Path],
    group_b: Sequence[str | Path],
    metrics: Sequence[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap of A - B per metric over the shared test windows.

    Returns ``{"a", "b", "dataset", "split", "convention", "windows", "metrics": {name: {"a", "b",
    "difference": {mean, low, high, method, distinguishable}, "verdict"}}}``.
    """
    if resamples < 1:
        raise SvqbenchError(f"--resamples {resamples}: valid: an integer >= 1 (10000 is the default)")
    runs_a, runs_b = [Path(r) for r in group_a], [Path(r) for r in group_b]
    values_a, info_a, runs_values_a = _group_windows(runs_a, "A")
    values_b, info_b, runs_values_b = _group_windows(runs_b, "B")
    for key in _MATCHING:
        if info_a.get(key) != info_b.get(key):
            raise SvqbenchError(
                f"A was evaluated with {key}={info_a.get(key)!r}, B with {info_b.get(key)!r}: "
                "a paired comparison needs the same test windows and convention"
            )
    shared = [m for m in values_a if m in values_b]
    chosen = list(metrics) if metrics else sorted(shared, key=lambda m: (m not in ("mse", "mae"), m))
    missing = [m for m in chosen if m not in shared]
    if missing:
        raise SvqbenchError(f"metric {missing[0]!r} is not in every run's {PER_WINDOW}; shared: {', '.join(shared)}")
    result: dict[str, Any] = {
        "a": [str(r) for r in runs_a],
        "b": [str(r) for r in runs_b],
        **{key: info_a.get(key) for key in _MATCHING},
        "windows": None,
        "metrics": {},
    }
    for name in chosen:
        a, b = values_a[name], values_b[name]
        if len(a) != len(b):
            raise SvqbenchError(f"A has {len(a)} test windows, B {len(b)}: evaluate both on the same split")
        interval = paired_bootstrap(a - b, resamples, seed)
        seeds = welch_interval(runs_values_a[name], runs_values_b[name])
        result["windows"] = len(a)
        result["metrics"][name] = {
            "a": float(a.mean()),
            "b": float(b.mean()),
            "difference": interval.to_dict(),
            "seeds": seeds.to_dict() if seeds is not None else None,
            "verdict": combined_verdict(name, interval, seeds),
        }
    return result


def combined_verdict(metric: str, windows: Interval, seeds: Interval | None) -> str:
    """The window-bootstrap verdict, unless the interval across seeds covers 0 (or disagrees in sign)."""
    by_windows = verdict(metric, windows.low, windows.high)
    if seeds is None or by_windows == "not distinguishable":
        return by_windows
    if verdict(metric, seeds.low, seeds.high) != by_windows:
        return "not distinguishable (seed spread)"
    return by_windows
