"""``taxibj``: TaxiBJ crowd flows, 4->4, 2x32x32 (inflow, outflow), OpenSTL release.

Source: OpenSTL's ``taxibj_dataset.zip`` holding ``dataset.npz`` with ``X_train``/``Y_train``/``X_test``/
``Y_test`` of shape (N, 4, 2, 32, 32), values in [-1, 1], mapped to [0, 1] by (v + 1) / 2 and stored
as float32 (each sample's 4 input then 4 target frames). ``val`` holds the last ``val`` training
samples (the most recent ones); they stay in ``train`` unless ``holdout=true``.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from svqbench.data import DATASETS
from svqbench.data.archives import extract
from svqbench.data.base import DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.data.download import Source, fetch, find_in
from svqbench.errors import SvqbenchError

ARCHIVE = Source("taxibj_dataset.zip", "https://github.com/chengtan9907/OpenSTL/releases/download/v0.1.0/taxibj_dataset.zip")
SAMPLE_SHAPE = (4, 2, 32, 32)
ROWS = 512


def npz_rows(npz: Path, key: str, rows: int = ROWS) -> tuple[tuple[int, ...], Iterator[np.ndarray]]:
    """Shape of array ``key`` in ``npz`` and an iterator over blocks of ``rows`` samples (never all at once)."""
    try:
        archive = zipfile.ZipFile(npz)
        member = archive.open(f"{key}.npy")
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(member)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise SvqbenchError(f"{npz}: no readable array {key!r} ({e})") from None
    if fortran:
        raise SvqbenchError(f"{npz}: array {key!r} is Fortran-ordered; re-save it with numpy in C order")
    per_row = int(np.prod(shape[1:])) * dtype.itemsize

    def blocks() -> Iterator[np.ndarray]:
        with archive, member:
            for first in range(0, shape[0], rows):
                n = min(rows, shape[0] - first)
                blob = member.read(n * per_row)
                if len(blob) != n * per_row:
                    raise SvqbenchError(f"{npz}: array {key!r} is truncated")
                yield np.frombuffer(blob, dtype).reshape(n, *shape[1:])

    return tuple(shape), blocks()


def write_samples(target: Path, split: str, npz: Path, which: str, keep: slice) -> dict[str, int]:
    """Store samples ``keep`` of X_``which``/Y_``which`` as 8-frame windows in [0, 1]."""
    x_shape, x_blocks = npz_rows(npz, f"X_{which}")
    y_shape, y_blocks = npz_rows(npz, f"Y_{which}")
    if x_shape[1:] != SAMPLE_SHAPE or y_shape != x_shape:
        raise SvqbenchError(f"{npz}: X_{which}/Y_{which} shapes {x_shape}/{y_shape}, expected (N, 4, 2, 32, 32)")
    chosen = range(x_shape[0])[keep]
    if not chosen:
        raise SvqbenchError(f"{npz}: split {split!r} would be empty; lower the option val")
    frames = open_frames_for_writing(target, split, (len(chosen) * 8, 2, 32, 32), np.float32)
    first = 0
    for x, y in zip(x_blocks, y_blocks):
        lo, hi = max(first, chosen.start), min(first + len(x), chosen.stop)
        if lo < hi:
            both = np.concatenate([x[lo - first : hi - first], y[lo - first : hi - first]], axis=1)
            frames[(lo - chosen.start) * 8 : (hi - chosen.start) * 8] = (both.reshape(-1, 2, 32, 32) + 1) / 2
        first += len(x)
    frames.flush()
    del frames
    write_starts(target, split, np.arange(len(chosen)) * 8)
    return {"windows": len(chosen), "frames": len(chosen) * 8}


@DATASETS.register("taxibj")
class TaxiBJ(DatasetSpec):
    info = DatasetInfo(
        name="taxibj",
        frames_in=4,
        frames_out=4,
        channels=2,
        height=32,
        width=32,
        metrics=("mse", "mae", "ssim", "psnr"),
        description="TaxiBJ inflow/outflow, 2x32x32, 4 frames in, 4 out, values in [0, 1]",
        protocol="OpenSTL TaxiBJ release (dataset.npz), (v + 1) / 2; val = last training samples",
    )

    def prepare(
        self, target: Path, src: Path | None, *, val: int = 1000, holdout: bool = False, url: str = ""
    ) -> dict[str, Any]:
        """``--src`` may hold ``dataset.npz`` itself or ``taxibj_dataset.zip``; ``url`` replaces the archive's address."""
        npz = find_in(src, "dataset.npz") if src is not None else None
        if npz is not None:
            sources = [{"file": "dataset.npz", "origin": str(npz)}]
        else:
            archive, record = fetch(ARCHIVE, target, src, url)
            sources = [record]
            members = extract(archive, target / "_work", lambda name: name.endswith("dataset.npz"))
            if not members:
                raise SvqbenchError(f"{archive}: holds no dataset.npz")
            npz = members[0]
        train_total = npz_rows(npz, "X_train")[0][0]
        if not 0 < val < train_total:
            raise SvqbenchError(f"option val={val}: need 0 < val < {train_total} training samples")
        splits = {
            "train": write_samples(target, "train", npz, "train", slice(0, train_total - val if holdout else None)),
            "val": write_samples(target, "val", npz, "train", slice(train_total - val, None)),
            "test": write_samples(target, "test", npz, "test", slice(None)),
        }
        shutil.rmtree(target / "_work", ignore_errors=True)
        return {"sources": sources, "splits": splits}
