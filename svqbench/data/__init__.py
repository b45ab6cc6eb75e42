"""Datasets: one registry, one prepared-folder format, one entry point each for prep and loading.

>>> from svqbench import data
>>> data.prepare("digits", root="data")          # writes data/digits/ (no-op when already there)
>>> ds = data.create("digits", "train", "data")   # torch Dataset of (inputs, targets)
>>> x, y = ds[0]                                  # (T_in, C, H, W), (T_out, C, H, W), float32 in [0, 1]
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch.utils.data import Dataset

from svqbench import __version__

# the built-in dataset modules register themselves in DATASETS as they are imported
from svqbench.data import (  # noqa: F401
    arrays,
    checks,
    digits,
    human,
    kitticaltech,
    kth,
    mmnist,
    taxibj,
    videos,
    weather,
)
from svqbench.data.base import DATASETS, MANIFEST, DatasetInfo, DatasetSpec, Normalisation, read_manifest
from svqbench.data.download import refetching, trusting_src
from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_dir, restore_replaced_dir, write_json


def default_root() -> Path:
    """Data root: ``$SVQBENCH_DATA`` or ``./data``."""
    return Path(os.environ.get("SVQBENCH_DATA", "data"))


def _spec_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Check ``options`` against ``spec.prepare``'s keyword arguments and coerce them to their types."""
    params = {
        p.name: p
        for p in inspect.signature(spec.prepare).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    checked = {}
    for key, value in options.items():
        if key not in params:
            valid = ", ".join(params) or "none"
            raise SvqbenchError(f"unknown option {key!r} for prep {spec.info.name}; valid: {valid}")
        default = params[key].default
        if isinstance(value, str) and isinstance(default, bool):
            value = _parse_bool(spec, key, value)
        elif isinstance(value, str) and default is not None and not isinstance(default, str):
            try:
                value = type(default)(value)
            except ValueError:
                raise SvqbenchError(
                    f"option {key}={value!r} for prep {spec.info.name}: expected {type(default).__name__}"
                ) from None
        checked[key] = value
    return checked


def _parse_bool(spec: DatasetSpec, key: str, value: str) -> bool:
    """``bool("false")`` is True, so option strings need their own parsing."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if value.lower() not in words:
        raise SvqbenchError(f"option {key}={value!r} for prep {spec.info.name}: expected true or false")
    return words[value.lower()]


def checked_name(name: str, flag: str = "--name") -> str:
    """A dataset's folder name is a name, never a path: ``../x`` or ``/tmp/x`` would write outside the data root."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        raise SvqbenchError(f"{flag} {name!r}: a dataset name takes letters, digits, _ and - only (no / or ..)")
    return name


def prepare(
    name: str,
    root: str | os.PathLike | None = None,
    src: str | os.PathLike | None = None,
    force: bool = False,
    folder_name: str | None = None,
    trust_src: bool = False,
    **options: Any,
) -> Path:
    """Prepare dataset ``name`` into ``root/(folder_name or name)`` and return that folder.

    Work happens in a temporary folder that is renamed at the end, and the manifest is written
    last, so an interrupted prep never leaves a folder that looks complete; with ``force`` the old
    complete folder stays in place until the new one replaces it. A lock file
    (``root/.NAME.lock``) makes a second prep of the same folder wait for the first, then find it
    done. A second call with the same options is a no-op; ``force`` redoes it. ``trust_src`` uses ``src`` files
    whose checksum differs from the published one, and the manifest names them under ``trusted_src``.
    """
    spec = DATASETS.get(name)()
    root = Path(root) if root is not None else default_root()
    folder = root / checked_name(folder_name or name)
    options = _spec_options(spec, options)
    src_path = Path(src) if src is not None else None
    if src_path is not None and not src_path.exists() and spec.src_is_file:
        raise SvqbenchError(f"--src {src_path}: no such file")
    if src_path is not None and not src_path.is_dir() and not spec.src_is_file:
        raise SvqbenchError(f"--src {src_path}: not a folder")
    with _prep_lock(folder):
        restore_replaced_dir(folder)
        manifest = read_manifest(folder)
        if manifest is not None and not force and not _outdated(manifest):
            if manifest.get("options", {}) != _jsonable(options) and options:
                raise SvqbenchError(
                    f"{folder} was prepared with options {manifest.get('options')}; "
                    f"add --force to re-prepare with {options}"
                )
            return folder
        _remove_stale_partials(folder)
        with atomic_dir(folder) as tmp, trusting_src(trust_src) as trusted, refetching(force):
            extra = spec.prepare(tmp, src_path, **options)
            if trusted:
                extra["trusted_src"] = list(trusted)
            info = extra.pop("info", spec.info)
            val_held_out = extra.pop("val_held_out", True)
            write_json(
                tmp / MANIFEST,
                {
                    "dataset": folder.name,
                    "spec": name,
                    "format_version": spec.format_version,
                    "svqbench_version": __version__,
                    "info": info.to_dict(),
                    "options": _jsonable(options),
                    "val_held_out": val_held_out,
                    **extra,
                    "files": checks.record_files(tmp),
                    "complete": True,
                },
            )
    return folder


@contextmanager
def _prep_lock(folder: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` next to ``folder``; say so on stderr when another prep holds it first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.parent / f".{folder.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another prep of {folder} to finish (lock {lock.lock_file})", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _outdated(manifest: dict[str, Any]) -> bool:
    """Prepared by an older svqbench whose splits this version makes differently (see ``format_version``)."""
    spec = DATASETS.get(manifest.get("spec", manifest.get("dataset")))
    return manifest.get("format_version", 1) < spec.format_version


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def _remove_stale_partials(folder: Path) -> None:
    """Drop temporary folders left by an interrupted prep of the same dataset (the caller holds its lock)."""
    for stale in folder.parent.glob(f".{folder.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)


def load_manifest(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of a prepared dataset; a one-line error naming the prep command when absent."""
    root = Path(root) if root is not None else default_root()
    folder = root / name
    manifest = read_manifest(folder)
    if manifest is None:
        if name not in DATASETS and not folder.exists():
            DATASETS.get(name)  # raises: unknown dataset, with the valid names
        state = "is incomplete" if folder.exists() else "is not prepared"
        raise SvqbenchError(f"dataset {name!r} {state} in {folder}: run `svqbench prep {name} --root {root}`")
    check_identity(name, folder, manifest)
    if _outdated(manifest):
        raise SvqbenchError(
            f"dataset {name!r} in {folder} was prepared by an older svqbench (its val split may overlap train): "
            f"run `svqbench prep {manifest.get('spec', name)} --root {root} --force`"
        )
    return manifest


def check_identity(name: str, folder: Path, manifest: dict[str, Any]) -> None:
    """Refuse a prepared folder that holds another dataset (a folder copied or renamed into ``name``'s place):
    its manifest must name ``name``, and for a registered dataset its spec and, where prep options cannot change
    it, its clip shape."""
    where = folder / MANIFEST
    recorded = manifest.get("dataset")
    if recorded is not None and recorded != name:
        raise SvqbenchError(
            f"{folder} holds the prepared dataset {recorded!r} ({where}: dataset), not {name!r}: move it back to "
            f"{folder.parent / str(recorded)} or run `svqbench prep {name} --root {folder.parent} --force`"
        )
    if name in DATASETS and manifest.get("spec", name) != name:
        raise SvqbenchError(
            f"{folder} was prepared as {manifest.get('spec')!r} ({where}: spec), not as {name!r}; "
            f"run `svqbench prep {name} --root {folder.parent} --force`"
        )
    if name in DATASETS and DATASETS.get(name).fixed_shape:
        expected, found = DATASETS.get(name).info, manifest.get("info", {})
        # the frame size is the dataset's; the window lengths too, unless its prep was given --frames
        frames = () if "frames" in manifest.get("options", {}) else ("frames_in", "frames_out")
        keys = (*frames, "channels", "height", "width")
        if any(found.get(key) != getattr(expected, key) for key in keys):
            shape = "x".join(str(found.get(key)) for key in keys)
            raise SvqbenchError(
                f"{where}: clip shape {shape} ({', '.join(keys)}) is not {name}'s "
                f"{'x'.join(str(getattr(expected, key)) for key in keys)}; run `svqbench prep {name} --root "
                f"{folder.parent} --force`"
            )


def info(name: str, root: str | os.PathLike | None = None) -> DatasetInfo:
    """Facts of a dataset: from its manifest when prepared, else from its registered module."""
    root = Path(root) if root is not None else default_root()
    manifest = read_manifest(root / name)
    if manifest is not None:
        check_identity(name, root / name, manifest)
        return DatasetInfo.from_dict(manifest["info"])
    return DATASETS.get(name).info


def known_shape(name: str, root: str | os.PathLike | None = None) -> DatasetInfo | None:
    """Facts of a dataset when its clip shape is known before training: from its manifest when prepared,
    else from its registered module when prep options cannot change the shape; None otherwise."""
    root = Path(root) if root is not None else default_root()
    try:
        manifest = read_manifest(root / name)
    except SvqbenchError:
        return None
    if manifest is not None:
        return DatasetInfo.from_dict(manifest["info"])
    if name in DATASETS and DATASETS.get(name).fixed_shape:
        return DATASETS.get(name).info
    return None


def targets(manifest: dict[str, Any]) -> list[int]:
    """The channels a dataset's models predict: its ``targets``, else every channel."""
    info = manifest["info"]
    return list(info.get("targets") or range(info["channels"]))


def denormaliser(name: str, root: str | os.PathLike | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """(B,T,C_out,H,W) z-scored predictions or targets (the target channels) -> physical units, for datasets prepared
    with training statistics; else None."""
    manifest = load_manifest(name, root)
    stats = manifest.get("normalisation")
    if not stats:
        return None
    chosen = targets(manifest)
    return Normalisation([stats["mean"][c] for c in chosen], [stats["std"][c] for c in chosen]).denormalise


def variables(name: str, root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Names of the physical variables (equal channel blocks) of a prepared dataset; () when it names none.

    Read from the registered module too, so folders prepared before the field existed still get them.
    """
    manifest = load_manifest(name, root)
    stored = manifest["info"].get("variables")
    spec = manifest.get("spec", name)
    names = tuple(stored) if stored is not None else DATASETS.get(spec).info.variables if spec in DATASETS else ()
    if not names or not manifest["info"].get("targets"):
        return names
    # with target channels: the variables whose whole block is predicted, when they cover the targets exactly
    width = manifest["info"]["channels"] // len(names)
    chosen = set(targets(manifest))
    kept = [v for i, v in enumerate(names) if set(range(i * width, (i + 1) * width)) <= chosen]
    return tuple(kept) if len(kept) * width == len(chosen) else ()


def value_range(name: str, root: str | os.PathLike | None = None) -> tuple[float, float] | None:
    """The physical (LO, HI) a prep recorded for image metrics on physical fields (``prep arrays``: the training
    minimum and maximum); None when it recorded none."""
    recorded = load_manifest(name, root).get("value_range")
    return tuple(recorded) if recorded else None


def climatology(name: str, split: str, root: str | os.PathLike | None = None):
    """The training years' climatology of each target frame of ``split``'s windows (for ACC): a
    :class:`~svqbench.data.climatology.ClimatologyLookup`, or a one-line error when the dataset has none."""
    from svqbench.data.climatology import ClimatologyLookup

    root = Path(root) if root is not None else default_root()
    manifest = load_manifest(name, root)
    facts = DatasetInfo.from_dict(manifest["info"])
    return ClimatologyLookup(root / name, split, manifest, facts.frames_in, targets(manifest))


def latitudes(name: str, root: str | os.PathLike | None = None) -> list[float] | None:
    """Latitude (degrees) of each grid row, for latitude-weighted metrics; None for non-geographic data."""
    return load_manifest(name, root).get("latitudes")


def clip_shape(name: str, root: str | os.PathLike | None = None) -> DatasetInfo:
    """The clip shape of a dataset, or a one-line error when prep options decide it and it is not prepared."""
    shape = known_shape(name, root)
    if shape is None:
        DATASETS.get(name)  # raises: unknown dataset, with the valid names
        raise SvqbenchError(
            f"dataset {name!r}: its clip shape is set when it is prepared; "
            f"run `svqbench prep {name} ...` first (or pass --root)"
        )
    return shape


def window_units(name: str, split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, str]:
    """(units (N_windows,) int64, what a unit is) for each window of a prepared split, in window order: the
    independent unit that a bootstrap resamples (a source video, a sequence, a block of consecutive windows)."""
    root = Path(root) if root is not None else default_root()
    manifest = load_manifest(name, root)
    return DATASETS.get(manifest["spec"])().window_units(root / name, split, manifest)


def create(name: str, split: str, root: str | os.PathLike | None = None) -> Dataset:
    """Torch Dataset of a prepared split; items ``(inputs, targets)``, ``(T_in,C,H,W)``, ``(T_out,C,H,W)``."""
    root = Path(root) if root is not None else default_root()
    manifest = load_manifest(name, root)
    spec = DATASETS.get(manifest["spec"])()
    splits = manifest["info"]["splits"]
    if split not in splits:
        raise SvqbenchError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(splits)}")
    checks.check_split(root / name, split, manifest)
    try:
        return spec.open(root / name, split, manifest)
    except checks.HEADER_ERRORS as error:  # a damaged array in a folder prepared without records
        raise SvqbenchError(
            f"{root / name / split}: unreadable ({' '.join(str(error).split())[:100]}); "
            f"{checks.rebuild_hint(manifest, root / name)}"
        ) from None


def verify(name: str, root: str | os.PathLike | None = None, split: str | None = None) -> list[str]:
    """Recompute the checksums of a prepared dataset's files (of ``split`` only, when given) against its
    manifest: one line per problem, [] when all match."""
    root = Path(root) if root is not None else default_root()
    return checks.verify(root / checked_name(name), load_manifest(name, root), split)


def check_checksums(name: str, root: str | os.PathLike | None, split: str) -> None:
    """Recompute the checksums of ``split``'s files before anything reads them (``eval`` for its split, ``train`` for
    train and val, once per run); the first problem as one line. Folders prepared before checksums have none."""
    if "files" not in load_manifest(name, root):
        return
    problems = verify(name, root, split)
    if problems:
        raise SvqbenchError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
