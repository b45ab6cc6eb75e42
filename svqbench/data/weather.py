"""WeatherBench 5.625 deg (32x64 grid): ``weather_t2m``, ``weather_r``, ``weather_tcc``, ``weather_uv10``
(WeatherBench-S, 12->12 hourly) and ``weather_mv`` (WeatherBench-M, 4->4 every 6 hours).

Sources: one zip of yearly netCDF files per variable (``<variable>_5.625deg.zip`` holding
``<variable>_<year>_5.625deg.nc``), downloaded or found in ``--src`` (the zips, or the .nc files
extracted anywhere below it); read with xarray. Years: train 2010-2015, val 2016, test 2017-2018
(options ``train``/``val``/``test``; overlapping years are refused, so no time step is in two splits).

Values are stored float32, z-scored per channel with the mean and (population) std of the training
split only; the statistics travel in the manifest (``normalisation``) with the grid's ``latitudes``,
so evaluation de-normalises and can latitude-weight; with each frame's time (``times.npy``) and the training
years' climatology (``climatology.npy``, :mod:`svqbench.data.climatology`) for the anomaly correlation (ACC).
(OpenSTL re-normalises val/test with their
own statistics: a bug not copied here.) A window never spans a gap in time. OpenSTL also drops
each split's last time step and last window; here every complete window is kept.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data import climatology
from svqbench.data.archives import extract
from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec, Normalisation, open_frames_for_writing, write_starts
from svqbench.data.download import Source, fetch, join_url
from svqbench.errors import SvqbenchError

URL = "https://dataserv.ub.tum.de/s/m1524895/download?path=%2F5.625deg%2F{folder}&files={folder}_5.625deg.zip"
HOUR = np.timedelta64(1, "h")
BLOCK = 2048  # time steps per block when computing statistics and normalising


@dataclass(frozen=True)
class Channel:
    """One stored channel: netCDF variable ``variable`` of the ``folder`` archive, at ``level``."""

    folder: str
    variable: str
    level: int | None = None  # pressure level in hPa; -1 = the last level of the file

    @property
    def label(self) -> str:
        return self.variable if self.level is None else f"{self.variable}{'_last' if self.level < 0 else self.level}"


def parse_years(option: str, text: str) -> tuple[int, int]:
    """``"2010-2015"`` -> (2010, 2015); ``"2016"`` -> (2016, 2016)."""
    try:
        first, _, last = text.partition("-")
        years = int(first), int(last or first)
    except ValueError:
        years = (1, 0)
    if years[0] > years[1]:
        raise SvqbenchError(f"option {option}={text!r}: expected YEAR or FIRST-LAST, e.g. 2010-2015")
    return years


def check_disjoint_years(years: dict[str, tuple[int, int]]) -> None:
    """Splits of overlapping years would share time steps, hence windows."""
    spans = sorted(years.items(), key=lambda item: item[1])
    for (first, (_, end)), (second, (start, _)) in zip(spans, spans[1:]):
        if start <= end:
            raise SvqbenchError(
                f"options {first}={years[first][0]}-{years[first][1]} and "
                f"{second}={years[second][0]}-{years[second][1]}: "
                "the years overlap; give each split its own years"
            )


def netcdf_files(target: Path, src: Path | None, folder: str, url: str) -> tuple[list[Path], dict[str, Any]]:
    """The yearly .nc files of ``folder``: extracted below ``src``, or from its (downloaded) zip."""
    if src is not None:
        loose = sorted(src.rglob(f"{folder}_*.nc"))
        if loose:
            return loose, {"file": f"{folder}_*.nc", "origin": str(loose[0].parent)}
    source = Source(f"{folder}_5.625deg.zip", URL.format(folder=folder))
    archive, record = fetch(source, target, src, join_url(url, source.filename) if url else "")
    files = extract(archive, target / "_work" / folder, lambda name: name.endswith(".nc"))
    if not files:
        raise SvqbenchError(f"{archive}: holds no .nc files")
    return sorted(files), record


def read_channel(path: Path, channel: Channel, years: tuple[int, int], every: int, values: bool = True):
    """(times, values (T, H, W) float32 or None, latitudes, (H, W)) of ``channel`` in ``path`` within ``years``."""
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            if channel.variable not in ds:
                raise SvqbenchError(f"{path}: no variable {channel.variable!r} (has {', '.join(ds.data_vars)})")
            field = ds[channel.variable].sel(time=slice(str(years[0]), str(years[1])))
            if channel.level is not None:
                field = field.isel(level=-1) if channel.level < 0 else field.sel(level=channel.level)
            field = field.isel(time=slice(None, None, every))
            data = field.values.astype(np.float32) if values else None
            return field["time"].values, data, ds["lat"].values.tolist(), tuple(field.shape[-2:])
    except (OSError, ValueError, KeyError) as e:
        raise SvqbenchError(f"{path}: cannot read {channel.label} ({str(e).splitlines()[0]})") from None


def window_starts(times: np.ndarray, window: int, step: np.timedelta64) -> np.ndarray:
    """Starts of the windows whose ``window`` time steps are consecutive (no gap inside)."""
    if len(times) < window:
        return np.zeros(0, np.int64)
    span = times[window - 1 :] - times[: len(times) - window + 1]
    return np.flatnonzero(span == (window - 1) * step)


def write_split(
    target: Path,
    split: str,
    channels: tuple[Channel, ...],
    files: dict[str, list[Path]],
    years: tuple[int, int],
    every: int,
    window: int,
) -> tuple[dict[str, int], list[float]]:
    """Store one split's raw (not yet normalised) fields, one file of one channel in memory at a time.

    Returns the split's counts and the grid's latitudes.
    """
    first = channels[0]
    spans = [read_channel(path, first, years, every, values=False) for path in files[first.folder]]
    spans = sorted((s for s in spans if len(s[0])), key=lambda s: s[0][0])
    if not spans:
        raise SvqbenchError(f"no {first.label} data for {split} years {years[0]}-{years[1]} in {first.folder}")
    times = np.concatenate([s[0] for s in spans])
    latitudes, grid = spans[0][2], spans[0][3]
    frames = open_frames_for_writing(target, split, (len(times), len(channels), *grid), np.float32)
    for c, channel in enumerate(channels):
        written = []
        for path in files[channel.folder]:
            piece_times, values, _, _ = read_channel(path, channel, years, every)
            if not len(piece_times):
                continue
            at = int(np.searchsorted(times, piece_times[0]))
            if (
                not np.array_equal(times[at : at + len(piece_times)], piece_times)
                or values.shape[1:] != frames.shape[2:]
            ):
                raise SvqbenchError(f"{path}: time steps or grid of {channel.label} differ from {first.label}")
            frames[at : at + len(values), c] = values
            written.append(len(values))
        if sum(written) != len(times):
            raise SvqbenchError(f"{channel.folder}: {channel.label} covers {sum(written)} of {len(times)} time steps")
    frames.flush()
    del frames
    starts = window_starts(times, window, every * HOUR)
    if not len(starts):
        raise SvqbenchError(f"split {split!r} (years {years[0]}-{years[1]}) has fewer than {window} consecutive steps")
    write_starts(target, split, starts)
    climatology.write_times(target / split, times)
    counts = {
        "frames": len(times),
        "windows": int(len(starts)),
        "first": str(times[0])[:13],
        "last": str(times[-1])[:13],
    }
    return counts, latitudes


def channel_statistics(frames: np.ndarray) -> Normalisation:
    """Per-channel mean and population std of (T, C, H, W) ``frames``, accumulated in float64."""
    total = np.zeros(frames.shape[1])
    squares = np.zeros(frames.shape[1])
    for first in range(0, len(frames), BLOCK):
        block = np.asarray(frames[first : first + BLOCK], np.float64)
        total += block.sum(axis=(0, 2, 3))
        squares += (block**2).sum(axis=(0, 2, 3))
    count = frames.shape[0] * frames.shape[2] * frames.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    if (std == 0).any():
        raise SvqbenchError("a training channel is constant (std 0); cannot z-score it")
    return Normalisation(mean=mean.tolist(), std=std.tolist())


def normalise(path: Path, stats: Normalisation) -> None:
    frames = np.load(path, mmap_mode="r+")
    mean = np.asarray(stats.mean, np.float64)[None, :, None, None]
    std = np.asarray(stats.std, np.float64)[None, :, None, None]
    for first in range(0, len(frames), BLOCK):
        block = np.asarray(frames[first : first + BLOCK], np.float64)
        frames[first : first + BLOCK] = ((block - mean) / std).astype(np.float32)
    frames.flush()


class Weather(DatasetSpec):
    """Shared preparation; subclasses set ``info``, ``channels`` and ``every`` (hours between frames)."""

    channels: tuple[Channel, ...]
    every: int = 1

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        train: str = "2010-2015",
        val: str = "2016",
        test: str = "2017-2018",
        url: str = "",
        targets: str = "",
        frames: str = "",
    ) -> dict[str, Any]:
        """``url``: a mirror folder (with or without a trailing ``/``) holding the ``<variable>_5.625deg.zip``
        archives. ``targets``: comma list of channel labels (``u10``; ``t500``) the models predict from every channel
        (default all)."""
        from svqbench.data.arrays import target_channels

        labels = [c.label for c in self.channels]
        chosen = target_channels(targets, labels, Path(self.info.name)) if targets else []
        windowed = self.windowed(frames)  # --frames IN:OUT: other window lengths than 12:12 (4:4)
        years = {
            "train": parse_years("train", train),
            "val": parse_years("val", val),
            "test": parse_years("test", test),
        }
        check_disjoint_years(years)
        files, sources = {}, []
        for folder in dict.fromkeys(c.folder for c in self.channels):
            files[folder], record = netcdf_files(target, src, folder, url)
            sources.append(record)
        counts, latitudes = {}, []
        for split, span in years.items():
            counts[split], latitudes = write_split(
                target, split, self.channels, files, span, self.every, windowed.window
            )
        raw_train = np.load(target / "train" / "frames.npy", mmap_mode="r")
        stats = channel_statistics(raw_train)
        train_times = climatology.EPOCH + np.load(target / "train" / climatology.TIMES_FILE).astype("timedelta64[h]")
        # the anomaly correlation's reference, from the training years only, in physical units (before z-scoring)
        normals, hours = climatology.compute(raw_train, train_times, BLOCK)
        del raw_train
        for split in years:
            normalise(target / split / "frames.npy", stats)
        shutil.rmtree(target / "_work", ignore_errors=True)
        return {
            "sources": sources,
            "splits": counts,
            "channels": [c.label for c in self.channels],
            "normalisation": {"mean": stats.mean, "std": stats.std},
            "latitudes": latitudes,
            **climatology.write(target, normals, hours),
            "info": dataclasses.replace(windowed, targets=tuple(chosen)),
        }


def _info(name: str, frames: int, channels: int, description: str, protocol: str, variables=()) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        frames_in=frames,
        frames_out=frames,
        channels=channels,
        height=32,
        width=64,
        metrics=("mse", "mae", "rmse"),
        physical=True,
        description=description,
        protocol=protocol,
        variables=variables,
    )


HOURLY = "WeatherBench-S 5.625 deg, hourly 12->12, train 2010-2015 / val 2016 / test 2017-2018, z-scored (train stats)"


@DATASETS.register("weather_t2m")
class WeatherT2m(Weather):
    info = _info("weather_t2m", 12, 1, "2 m temperature (K)", HOURLY)
    channels = (Channel("2m_temperature", "t2m"),)


@DATASETS.register("weather_r")
class WeatherR(Weather):
    info = _info("weather_r", 12, 1, "relative humidity (%), last pressure level of the file", HOURLY)
    channels = (Channel("relative_humidity", "r", -1),)


@DATASETS.register("weather_tcc")
class WeatherTcc(Weather):
    info = _info("weather_tcc", 12, 1, "total cloud cover (0-1)", HOURLY)
    channels = (Channel("total_cloud_cover", "tcc"),)


@DATASETS.register("weather_uv10")
class WeatherUv10(Weather):
    info = _info("weather_uv10", 12, 2, "10 m wind u and v components (m/s)", HOURLY)
    channels = (Channel("10m_u_component_of_wind", "u10"), Channel("10m_v_component_of_wind", "v10"))


@DATASETS.register("weather_mv")
class WeatherMv(Weather):
    info = _info(
        "weather_mv",
        4,
        12,
        "r, t, u, v at 150/500/850 hPa (channels in that order)",
        "WeatherBench-M 5.625 deg, 6-hourly 4->4, train 2010-2015 / val 2016 / test 2017-2018, z-scored (train stats)",
        variables=("r", "t", "u", "v"),  # OpenSTL's channel_names: metrics per variable over its three levels
    )
    channels = tuple(
        Channel(folder, variable, level)
        for folder, variable in (
            ("relative_humidity", "r"),
            ("temperature", "t"),
            ("u_component_of_wind", "u"),
            ("v_component_of_wind", "v"),
        )
        for level in (150, 500, 850)
    )
    every = 6
