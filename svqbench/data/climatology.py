"""Climatologies for the anomaly correlation coefficient (ACC), computed from the training years only.

WeatherBench 2's definition (Rasp et al. 2024, "climatology"): for each day of year and hour of day, the mean over
every training time step whose day of year lies within a window of 61 days centred on it (wrapping around the year)
and whose hour is that hour: the data of several years and of neighbouring days pooled, which smooths the seasonal
cycle. Daily data have one hour (one value per day of year). Monthly data (steps of 28 days or more) get one value
per calendar month instead, the mean of the training years' same month. Data without timestamps get no
climatology (and no ACC). Stored with the prepared data (``climatology.npy``, physical units, float32, shape
(366, hours, C, H, W), or (12, 1, C, H, W) per month; the kind and hours in the manifest), so ``eval`` needs no
training data; each split keeps the timestamp of every frame (``times.npy``, hours since 1970-01-01T00 UTC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from svqbench.errors import SvqbenchError

DAYS = 366
WINDOW_DAYS = 61  # WeatherBench 2's window: 30 days either side
CLIMATOLOGY_FILE = "climatology.npy"
TIMES_FILE = "times.npy"
EPOCH = np.datetime64("1970-01-01T00", "h")


def day_and_hour(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """datetime64 times (N,) -> (day of year 0..365, hour 0..23), as pandas' ``dayofyear - 1`` and ``hour``."""
    times = np.asarray(times, dtype="datetime64[h]")
    days = times.astype("datetime64[D]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)
    hour = (times - days).astype(np.int64)
    return day_of_year, hour


def hours_of(times: np.ndarray) -> tuple[int, ...]:
    """The hours of day that occur in ``times`` (0, 6, 12, 18 for 6-hourly data)."""
    return tuple(int(h) for h in np.unique(day_and_hour(times)[1]))


def monthly(times: np.ndarray) -> bool:
    """Whether ``times`` step by a month or more (then the climatology is per calendar month)."""
    steps = np.diff(np.asarray(times, dtype="datetime64[h]")).astype(np.int64)
    return len(steps) > 0 and float(np.median(steps)) >= 28 * 24


def month_of(times: np.ndarray) -> np.ndarray:
    months = np.asarray(times, dtype="datetime64[M]")
    return (months - months.astype("datetime64[Y]")).astype(np.int64)


def compute(frames: np.ndarray, times: np.ndarray, block: int = 2048) -> tuple[np.ndarray, tuple[int, ...]]:
    """The climatology of training ``frames`` (T, C, H, W) in physical units at ``times`` (T,): (366, hours, C, H, W)
    float32 and the hours (or, for monthly data, (12, 1, C, H, W) and no hours). Sums are pooled in float64 over
    blocks of time steps, then over the 61-day window."""
    if monthly(times):
        month = month_of(times)
        sums = np.zeros((12, 1, *frames.shape[1:]), np.float64)
        counts = np.zeros((12, 1) + (1,) * (frames.ndim - 1), np.int64)
        for m in range(12):
            chosen = np.flatnonzero(month == m)
            if len(chosen):
                sums[m, 0] = np.asarray(frames[chosen], np.float64).sum(axis=0)
                counts[m, 0] = len(chosen)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / counts).astype(np.float32), ()
    days, hour = day_and_hour(times)
    hours = hours_of(times)
    slot = np.searchsorted(np.asarray(hours), hour)
    sums = np.zeros((DAYS, len(hours), *frames.shape[1:]), np.float64)
    counts = np.zeros((DAYS, len(hours)), np.int64)
    for first in range(0, len(frames), block):
        values = np.asarray(frames[first : first + block], np.float64)
        keys = days[first : first + block] * len(hours) + slot[first : first + block]
        for key in np.unique(keys):
            chosen = keys == key
            sums[key // len(hours), key % len(hours)] += values[chosen].sum(axis=0)
            counts[key // len(hours), key % len(hours)] += int(chosen.sum())
    half = WINDOW_DAYS // 2
    # circular window over days: pad both ends with the other end's days, then cumulative sums
    padded_sums = np.concatenate([sums[-half:], sums, sums[:half]])
    padded_counts = np.concatenate([counts[-half:], counts, counts[:half]])
    window_sums = _moving_sum(padded_sums, WINDOW_DAYS)
    window_counts = _moving_sum(padded_counts, WINDOW_DAYS)
    shape = (DAYS, len(hours)) + (1,) * (frames.ndim - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        climatology = window_sums / window_counts.reshape(shape)
    if not np.isfinite(climatology).any():
        raise SvqbenchError("no training time step to compute a climatology from")
    return climatology.astype(np.float32), hours


def _moving_sum(values: np.ndarray, width: int) -> np.ndarray:
    """Sums of ``width`` consecutive entries along axis 0 (N + width - 1 entries in, N out), in float64."""
    cumulative = np.cumsum(values, axis=0, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), cumulative])
    return cumulative[width:] - cumulative[:-width]


def write(target: Path, climatology: np.ndarray, hours: tuple[int, ...]) -> dict[str, Any]:
    """Store it in a prepared folder; returns the manifest's record."""
    np.save(target / CLIMATOLOGY_FILE, climatology)
    if not hours:
        return {"climatology": {"file": CLIMATOLOGY_FILE, "kind": "month"}}
    record = {"file": CLIMATOLOGY_FILE, "kind": "day_hour", "hours": list(hours), "window_days": WINDOW_DAYS}
    return {"climatology": record}


def write_times(split_dir: Path, times: np.ndarray) -> None:
    np.save(split_dir / TIMES_FILE, (np.asarray(times, dtype="datetime64[h]") - EPOCH).astype(np.int64))


class ClimatologyLookup:
    """The climatology of each target frame of a split's windows. ``for_windows(indices, frames)``: window indices
    (B,) -> (B, frames, C, H, W) float32 in physical units, the targets' day of year and hour."""

    def __init__(self, folder: Path, split: str, manifest: dict[str, Any], frames_in: int, channels: list[int]):
        record = manifest.get("climatology")
        times_path = folder / split / TIMES_FILE
        if not record or not times_path.is_file():
            raise SvqbenchError(
                f"{folder}: no climatology recorded (needed by acc): prepared without timestamps or by an older "
                f"svqbench; re-run its prep with --force, or leave acc out"
            )
        self.climatology = np.load(folder / record["file"], mmap_mode="r")
        self.by_month = record.get("kind") == "month"
        self.hours = np.asarray(record.get("hours", [0]))
        self.times = EPOCH + np.load(times_path).astype("timedelta64[h]")
        self.starts = np.load(folder / split / "starts.npy")
        self.frames_in = frames_in
        self.channels = channels  # the target channels

    def for_windows(self, indices: np.ndarray, frames: int) -> torch.Tensor:
        at = self.starts[np.asarray(indices)][:, None] + self.frames_in + np.arange(frames)[None, :]
        if self.by_month:
            values = np.asarray(self.climatology[month_of(self.times[at.ravel()]), 0][:, self.channels], np.float32)
            return torch.from_numpy(values.reshape(*at.shape, *values.shape[1:]))
        days, hour = day_and_hour(self.times[at.ravel()])
        slots = np.searchsorted(self.hours, hour)
        if not np.array_equal(self.hours[np.minimum(slots, len(self.hours) - 1)], hour):
            raise SvqbenchError("a target frame falls at an hour of day the training years never had: no climatology")
        values = np.asarray(self.climatology[days, slots][:, self.channels], np.float32)
        return torch.from_numpy(values.reshape(*at.shape, *values.shape[1:]))
