"""Atomic file output: write under a temporary name in the same folder, flush it to disk, then rename.

An interrupted command therefore never leaves a file (or folder) that looks complete, and a power cut after
the rename never leaves an empty one. Temporary names carry the writer's process id, so the next writer of
the same file removes what a killed one left. A full disk is one line naming the device and the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from svqbench.errors import SvqbenchError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def _default_mode(base: int) -> int:
    """``base`` less the process umask: what a plain open()/mkdir() would have given (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point holding ``path`` (the device a full disk is named by)."""
    current = Path(os.path.abspath(path))
    while not current.exists() or not os.path.ismount(current):
        if current.parent == current:
            return current
        current = current.parent
    return current


def no_space(error: BaseException, target: str | os.PathLike) -> SvqbenchError | None:
    """The one-line error for a full disk while writing ``target``; None when ``error`` is something else."""
    if isinstance(error, OSError) and error.errno in _FULL:
        return SvqbenchError(
            f"no space left on {mount_point(target)} while writing {target}; free some space "
            "and run the command again (nothing partial was kept)"
        )
    return None


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (best effort: some systems cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files for ``target`` left by writers that no longer run (a kill, a power cut)."""
    pattern = re.compile(rf"^\.{re.escape(target.stem)}\.pid(\d+)\..*\.tmp{re.escape(target.suffix)}$")
    for leftover in target.parent.glob(f".{target.stem}.pid*.tmp{target.suffix}"):
        found = pattern.match(leftover.name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is flushed to disk and renamed to ``target``.

    The temporary keeps the target's suffix so that libraries choosing a format by
    extension (``.gif``, ``.png``, ``.npy``) behave the same. A full disk raises a one-line
    :class:`SvqbenchError` and leaves no temporary behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.pid{os.getpid()}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode(0o666))
        fsync_file(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    except OSError as error:
        full = no_space(error, target)
        if full is None:
            raise
        raise full from None
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
        try:
            yield tmp
        except OSError as error:
            full = no_space(error, target)
            if full is None:
                raise
            raise full from None
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
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
