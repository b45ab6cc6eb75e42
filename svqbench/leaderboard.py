"""Leaderboards: one CSV per dataset (the record) and a Markdown table regenerated from it.

Rows are appended under an exclusive lock and both files are written atomically, so two
evaluations finishing together never lose a row or leave a half-written table.
"""

from __future__ import annotations

import fcntl
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from svqbench.errors import SvqbenchError
from svqbench.fileio import write_text

LOWER_IS_BETTER = {"mae", "mse", "rmse", "lpips", "wrmse"}
HIGHER_IS_BETTER = {"ssim", "psnr"}
ID_COLUMNS = ["run", "model", "recipe", "params", "epochs", "convention", "split"]


def leaderboards_dir() -> Path:
    return Path(os.environ.get("SVQBENCH_LEADERBOARDS", "leaderboards"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(dataset: str, directory: Path | None = None) -> pd.DataFrame:
    path = (directory or leaderboards_dir()) / f"{dataset}.csv"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.csv"))
        raise SvqbenchError(f"no leaderboard for {dataset!r} in {path.parent}; available: {', '.join(known) or 'none'}")
    return pd.read_csv(path)


def add_row(dataset: str, row: dict[str, Any], directory: Path | None = None) -> Path:
    """Append ``row`` (replacing an earlier row of the same run, convention and split)."""
    path = (directory or leaderboards_dir()) / f"{dataset}.csv"
    with _locked(path):
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=ID_COLUMNS)
        same = (table["run"] == row["run"]) & (table["convention"] == row["convention"]) & (table["split"] == row["split"])
        table = pd.concat([table[~same], pd.DataFrame([row])], ignore_index=True)
        table = table[[c for c in ID_COLUMNS if c in table] + [c for c in table if c not in ID_COLUMNS]]
        buffer = io.StringIO()
        table.to_csv(buffer, index=False)
        write_text(path, buffer.getvalue())
        write_text(path.with_suffix(".md"), to_markdown(dataset, table))
    return path


def best_rows(table: pd.DataFrame) -> dict[str, Any]:
    """Column -> index of the best row, for metric columns with a known direction."""
    best = {}
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            if column in LOWER_IS_BETTER:
                best[column] = values.idxmin()
            elif column in HIGHER_IS_BETTER:
                best[column] = values.idxmax()
    return best


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def to_markdown(dataset: str, table: pd.DataFrame) -> str:
    """A Markdown table with the best value of each metric column in bold (per convention)."""
    lines = [f"# {dataset} leaderboard", "", "Generated from the CSV by `svqbench eval`; best value per metric in bold "
             "(compare rows of the same convention only).", ""]
    for convention, group in table.groupby("convention", sort=True):
        best = best_rows(group)
        lines += [f"## convention: {convention}", "", "| " + " | ".join(group.columns) + " |",
                  "|" + "---|" * len(group.columns)]
        for index, row in group.iterrows():
            cells = [f"**{format_value(v)}**" if best.get(c) == index else format_value(v) for c, v in row.items()]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
