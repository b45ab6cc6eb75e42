"""``arrays``: a benchmark made from the user's own array file.

``svqbench prep arrays --src FILE --name NAME --frames IN:OUT [--var NAME ...] [--split 0.8,0.1,0.1]``

Sources: ``.npy`` (one array), ``.npz`` (``--var`` picks arrays), netCDF (``.nc``) and zarr stores, read
through xarray (``--var`` picks variables; several, or a variable's level dimension, become channels).
Layouts: ``(T, C, H, W)`` or ``(T, H, W)``, one sequence in time; ``(N, T, C, H, W)``, separate sequences.

Splits (``--split``): fractions ``train,val,test`` of contiguous blocks in that order, or explicit ranges
``train=0:8000,val=8100:9000,test=9100:10000`` (indices, end excluded) or ISO dates on the time
coordinate (``train=2010-01-01:2015-12-31``, both ends included; at least ``YYYY-MM``). A single sequence
leaves a gap of one window between blocks (an explicit block starting closer is trimmed, recorded as
``trimmed``), so no window, and no frame, is in two splits; overlapping ranges are refused. The
sequences of an ``(N, T, ...)`` array are split whole (ranges count sequences). Windows of IN+OUT
frames start every ``stride`` frames (default 1) inside one block or sequence.

Values: ``uint8`` frames and floats already in [0, 1] are stored as they are; any other values are
physical: z-scored per channel with the training split's statistics (``normalisation`` in the manifest,
as WeatherBench), so metrics are reported on de-normalised values; the training minimum and maximum
are the ``value_range`` that SSIM/PSNR map to [0, 1]. NaN or infinite values are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data import climatology
from svqbench.data.base import DATASETS, DatasetInfo, DatasetSpec, write_split
from svqbench.data.download import file_hash
from svqbench.data.videos import parse_frames
from svqbench.errors import SvqbenchError

SPLITS = ("train", "val", "test")
XARRAY_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".zarr"}
IMAGE_METRICS, PHYSICAL_METRICS = ("mae", "mse", "ssim", "psnr"), ("mse", "mae", "rmse")
UNITS = "units.npy"  # SPLIT/units.npy of (N, T, ...) arrays: the sequence of each window (independent units)


@dataclass
class Source:
    """An array file read: ``array`` (T, C, H, W) or (N, T, C, H, W), the time of each step (or None)."""

    array: Any  # numpy array or memmap
    times: np.ndarray | None
    channels: list[str]
    variables: list[str]
    latitudes: list[float] | None = None  # of the grid's rows, from a lat/latitude coordinate of a netCDF or zarr


def read_source(path: Path, names: list[str]) -> Source:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if names:
            raise SvqbenchError(f"--var {','.join(names)}: {path} holds one array; --var is for .npz, netCDF and zarr")
        return Source(_with_channels(path, "array", _checked(path, "array", _load_npy(path))), None, [], [])
    if suffix == ".npz":
        return _read_npz(path, names)
    if suffix in XARRAY_SUFFIXES or path.is_dir():
        return _read_xarray(path, names)
    raise SvqbenchError(f"--src {path}: unknown kind of file; valid: .npy, .npz, netCDF (.nc) or a zarr store (.zarr)")


def _load_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped, after its header is checked against the file's size.

    np.load would fail with a bare ValueError on a truncated file and an "Aborted." on an empty one."""
    size = path.stat().st_size
    if size == 0:
        raise SvqbenchError(f"--src {path}: the file is empty (0 bytes); expected a .npy array")
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, SyntaxError, EOFError) as e:
        raise SvqbenchError(f"--src {path}: not a readable .npy file ({str(e).strip().splitlines()[0]})") from None
    if dtype.hasobject:
        raise SvqbenchError(f"--src {path}: holds Python objects (dtype {dtype}); expected numbers (uint8 or float)")
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed > size:
        raise SvqbenchError(
            f"--src {path}: the header declares shape {tuple(shape)} of {dtype} ({needed} bytes) "
            f"but the file holds {size} bytes; the file is truncated or its header damaged"
        )
    return np.load(path, mmap_mode="r")


