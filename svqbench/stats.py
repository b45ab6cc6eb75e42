"""Confidence intervals for comparing runs: a paired bootstrap over test windows, Welch across seeds.

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
    def distinguishable(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | str | bool]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "method": self.method,
                "distinguishable": self.distinguishable}


def paired_bootstrap(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval:
    """Percentile bootstrap of the mean of paired per-window differences, shape (N_windows,).

    Windows are resampled with replacement; ``seed`` makes the interval reproducible.
    """
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 1 or len(differences) == 0:
        raise ValueError(f"paired_bootstrap needs a non-empty 1-D array, got shape {differences.shape}")
    rng = np.random.default_rng(seed)
    n = len(differences)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        means[start:start + count] = differences[rng.integers(0, n, size=(count, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(differences.mean()), float(low), float(high), f"paired bootstrap over {n} windows")


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
