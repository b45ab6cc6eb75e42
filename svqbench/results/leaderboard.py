"""Leaderboards: one CSV of rows per dataset (the record), summaries by recipe, and published numbers apart.

A row is one evaluation of one run, keyed by ``(run_id, convention, split, fvd_protocol)``; the run's folder
name is only for display. Rows are ranked only inside a *section*: the same protocol, validation hold-out,
frames, frame size, metric convention, split and FVD protocol (``fvd_protocol``: FVD's frames, clip length,
video count and network; empty without FVD). Inside a section, runs of the same recipe and
``--set`` overrides (seeds aside) form a *group*, summarised as mean, standard deviation and n.

Rows are appended under a cross-platform file lock and the files are written atomically, so several
evaluations finishing together never lose a row or leave a half-written table.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from filelock import FileLock

from svqbench.config import WATCHING_KEYS
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_text
from svqbench.results.directions import HIGHER_IS_BETTER, LOWER_IS_BETTER, METRIC_ORDER  # noqa: F401  (public here too)

# a run evaluated under two FVD protocols keeps both rows (tables written before FVD lack the column)
ROW_KEY = ["run_id", "convention", "split", "fvd_protocol"]
# fvd_protocol: FVDs measured with different frames, clip lengths or video counts are never ranked together
SECTION_KEYS = ["protocol", "val_held_out", "frames", "size", "convention", "split", "fvd_protocol"]
GROUP_KEYS = ["recipe", "overrides", "model"]
ID_COLUMNS = [
    "run_id",
    "run",
    "recipe",
    "overrides",
    "model",
    "params",
    "seed",
    "protocol",
    "val_held_out",
    "frames",
    "size",
    "data_options",
    "selection",
    "selected_epoch",
    "selected_step",
    "epochs_trained",
    "steps_trained",
    "train_seconds",
    "precision",
    "convention",
    "split",
    "fvd_protocol",
    "svqbench_version",
    "git_commit",
    "trained_at",
    "evaluated_at",
    "path",
]
REQUIRED_COLUMNS = ("recipe", "model", "convention", "split")  # what every view of the rows reads
# a text cell that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is stored behind a quote
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LEGACY_NAMES = {"epochs": "selected_epoch"}  # rows written before 0.2 named the best checkpoint's epoch "epochs"


def leaderboards_dir() -> Path:
    return Path(os.environ.get("SVQBENCH_LEADERBOARDS", "leaderboards"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path``'s table across processes (a ``.lock`` file next to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        yield


def _read_csv(path: Path) -> pd.DataFrame:
    """The rows of ``path``; a file that is not a readable table is one line naming it (and the line, when known)."""
    try:
        table = pd.read_csv(path, dtype={"overrides": str, "git_commit": str, "run_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise SvqbenchError(
            f"{path}: not a readable leaderboard table ({detail}); fix or remove that line, "
            "or move the file aside and evaluate the runs again"
        ) from None
    except pd.errors.EmptyDataError:
        raise SvqbenchError(f"{path}: empty, not a leaderboard table; remove it and evaluate the runs again") from None
    if "run_id" not in table and "run" not in table:
        raise SvqbenchError(
            f"{path}: no run_id column, not a leaderboard table; move it aside and evaluate the runs again"
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in table]
    if missing:
        raise SvqbenchError(
            f"{path}: lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} that every leaderboard "
            "row has; move the file aside and evaluate the runs again"
        )
    table = _unguarded(table)
    table = table.rename(columns={k: v for k, v in _LEGACY_NAMES.items() if k in table and v not in table})
    if "run_id" not in table:  # legacy rows: the folder name was the key
        table.insert(0, "run_id", table["run"].astype(str))
    if "path" in table:  # stored relative to the file's folder (see to_csv_text); absolute in memory
        table["path"] = [str((path.parent / p).resolve()) if p else "" for p in _text(table["path"])]
    return table


def read(dataset: str, directory: Path | None = None) -> pd.DataFrame:
    path = (directory or leaderboards_dir()) / f"{dataset}.csv"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.csv"))
        raise SvqbenchError(f"no leaderboard for {dataset!r} in {path.parent}; available: {', '.join(known) or 'none'}")
    return _read_csv(path)


def check_table(dataset: str, directory: Path | None = None) -> None:
    """Refuse (one line) a leaderboard file that exists but cannot be read, before anything adds to it."""
    path = (directory or leaderboards_dir()) / f"{dataset}.csv"
    if path.is_file():
        _read_csv(path)


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns present, in a fixed reading order."""
    known = [m for m in METRIC_ORDER if m in table]
    return known + [c for c in table if c in LOWER_IS_BETTER | HIGHER_IS_BETTER and c not in known]


def to_csv_text(table: pd.DataFrame, folder: Path) -> str:
    """``table`` as CSV text for a file in ``folder``: run paths relative to that folder when possible (the file
    then reads the same from any working folder, and after moving the tree together), else absolute."""
    table = _guarded(table.copy())
    if "path" in table:
        table["path"] = [_relative(p, folder) for p in _text(table["path"])]
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue()


