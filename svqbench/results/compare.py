"""Paired comparison of two runs (or two groups of runs) over the same test windows.

Each run's per-window file (``RUN/eval/SPLIT-CONVENTION.npz``, written by ``svqbench eval``; see
:mod:`svqbench.results.per_window`) holds one value per window and metric, and each window's independent unit (a
source video, a sequence, a block of consecutive windows). A group's value for a window is the mean over its
runs (e.g. its seeds); the difference A - B is taken window by window and its mean gets a seeded bootstrap
95% interval that resamples whole units (:func:`svqbench.results.stats.paired_bootstrap`), so windows sharing frames
do not count as independent evidence. That interval covers the sampling of test data only. When both groups
hold several runs (seeds), the runs' overall values also get a Welch interval across seeds
(:func:`svqbench.results.stats.welch_interval`), and a difference counts as distinguishable only when both intervals
exclude 0: a gap smaller than the seed-to-seed spread is not a win. Values that are not finite are refused; an
interval that is not finite is "not comparable", never a win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from svqbench.errors import SvqbenchError
from svqbench.results import per_window
from svqbench.results.directions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from svqbench.results.stats import RESAMPLES, Interval, paired_bootstrap, seed_spread_overrules, welch_interval

_MATCHING = ("dataset", "split", "convention")


def has_per_window(run_dir: str | Path, split: str = "test", convention: str | None = None) -> bool:
    return bool(per_window.available(run_dir, split, convention))


def _group_windows(
    runs: Sequence[Path], label: str, split: str, convention: str | None
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray], per_window.PerWindow]:
    """Per-window values averaged over the runs of one group, the evaluation settings they share, each run's
    overall value per metric (mean over windows, shape (N_runs,)), and the first run's evaluation (its units)."""
    if not runs:
        raise SvqbenchError(f"group {label} is empty: name at least one run")
    loaded = [per_window.read(run, split, convention) for run in runs]
    first = loaded[0]
    for evaluation, run in zip(loaded, runs):
        for key in _MATCHING:
            if evaluation.report.get(key) != first.report.get(key):
                raise SvqbenchError(
                    f"{run} was evaluated with {key}={evaluation.report.get(key)!r}, {runs[0]} with "
                    f"{first.report.get(key)!r}: compare runs evaluated the same way"
                )
        _check_same_units(first, evaluation)
    names = set.intersection(*(set(e.values) for e in loaded))
    means, per_run = {}, {}
    for name in names:
        stacked = [e.values[name] for e in loaded]
        if len({len(v) for v in stacked}) != 1:
            raise SvqbenchError(f"group {label}: runs have different numbers of test windows for {name}")
        means[name] = np.mean(stacked, axis=0)
        per_run[name] = np.array([v.mean() for v in stacked])
    return means, first.report, per_run, first


def _check_same_units(a: per_window.PerWindow, b: per_window.PerWindow) -> None:
    if len(a.units) == len(b.units) and not np.array_equal(a.units, b.units):
        raise SvqbenchError(
            f"{a.path} and {b.path} group the test windows into different units; "
            "evaluate both on the same prepared data"
        )


def verdict(metric: str, low: float, high: float) -> str:
    """'A better', 'B better', 'not distinguishable' or 'not comparable (...)' from the interval of A - B."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not comparable (no finite interval)"
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
    split: str = "test",
    convention: str | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of A - B per metric over the shared windows of ``split`` (resampling whole units).

    Returns ``{"a", "b", "dataset", "split", "convention", "windows", "unit", "units", "metrics": {name: {"a",
    "b", "difference": {mean, low, high, method, distinguishable, comparable}, "seeds", "verdict"}}}``.
    """
    if resamples < 1:
        raise SvqbenchError(f"--resamples {resamples}: valid: an integer >= 1 (10000 is the default)")
    runs_a, runs_b = [Path(r) for r in group_a], [Path(r) for r in group_b]
    values_a, info_a, runs_values_a, first_a = _group_windows(runs_a, "A", split, convention)
    values_b, info_b, runs_values_b, first_b = _group_windows(runs_b, "B", split, convention)
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
        raise SvqbenchError(f"metric {missing[0]!r} is not in every run's per-window file; shared: {', '.join(shared)}")
    result: dict[str, Any] = {
        "a": [str(r) for r in runs_a],
        "b": [str(r) for r in runs_b],
        **{key: info_a.get(key) for key in _MATCHING},
        "windows": None,
        "unit": first_a.unit,
        "units": first_a.unit_count,
        "metrics": {},
    }
    for name in chosen:
        a, b = values_a[name], values_b[name]
        if len(a) != len(b):
            raise SvqbenchError(f"A has {len(a)} test windows, B {len(b)}: evaluate both on the same split")
        _check_same_units(first_a, first_b)
        interval = paired_bootstrap(a - b, resamples, seed, units=first_a.units, unit=first_a.unit)
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
    if seeds is None or not by_windows.endswith("better") and not by_windows.endswith("larger"):
        return by_windows
    if seed_spread_overrules(windows.low, seeds.low, seeds.high):
        return "not distinguishable (seed spread)"
    return by_windows