def _npz_member(path: Path, archive: Any, name: str) -> np.ndarray:
    """One array of an ``.npz``; object arrays are refused (loading them would unpickle)."""
    try:
        return archive[name]
    except ValueError as e:
        raise SvqbenchError(
            f"--src {path}: {name} holds Python objects ({str(e).splitlines()[0][:80]}); "
            "expected numbers (uint8 or float)"
        ) from None


def _checked(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    """Refuse values that are not real numbers: objects, complex numbers, strings."""
    if array.dtype.hasobject or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_
    ):
        raise SvqbenchError(
            f"--src {path}: {name} has dtype {array.dtype}; expected real numbers (uint8, int or float)"
        )
    return array


def _with_channels(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, 1, H, W); (T, C, H, W) and (N, T, C, H, W) as they are; other ranks refused."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim not in (4, 5):
        raise SvqbenchError(
            f"{path}: {name} has shape {tuple(array.shape)} (rank {array.ndim}); expected (T, H, W), "
            "(T, C, H, W) or (N, T, C, H, W)"
        )
    return array


def _stack(path: Path, arrays: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Several arrays of the same steps and grid -> one, their channels side by side."""
    if len(arrays) == 1:
        return arrays[0]
    for array, name in zip(arrays[1:], names[1:]):
        if (
            array.ndim != arrays[0].ndim
            or array.shape[:-3] != arrays[0].shape[:-3]
            or array.shape[-2:] != arrays[0].shape[-2:]
        ):
            raise SvqbenchError(
                f"{path}: {name} has shape {tuple(array.shape)}, {names[0]} {tuple(arrays[0].shape)}; "
                "variables stacked as channels need the same steps and grid"
            )
    return np.concatenate([np.asarray(a) for a in arrays], axis=-3)


def _read_npz(path: Path, names: list[str]) -> Source:
    if path.stat().st_size == 0:
        raise SvqbenchError(f"--src {path}: the file is empty (0 bytes); expected a .npz archive")
    try:
        archive = np.load(path)
    except (ValueError, OSError, EOFError) as e:
        raise SvqbenchError(f"--src {path}: not a readable .npz archive ({str(e).strip().splitlines()[0]})") from None
    with archive:
        keys = list(archive.files)
        if not names:
            if len(keys) != 1:
                raise SvqbenchError(f"{path} holds arrays {', '.join(keys)}; pick one or more with --var")
            names = keys
        for name in names:
            if name not in keys:
                raise SvqbenchError(f"--var {name}: not in {path}; it holds {', '.join(keys)}")
        arrays = [_with_channels(path, name, _checked(path, name, _npz_member(path, archive, name))) for name in names]
    return Source(_stack(path, arrays, names), None, _labels(arrays, names), names)


def _labels(arrays: list[np.ndarray], names: list[str]) -> list[str]:
    return [name if a.shape[-3] == 1 else f"{name}_{i}" for a, name in zip(arrays, names) for i in range(a.shape[-3])]


def _read_xarray(path: Path, names: list[str]) -> Source:
    import xarray as xr

    try:
        dataset = xr.open_zarr(path) if path.suffix.lower() == ".zarr" or path.is_dir() else xr.open_dataset(path)
    except ImportError as e:
        raise SvqbenchError(
            f"--src {path}: {e.name or 'a library'} is needed to read it (pip install "
            f"{'zarr' if path.is_dir() or path.suffix == '.zarr' else e.name})"
        ) from None
    except (OSError, ValueError, KeyError) as e:
        raise SvqbenchError(f"--src {path}: cannot read it ({str(e).strip().splitlines()[0]})") from None
    with dataset:
        gridded = [str(v) for v in dataset.data_vars if dataset[v].ndim >= 3]
        if not names:
            if len(gridded) != 1:
                raise SvqbenchError(
                    f"{path} holds variables {', '.join(gridded) or 'none'} of 3+ dimensions; "
                    "pick one or more with --var"
                )
            names = gridded
        arrays, labels = [], []
        for name in names:
            if name not in dataset.data_vars:
                raise SvqbenchError(f"--var {name}: not in {path}; it holds {', '.join(map(str, dataset.data_vars))}")
            field = dataset[name]
            array = _with_channels(path, name, field.values)
            arrays.append(array)
            if field.ndim == 4:
                level = field.dims[1]
                labels += [f"{name}_{value}" for value in np.asarray(field[level].values).tolist()]
            else:
                labels += _labels([array], [name])
        time = dataset[names[0]].dims[0]
        times = (
            dataset[time].values
            if time in dataset.coords and np.issubdtype(dataset[time].dtype, np.datetime64)
            else None
        )
        rows = dataset[names[0]].dims[-2]
        latitudes = (
            [float(v) for v in dataset[rows].values] if rows in ("lat", "latitude") and rows in dataset.coords else None
        )
    one_sequence = arrays[0].ndim == 4
    return Source(_stack(path, arrays, names), times if one_sequence else None, labels, names, latitudes)


def target_channels(text: str, labels: list[str], src: Path, count: int | None = None) -> list[int]:
    """``--target t2m`` -> the indices of those channels among ``labels`` (all ``count`` channels when empty)."""
    if not text:
        return list(range(len(labels) if count is None else count))
    chosen = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        matching = [i for i, label in enumerate(labels) if label == name or label.startswith(f"{name}_")]
        if not matching:
            raise SvqbenchError(f"--target {name}: not a channel of {src}; valid: {', '.join(labels)}")
        chosen += [i for i in matching if i not in chosen]
    if not chosen:
        raise SvqbenchError(f"--target {text!r}: name one or more of {', '.join(labels)}")
    return sorted(chosen)


def parse_split(
    text: str, length: int, gap: int, times: np.ndarray | None, unit: str
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """``--split`` -> ({split: (start, stop)} over the first axis, notes on trimmed blocks). ``gap``: one window
    (a single sequence: each block also needs one window), or 0 (separate sequences: each block needs one)."""
    if "=" in text:
        ranges = _explicit_ranges(text, length, times, unit)
        return _with_gaps(ranges, gap, unit)
    try:
        fractions = [float(part) for part in text.split(",")]
    except ValueError:
        fractions = []
    if len(fractions) != 3 or not all(np.isfinite(fractions)) or min(fractions) <= 0 or sum(fractions) > 1 + 1e-9:
        raise SvqbenchError(
            f"--split {text!r}: expected three fractions TRAIN,VAL,TEST above 0 summing to at most 1 "
            "(e.g. 0.8,0.1,0.1), or ranges train=A:B,val=C:D,test=E:F"
        )
    needed = 3 * max(gap, 1) + 2 * gap
    if length < needed:
        raise SvqbenchError(
            f"--split {text!r}: {length} {unit}s cannot make three splits of at least {max(gap, 1)} "
            f"{unit}s{f', {gap} apart' if gap else ''} ({needed} needed); bring more or shorten --frames"
        )
    usable = length - 2 * gap
    sizes = [int(f * usable) for f in fractions]
    if abs(sum(fractions) - 1) < 1e-9:
        sizes[0] = usable - sizes[1] - sizes[2]  # rounding leftovers go to train
    ranges, start = {}, 0
    for split, size in zip(SPLITS, sizes):
        ranges[split] = (start, start + max(size, 0))
        start += max(size, 0) + gap
    return ranges, []


def _explicit_ranges(text: str, length: int, times: np.ndarray | None, unit: str) -> dict[str, tuple[int, int]]:
    ranges = {}
    for part in text.split(","):
        split, _, span = part.partition("=")
        first, sep, last = span.partition(":")
        if split not in SPLITS or not sep or split in ranges:
            raise SvqbenchError(f"--split {text!r}: expected train=A:B,val=C:D,test=E:F (each split once)")
        ranges[split] = _bounds(text, first.strip(), last.strip(), length, times, unit)
    missing = [s for s in SPLITS if s not in ranges]
    if missing:
        raise SvqbenchError(f"--split {text!r}: no range for {', '.join(missing)}")
    return ranges


def _bounds(text: str, first: str, last: str, length: int, times: np.ndarray | None, unit: str) -> tuple[int, int]:
    if any(c in first + last for c in "-T") and not (first + last).lstrip("-").isdigit():
        if times is None:
            raise SvqbenchError(
                f"--split {text!r}: dates need a time coordinate, which this source has not; give {unit} indices"
            )
        try:
            start, end = np.datetime64(first), np.datetime64(last)
        except ValueError:
            raise SvqbenchError(f"--split {text!r}: {first}:{last} is not a range of ISO dates") from None
        end = end + np.timedelta64(1, np.datetime_data(end.dtype)[0])  # an inclusive day, month or hour
        return int(np.searchsorted(times, start, "left")), int(np.searchsorted(times, end, "left"))
    try:
        start, stop = int(first), int(last)
    except ValueError:
        raise SvqbenchError(
            f"--split {text!r}: {first}:{last} is neither two {unit} indices nor two ISO dates"
        ) from None
    if not 0 <= start < stop <= length:
        raise SvqbenchError(f"--split {text!r}: {first}:{last} is not inside 0:{length} ({unit}s, end excluded)")
    return start, stop


def _with_gaps(ranges: dict[str, tuple[int, int]], gap: int, unit: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Refuse overlapping ranges; start a block closer than ``gap`` to the one before it ``gap`` after it."""
    ordered = sorted(ranges, key=lambda s: ranges[s])
    notes = []
    for before, after in zip(ordered, ordered[1:]):
        (start_b, stop_b), (start_a, stop_a) = ranges[before], ranges[after]
        if start_a < stop_b:
            raise SvqbenchError(
                f"--split: {before}={start_b}:{stop_b} and {after}={start_a}:{stop_a} overlap "
                f"({unit} indices); give each split its own range"
            )
        if start_a < stop_b + gap:
            ranges[after] = (stop_b + gap, stop_a)
            notes.append(f"{after} starts at {stop_b + gap}, not {start_a}: one window ({gap}) after {before}")
    return ranges, notes


def check_finite(block: np.ndarray, path: Path, split: str, start: int) -> None:
    if np.issubdtype(block.dtype, np.floating):
        bad = ~np.isfinite(block)
        if bad.any():
            first = int(np.argwhere(bad)[0][0]) + start
            raise SvqbenchError(
                f"{path}: {int(bad.sum())} NaN or infinite values in the {split} split (first at step "
                f"{first}); fill or drop them before prep"
            )


def value_kind(blocks: list[np.ndarray]) -> str:
    """ "uint8" (stored as is), "unit" (floats in [0, 1], stored as is) or "physical" (z-scored)."""
    if all(b.dtype == np.uint8 for b in blocks):
        return "uint8"
    if (
        all(np.issubdtype(b.dtype, np.floating) for b in blocks)
        and min(b.min() for b in blocks) >= 0
        and max(b.max() for b in blocks) <= 1
    ):
        return "unit"
    return "physical"


def channel_statistics(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of training frames (..., C, H, W), in float64."""
    axes = tuple(i for i in range(train.ndim) if i != train.ndim - 3)
    mean = train.mean(axis=axes, dtype=np.float64)
    std = train.std(axis=axes, dtype=np.float64)
    if (std == 0).any():
        raise SvqbenchError(
            f"channel {int(np.flatnonzero(std == 0)[0])} is constant in the training split (std 0); cannot z-score it"
        )
    return mean, std


@DATASETS.register("arrays")
class Arrays(DatasetSpec):
    info = DatasetInfo(
        name="arrays",
        frames_in=10,
        frames_out=10,
        channels=1,
        height=64,
        width=64,
        description="the user's own arrays",
        protocol="contiguous blocks",
    )
    fixed_shape = False  # the file and --frames set it
    src_is_file = True

    def prepare(
        self,
        target: Path,
        src: Path | None,
        *,
        frames: str = "10:10",
        var: str = "",
        split: str = "0.8,0.1,0.1",
        stride: int = 1,
        targets: str = "",
    ) -> dict[str, Any]:
        """``targets``: comma list of the channels (variables, or ``NAME_LEVEL`` labels) the models predict from all
        of them; default every channel."""
        if src is None:
            raise SvqbenchError("prep arrays needs --src FILE: a .npy, .npz, netCDF (.nc) file or a zarr store")
        if stride < 1:
            raise SvqbenchError(f"option stride={stride}: expected 1 or more (frames between window starts)")
        frames_in, frames_out = parse_frames(frames)
        window = frames_in + frames_out
        source = read_source(src, [v for v in var.split(",") if v])
        sequences = source.array.ndim == 5
        length = source.array.shape[0]
        if (source.array.shape[1] if sequences else length) < window:
            what = f"sequences of {source.array.shape[1]} frames" if sequences else f"{length} frames"
            raise SvqbenchError(
                f"{src}: {what}, fewer than one window of {window} (--frames {frames}); "
                "shorten --frames or bring more frames"
            )
        unit = "sequence" if sequences else "frame"
        ranges, notes = parse_split(split, length, 0 if sequences else window, source.times, unit)
        blocks = {}
        for name, (start, stop) in ranges.items():
            block = np.asarray(source.array[start:stop])
            frames_there = block.shape[0] * (block.shape[1] if sequences else 1)
            if block.shape[0] < 1 if sequences else block.shape[0] < window:
                raise SvqbenchError(
                    f"split {name!r} ({unit}s {start}:{stop}) has {frames_there} frames, fewer than one "
                    f"window of {window}; change --split or --frames"
                )
            check_finite(block, src, name, start)
            blocks[name] = block
        kind = value_kind(list(blocks.values()))
        chosen = target_channels(targets, source.channels, src, blocks["train"].shape[-3])
        extra: dict[str, Any] = {}
        if source.latitudes is not None:
            extra["latitudes"] = source.latitudes
        if kind == "physical" and source.times is not None:  # ACC's reference: the training years, physical units
            start, stop = ranges["train"]
            normals, hours = climatology.compute(blocks["train"], source.times[start:stop])
            extra.update(climatology.write(target, normals, hours))
        if kind == "physical":
            mean, std = channel_statistics(blocks["train"])
            extra.update(
                normalisation={"mean": mean.tolist(), "std": std.tolist()},
                value_range=[
                    float(blocks["train"][..., chosen, :, :].min()),
                    float(blocks["train"][..., chosen, :, :].max()),
                ],
            )
            shape = (-1, 1, 1)
            blocks = {n: ((b - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32) for n, b in blocks.items()}
        elif kind == "unit":
            blocks = {n: b.astype(np.float32) for n, b in blocks.items()}
        counts = {}
        for name, block in blocks.items():
            counts[name] = self._write(target, name, block, sequences, window, stride, ranges[name], source.times)
        channels, height, width = blocks["train"].shape[-3:]
        per_variable = channels // max(1, len(source.variables))
        info = DatasetInfo(
            name="arrays",
            frames_in=frames_in,
            frames_out=frames_out,
            channels=channels,
            height=height,
            width=width,
            metrics=PHYSICAL_METRICS if kind == "physical" else IMAGE_METRICS,
            physical=kind == "physical",
            variables=tuple(source.variables)
            if kind == "physical" and len(source.variables) > 1 and per_variable * len(source.variables) == channels
            else (),
            description=f"arrays from {src.name}"
            + (f"; predicts {', '.join(source.channels[c] for c in chosen)}" if targets else ""),
            targets=tuple(chosen) if targets else (),
            protocol=f"{'whole sequences' if sequences else 'contiguous blocks, one window apart'}: {split}",
        )
        source_record = {"file": src.name, "sha256": file_hash(src)} if src.is_file() else {"file": src.name}
        return {
            "info": info,
            "sources": [source_record],
            "splits": counts,
            "layout": unit + "s",
            "values": kind,
            "channels": source.channels,
            "trimmed": notes,
            **extra,
        }

    @staticmethod
    def _write(
        target: Path,
        split: str,
        block: np.ndarray,
        sequences: bool,
        window: int,
        stride: int,
        span: tuple[int, int],
        times: np.ndarray | None,
    ) -> dict[str, Any]:
        """Store one split: its frames, window starts and, for sequences, each window's sequence (units.npy)."""
        record: dict[str, Any] = {"first": span[0], "last": span[1] - 1}
        if sequences:
            count, length = block.shape[:2]
            per_sequence = np.arange(0, length - window + 1, stride)
            starts = (np.arange(count)[:, None] * length + per_sequence[None]).ravel()
            record.update(write_split(target, split, block.reshape(count * length, *block.shape[2:]), starts))
            np.save(target / split / UNITS, np.repeat(np.arange(count) + span[0], len(per_sequence)))
            record["sequences"] = int(count)
        else:
            record.update(write_split(target, split, block, np.arange(0, len(block) - window + 1, stride)))
            if times is not None:
                record.update(first_time=str(times[span[0]])[:19], last_time=str(times[span[1] - 1])[:19])
                climatology.write_times(target / split, times[span[0] : span[1]])
        return record