def _guarded(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would evaluate (``=HYPERLINK(...)``, ``+1``, ``@SUM``) get a leading ``'``,
    which spreadsheets show as text; :func:`_unguarded` takes it off again on reading. Numbers are left alone."""
    for column in _text_columns(table):
        table[column] = [_guard(value) for value in table[column]]
    return table


def _guard(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(FORMULA_START) or _is_number(value):
        return value
    return "'" + value


def _unguarded(table: pd.DataFrame) -> pd.DataFrame:
    for column in _text_columns(table):
        table[column] = [
            value[1:]
            if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_START)
            else value
            for value in table[column]
        ]
    return table


def _text_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _relative(run_dir: str, folder: Path) -> str:
    if not run_dir:
        return ""
    try:
        return os.path.relpath(Path(run_dir).resolve(), Path(folder).resolve())
    except ValueError:  # another drive
        return str(Path(run_dir).resolve())


def csv_path(dataset: str, directory: Path | None = None) -> Path:
    """The leaderboard CSV of ``dataset`` (in ``directory``, else the leaderboards folder)."""
    return (directory or leaderboards_dir()) / f"{dataset}.csv"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock of the leaderboard at ``path`` (the CSV and the views written from it)."""
    with _locked(path):
        yield


def append_row(path: Path, row: dict[str, Any]) -> pd.DataFrame:
    """Append ``row`` to the CSV at ``path`` (replacing an earlier row of the same run id, convention, split and FVD
    protocol) and return the whole table. The caller holds :func:`locked`; :func:`svqbench.results.views.publish`
    does."""
    table = _read_csv(path) if path.is_file() else pd.DataFrame(columns=ROW_KEY)
    same = pd.Series(True, index=table.index)
    for key in ROW_KEY:
        column = table[key].fillna("") if key in table else pd.Series("", index=table.index)
        same &= column.astype(str) == str(row.get(key, ""))
    new = pd.DataFrame([row])
    table = new if table[~same].empty else pd.concat([table[~same], new], ignore_index=True)
    ordered = [c for c in ID_COLUMNS if c in table]
    table = table[ordered + [c for c in table if c not in ordered]]
    write_text(path, to_csv_text(table, path.parent))
    return table


def _text(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).replace("nan", "")


def group_overrides(overrides: str) -> str:
    """The overrides that define a group: every ``--set`` except the seed (seeds are what a group averages)
    and the loggers (:data:`~svqbench.config.WATCHING_KEYS`: they do not change the result)."""
    ignored = ("train.seed=", *(f"{key}=" for key in WATCHING_KEYS))
    return " ".join(part for part in str(overrides or "").split() if not part.startswith(ignored))


def sections(table: pd.DataFrame) -> list[tuple[dict[str, str], pd.DataFrame]]:
    """Split rows into sections whose rows may be ranked together: [(key values, rows)]."""
    table = table.copy()
    for key in SECTION_KEYS:
        table[key] = _text(table[key]) if key in table else ""
    return [
        (dict(zip(SECTION_KEYS, keys if isinstance(keys, tuple) else (keys,))), rows)
        for keys, rows in table.groupby(SECTION_KEYS, sort=True, dropna=False)
    ]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per group of one section: GROUP_KEYS, n, seeds, run_ids, paths (a tuple of run folders), and
    ``METRIC_mean`` / ``METRIC_std``.

    The standard deviation is across runs (ddof 1), NaN for a group of one run.
    """
    rows = rows.copy()
    rows["overrides"] = _text(rows["overrides"]).map(group_overrides) if "overrides" in rows else ""
    for key in GROUP_KEYS:
        rows[key] = _text(rows[key]) if key in rows else ""
    metrics = metric_columns(rows)
    out = []
    for keys, group in rows.groupby(GROUP_KEYS, sort=False):
        record: dict[str, Any] = dict(zip(GROUP_KEYS, keys))
        record["n"] = len(group)
        seeds = pd.to_numeric(group["seed"], errors="coerce").dropna() if "seed" in group else pd.Series([])
        record["seeds"] = " ".join(str(int(seed)) for seed in seeds)  # 1 2 3, not 1.0 2.0 3.0 (NaN in a column)
        record["run_ids"] = " ".join(group["run_id"].astype(str))
        record["paths"] = tuple(p for p in _text(group["path"]) if p) if "path" in group else ()
        for metric in metrics:
            values = pd.to_numeric(group[metric], errors="coerce")
            record[f"{metric}_mean"] = values.mean()
            std = values.std(ddof=1) if values.count() > 1 else float("nan")
            # identical runs (floors) differ only by float rounding: show 0, not 8.5e-18
            record[f"{metric}_std"] = 0.0 if std <= 1e-12 * abs(record[f"{metric}_mean"]) else std
        out.append(record)
    return pd.DataFrame(out)


def reported_dirs() -> list[Path]:
    """Where published numbers live: ``LEADERBOARDS/reported`` and the repository's ``leaderboards/reported``."""
    repository = Path(__file__).resolve().parents[2] / "leaderboards" / "reported"
    return list(dict.fromkeys([leaderboards_dir() / "reported", repository]))


def reported(dataset: str) -> pd.DataFrame:
    """Published numbers for ``dataset`` (method, source, convention, protocol, metrics); empty when none."""
    for folder in reported_dirs():
        path = folder / f"{dataset}.csv"
        if path.is_file():
            return pd.read_csv(path, comment="#")
    return pd.DataFrame()


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
