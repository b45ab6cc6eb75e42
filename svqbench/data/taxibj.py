"""``taxibj``: TaxiBJ crowd flows, 4->4, 2x32x32 (inflow, outflow), OpenSTL release.

Source: OpenSTL's ``taxibj_dataset.zip`` holding ``dataset.npz`` with ``X_train``/``Y_train``/``X_test``/
``Y_test`` of shape (N, 4, 2, 32, 32), values in [-1, 1], mapped to [0, 1] by (v + 1) / 2 and stored
as float32 (each sample's 4 input then 4 target frames).

``val`` holds the last ``val`` training samples (the most recent ones). The release's samples slide
over one time series, so neighbouring samples share frames: ``train`` keeps the other training samples
less every one that shares a frame (same bytes) with a ``val`` sample, so training never sees a
``val`` frame. ``holdout=false`` keeps all training samples in ``train`` (OpenSTL's training set; the
manifest then records ``"val_held_out": false``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from svqbench.data.archives import extract
from svqbench.data.base import BLOCK_WINDOWS, DATASETS, DatasetInfo, DatasetSpec, open_frames_for_writing, write_starts
from svqbench.data.download import Source, fetch, find_in
from svqbench.errors import SvqbenchError

ARCHIVE = Source(
    "taxibj_dataset.zip", "https://github.com/chengtan9907/OpenSTL/releases/download/v0.1.0/taxibj_dataset.zip"
)
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


def sample_frame_hashes(npz: Path, which: str) -> list[frozenset[bytes]]:
    """Per sample of X_``which``/Y_``which``, the digests of its 8 frames' bytes (equal frames, equal digests)."""
    (_, x_blocks), (_, y_blocks) = npz_rows(npz, f"X_{which}"), npz_rows(npz, f"Y_{which}")
    hashes = []
    for x, y in zip(x_blocks, y_blocks):
        for sample in np.concatenate([x, y], axis=1):
            hashes.append(frozenset(hashlib.blake2b(frame.tobytes(), digest_size=16).digest() for frame in sample))
    return hashes


def write_samples(target: Path, split: str, npz: Path, which: str, chosen: np.ndarray) -> dict[str, int]:
    """Store samples ``chosen`` (ascending indices) of X_``which``/Y_``which`` as 8-frame windows in [0, 1]."""
    x_shape, x_blocks = npz_rows(npz, f"X_{which}")
    y_shape, y_blocks = npz_rows(npz, f"Y_{which}")
    if x_shape[1:] != SAMPLE_SHAPE or y_shape != x_shape:
        raise SvqbenchError(f"{npz}: X_{which}/Y_{which} shapes {x_shape}/{y_shape}, expected (N, 4, 2, 32, 32)")
    if not len(chosen):
        raise SvqbenchError(f"{npz}: split {split!r} would be empty; lower the option val")
    frames = open_frames_for_writing(target, split, (len(chosen) * 8, 2, 32, 32), np.float32)
    first = written = 0
    for x, y in zip(x_blocks, y_blocks):
        local = chosen[(chosen >= first) & (chosen < first + len(x))] - first
        if len(local):
            both = np.concatenate([x[local], y[local]], axis=1)
            frames[written * 8 : (written + len(local)) * 8] = (both.reshape(-1, 2, 32, 32) + 1) / 2
            written += len(local)
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
        protocol="OpenSTL TaxiBJ release (dataset.npz), (v + 1) / 2; val = last training samples, held out of train",
    )
    format_version = 2  # val samples (and samples sharing their frames) removed from train by default

    def window_units(self, folder: Path, split: str, manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
        """The release's samples slide over one time series: blocks of consecutive samples spanning
        :data:`BLOCK_WINDOWS` windows."""
        span = BLOCK_WINDOWS * DatasetInfo.from_dict(manifest["info"]).window
        count = len(np.load(folder / split / "starts.npy"))
        return np.arange(count, dtype=np.int64) // span, f"block of {span} consecutive samples"

    def prepare(
        self, target: Path, src: Path | None, *, val: int = 1000, holdout: bool = True, url: str = ""
    ) -> dict[str, Any]:
        """``--src`` may hold ``dataset.npz`` itself or ``taxibj_dataset.zip``; ``url`` replaces the archive's
        address."""
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
        val_samples = np.arange(train_total - val, train_total)
        train_samples = np.arange(train_total) if not holdout else self._apart_from(npz, val_samples)
        splits = {
            "train": write_samples(target, "train", npz, "train", train_samples),
            "val": write_samples(target, "val", npz, "train", val_samples),
            "test": write_samples(target, "test", npz, "test", np.arange(npz_rows(npz, "X_test")[0][0])),
        }
        if holdout:
            splits["train"]["dropped_sharing_val_frames"] = int(train_total - val - len(train_samples))
        shutil.rmtree(target / "_work", ignore_errors=True)
        extra = {"sources": sources, "splits": splits, "val_held_out": holdout}
        if not holdout:
            extra["info"] = dataclasses.replace(
                self.info, protocol=self.info.protocol.replace("held out of", "also in")
            )
        return extra

    @staticmethod
    def _apart_from(npz: Path, val_samples: np.ndarray) -> np.ndarray:
        """The training samples outside ``val_samples`` that share no frame with any of them."""
        hashes = sample_frame_hashes(npz, "train")
        val_frames = frozenset().union(*(hashes[i] for i in val_samples))
        held = set(val_samples.tolist())
        return np.asarray([i for i, frames in enumerate(hashes) if i not in held and not frames & val_frames], np.int64)
