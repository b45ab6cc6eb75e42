"""Confidence intervals for comparing runs: a paired bootstrap over independent units of test windows, Welch
across seeds.

A difference is called distinguishable only when its 95% interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
_CHUNK = 256  # resamples drawn at a time, so memory stays (chunk x windows) whatever the test set size


@dataclass(frozen=True)
class Interval:
    """A mean difference and its two-sided interval."""

    mean: float
    low: float
    high: float
    method: str

    @property
    def comparable(self) -> bool:
        """False when the mean or a bound is NaN or infinite: no verdict can be drawn."""
        return all(math.isfinite(v) for v in (self.mean, self.low, self.high))

    @property
    def distinguishable(self) -> bool:
        return self.comparable and bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | str | bool]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "method": self.method,
            "distinguishable": self.distinguishable,
            "comparable": self.comparable,
        }


def paired_bootstrap(
    differences: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    units: np.ndarray | None = None,
    unit: str = "window",
) -> Interval:
    """Percentile bootstrap of the mean of paired per-window differences, shape (N_windows,).

    Whole independent units are resampled with replacement: ``units`` (N_windows,) gives each window's unit
    (a source video, a sequence, a block of consecutive windows), so windows that share frames are drawn
    together; None makes every window its own unit. The resampled means' spread is scaled by sqrt(k/(k-1))
    for k units (the bootstrap variance's small-sample bias). ``seed`` makes the interval reproducible. With a single
    unit no interval exists: low and high are NaN (not comparable).
    """
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 1 or len(differences) == 0:
        raise ValueError(f"paired_bootstrap needs a non-empty 1-D array, got shape {differences.shape}")
    n = len(differences)
    labels = np.arange(n) if units is None else np.asarray(units)
    if labels.shape != (n,):
        raise ValueError(f"units must have shape ({n},), got {labels.shape}")
    _, index = np.unique(labels, return_inverse=True)
    sums, counts = np.bincount(index, weights=differences), np.bincount(index).astype(np.float64)
    k = len(sums)
    method = f"paired bootstrap over {k} units ({unit}) of {n} windows"
    if k < 2:
        return Interval(float(differences.mean()), math.nan, math.nan, method + ": one unit, no interval")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        drawn = rng.integers(0, k, size=(count, k))
        means[start : start + count] = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    centre = differences.mean()
    means = centre + (means - centre) * math.sqrt(k / (k - 1))  # the bootstrap's (k-1)/k variance, corrected
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(differences.mean()), float(low), float(high), method)


def mean_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """Student t interval of the mean of independent values (e.g. one per seed); NaN bounds below 2 values."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if len(values) else math.nan
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, f"mean of {len(values)} value(s), no interval")
    half = float(t.ppf(0.5 + level / 2.0, len(values) - 1)) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, f"t interval across {len(values)} values")


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Interval | None:
    """Welch t interval of mean(a) - mean(b) for independent samples (e.g. one value per seed).

    None when either side has fewer than 2 values or both have zero variance (no interval exists).
    """
    from scipy.stats import t

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return None
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(t.ppf(0.5 + level / 2.0, dof)) * se
    diff = float(a.mean() - b.mean())
    return Interval(diff, diff - half, diff + half, f"Welch t across seeds ({len(a)} vs {len(b)} runs)")


def seed_spread_overrules(windows_low: float, seeds_low: float, seeds_high: float) -> bool:
    """The rule that a difference smaller than its seed-to-seed spread is not a win: True when the interval across
    seeds covers 0, or lies on the other side of 0 than the interval over windows (whose low end is
    ``windows_low``). ``compare`` and the leaderboards' bold both apply it, here only."""
    seeds_exclude_zero = seeds_low > 0 or seeds_high < 0
    return not seeds_exclude_zero or (seeds_low > 0) != (windows_low > 0)
