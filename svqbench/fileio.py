"""Atomic file output: write under a temporary name in the same folder, then rename.

An interrupted command therefore never leaves a file (or folder) that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _default_mode(base: int) -> int:
    """``base`` less the process umask: what a plain open()/mkdir() would have given (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed to ``target``.

    The temporary keeps the target's suffix so that libraries choosing a format by
    extension (``.gif``, ``.png``, ``.npy``) behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode(0o666))
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it replaces ``target``.

    An existing ``target`` is only renamed aside (``.NAME.*.old``) while the new folder is renamed
    into place, and deleted after: whatever fails before, the old folder survives whole (moved
    back, or found by :func:`restore_replaced_dir` after a crash between the two renames).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(0o777))
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old)  # rename over the empty placeholder: one step, nothing deleted
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def restore_replaced_dir(target: str | os.PathLike) -> None:
    """Undo a crash inside :func:`atomic_dir`'s swap: put a renamed-aside ``target`` back, drop leftovers.

    Call it only while no other process can be inside ``atomic_dir`` for ``target`` (hold its lock).
    """
    target = Path(target)
    for old in sorted(target.parent.glob(f".{target.name}.*.old")):
        if not target.exists() and any(old.iterdir()):
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
