"""Per-window evaluation artefacts: ``RUN/eval/SPLIT-CONVENTION.npz``, one file per (split, convention).

Each file holds one float64 array (N_windows,) per metric in window order, ``units`` (N_windows,) int64: the
independent resampling unit of each window (:func:`svqbench.data.window_units`), the unit's name, and the
evaluation report (what ``metrics.json`` says). The report travels inside the same file, written in one atomic
step, so a crash leaves either the whole evaluation or none of it, and a later evaluation of another split or
convention never changes what this one says.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path

FOLDER = "eval"
_REPORT, _UNITS, _UNIT = "_report", "_units", "_unit"


@dataclass(frozen=True)
class PerWindow:
    """One evaluation's per-window values, the windows' units and its report."""

    values: dict[str, np.ndarray]  # metric -> (N_windows,) float64
    units: np.ndarray  # (N_windows,) int64
    unit: str  # what a unit is, e.g. "source video"
    report: dict[str, Any]
    path: Path

    @property
    def unit_count(self) -> int:
        return int(len(np.unique(self.units)))


def _file_stem(split: str) -> str:
    """A split name as a file name: an evaluation on perturbed inputs, ``test/perturb=0.3``, is ``test+perturb=0.3``."""
    return split.replace("/", "+")


def path(run_dir: str | Path, split: str, convention: str) -> Path:
    return Path(run_dir) / FOLDER / f"{_file_stem(split)}-{convention}.npz"


def available(run_dir: str | Path, split: str = "test", convention: str | None = None) -> list[Path]:
    """The per-window files of ``run_dir`` for ``split`` (and ``convention`` when given)."""
    split = _file_stem(split)
    pattern = f"{split}-{convention}.npz" if convention else f"{split}-*.npz"
    return sorted((Path(run_dir) / FOLDER).glob(pattern))


def write(
    run_dir: str | Path, values: dict[str, np.ndarray], units: np.ndarray, unit: str, report: dict[str, Any]
) -> Path:
    """Store one evaluation atomically; ``report`` names its ``split`` and ``convention``."""
    target = path(run_dir, report["split"], report["convention"])
    units = np.asarray(units, dtype=np.int64)
    for name, array in values.items():
        if len(array) != len(units):
            raise ValueError(f"{name}: {len(array)} per-window values for {len(units)} window units")
    with atomic_path(target) as tmp:
        np.savez(
            tmp,
            **{name: np.asarray(v, dtype=np.float64) for name, v in values.items()},
            **{_UNITS: units, _UNIT: np.array(unit), _REPORT: np.array(json.dumps(report))},
        )
    return target


def read(run_dir: str | Path, split: str = "test", convention: str | None = None) -> PerWindow:
    """The evaluation of ``run_dir`` on ``split`` under ``convention`` (the only one there when None).

    Refuses, with one line, a missing or damaged file and values that are not finite.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SvqbenchError(f"run directory {run_dir} does not exist, so it has no per-window values to compare")
    found = available(run_dir, split, convention)
    if not found:
        which = f"{split} split" + (f", {convention} convention" if convention else "")
        base, _, ratio = split.partition("/perturb=")
        flags = (
            f" --split {base}"
            + (f" --perturb {ratio}" if ratio else "")
            + (f" --convention {convention}" if convention else "")
        )
        raise SvqbenchError(
            f"{run_dir}: no per-window values for the {which} (no {FOLDER}/{_file_stem(split)}-*.npz); "
            f"evaluate it first with `svqbench eval {run_dir}{flags}`"
        )
    if len(found) > 1:
        names = ", ".join(p.stem.split("-", 1)[1] for p in found)
        raise SvqbenchError(
            f"{run_dir} was evaluated on the {split} split under several conventions ({names}); "
            "choose one with --convention"
        )
    try:
        with np.load(found[0], allow_pickle=False) as arrays:
            values = {n: arrays[n].astype(np.float64) for n in arrays.files if not n.startswith("_")}
            loaded = PerWindow(
                values, arrays[_UNITS].astype(np.int64), str(arrays[_UNIT]), json.loads(str(arrays[_REPORT])), found[0]
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise SvqbenchError(
            f"{found[0]}: damaged ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
            f"evaluate the run again with `svqbench eval {run_dir} --split {split}`"
        ) from None
    for name, array in loaded.values.items():
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise SvqbenchError(
                f"{found[0]}: {bad} of {len(array)} {name} values are not finite (NaN or infinite); "
                "a diverged run cannot be compared"
            )
    return loaded
