"""Checked prepared data: the manifest records every prepared file's size, checksum and (``.npy``) header.

Opening a split compares sizes and headers with the record (cheap: no data is read); :func:`verify`
recomputes the checksums (``svqbench prep NAME --verify``, ``doctor``, and ``eval`` for the split it
evaluates), so flipped bytes are found before they become numbers. Folders prepared before this record
existed have none: nothing to compare, and ``--verify`` says so.
"""

from __future__ import annotations

import hashlib
import tokenize
from pathlib import Path
from typing import Any

import numpy as np

from svqbench.data.base import MANIFEST
from svqbench.errors import SvqbenchError

_CHUNK = 1 << 22
# what numpy's header parser raises on damaged bytes (it tokenizes the header as a Python literal)
HEADER_ERRORS = (ValueError, OSError, SyntaxError, tokenize.TokenError, TypeError, KeyError, EOFError)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def npy_header(path: Path) -> dict[str, Any]:
    """{"shape", "dtype"} from an ``.npy`` file's header; ValueError when the header is damaged."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return {"shape": list(shape), "dtype": np.dtype(dtype).str}


def record_files(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "sha256"[, "shape", "dtype"]}} of every file in a prepared folder but the manifest."""
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        record: dict[str, Any] = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
        if path.suffix == ".npy":
            record.update(npy_header(path))
        records[path.relative_to(folder).as_posix()] = record
    return records


def rebuild_hint(manifest: dict[str, Any], folder: Path) -> str:
    return f"rebuild it with `svqbench prep {manifest.get('spec', folder.name)} --root {folder.parent} --force`"


def check_split(folder: Path, split: str, manifest: dict[str, Any]) -> None:
    """Sizes and headers of ``split``'s recorded files against the manifest: one line naming the file and the
    command that rebuilds it on any difference."""
    for relative, record in manifest.get("files", {}).items():
        if not relative.startswith(f"{split}/"):
            continue
        path = folder / relative
        problem = _shape_problem(path, record)
        if problem:
            raise SvqbenchError(f"{path}: {problem}; {rebuild_hint(manifest, folder)}")


def _shape_problem(path: Path, record: dict[str, Any]) -> str:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"{size} bytes, the manifest records {record['bytes']} (truncated or replaced)"
    if "shape" in record:
        try:
            header = npy_header(path)
        except HEADER_ERRORS as error:
            return f"damaged .npy header ({' '.join(str(error).split())[:80]})"
        if header != {"shape": record["shape"], "dtype": record["dtype"]}:
            return f"header says {header}, the manifest records shape {record['shape']} dtype {record['dtype']}"
    return ""


def verify(folder: Path, manifest: dict[str, Any], split: str | None = None) -> list[str]:
    """Problems (one line each) found by recomputing the checksums of ``folder``'s recorded files (of ``split``
    only, when given); [] when every file matches. A folder with no record gives one line saying so."""
    files = manifest.get("files")
    if files is None:
        return [
            f"{folder}: prepared without checksums (older svqbench); {rebuild_hint(manifest, folder)} to record them"
        ]
    problems = []
    for relative, record in files.items():
        if split is not None and not relative.startswith(f"{split}/"):
            continue
        path = folder / relative
        problem = _shape_problem(path, record)
        if not problem and file_digest(path) != record["sha256"]:
            problem = "checksum differs from the manifest (the file changed after prep)"
        if problem:
            problems.append(f"{path}: {problem}; {rebuild_hint(manifest, folder)}")
    return problems
