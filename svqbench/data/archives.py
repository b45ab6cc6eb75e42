"""Safe extraction of zip and tar archives.

No member may leave the destination (absolute paths, ``..``, links, devices), the declared
sizes must fit on the disk, and a damaged or truncated archive is a one-line error naming it.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from svqbench.errors import SvqbenchError

DISK_MARGIN = 1 << 28  # keep 256 MB free after extraction
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


def safe_member(archive: Path, name: str) -> PurePosixPath:
    """The relative path of a member, or an error when it would escape the destination."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise SvqbenchError(f"{archive}: member {name!r} points outside the extraction folder; refusing it")
    return path


def _check_space(archive: Path, dest: Path, size: int) -> None:
    free = shutil.disk_usage(dest).free
    if size + DISK_MARGIN > free:
        raise SvqbenchError(
            f"{archive}: needs {size / 1e9:.1f} GB to extract into {dest}, only {free / 1e9:.1f} GB free"
        )


def extract(archive: Path, dest: Path, wanted: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """Extract the regular-file members of ``archive`` whose name passes ``wanted`` into ``dest``.

    Returns the extracted paths, in archive order.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, dest, wanted)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, dest, wanted)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise SvqbenchError(f"{archive}: damaged or truncated archive ({e}); delete it and re-run") from None
    raise SvqbenchError(f"{archive}: not a zip or tar archive (damaged or truncated?); delete it and re-run")


def _extract_zip(archive: Path, dest: Path, wanted: Callable[[str], bool]) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            if info.is_dir() or not wanted(info.filename):
                continue
            relative = safe_member(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SvqbenchError(f"{archive}: member {info.filename!r} is a link; refusing it")
            members.append((info, relative))
        _check_space(archive, dest, sum(info.file_size for info, _ in members))
        return [_write(zf.open(info), dest, relative) for info, relative in members]


def _extract_tar(archive: Path, dest: Path, wanted: Callable[[str], bool]) -> list[Path]:
    with tarfile.open(archive) as tf:
        members = []
        for member in tf:
            if member.isdir() or not wanted(member.name):
                continue
            relative = safe_member(archive, member.name)
            if not member.isfile():
                raise SvqbenchError(f"{archive}: member {member.name!r} is a link or device; refusing it")
            members.append((member, relative))
        _check_ended(archive, tf.offset)
        _check_space(archive, dest, sum(m.size for m, _ in members))
        out = []
        for member, relative in members:
            path = _write(tf.extractfile(member), dest, relative)
            if path.stat().st_size != member.size:
                raise SvqbenchError(f"{archive}: member {member.name!r} is truncated; delete it and re-run")
            out.append(path)
        return out


def _check_ended(archive: Path, end: int) -> None:
    """A plain tar closes with two zero blocks after its last member (offset ``end``).

    ``tarfile`` stops without a word when the file is cut inside a member header, so a cut-off
    archive would look complete; compressed tars fail in their decompressor instead.
    """
    with open(archive, "rb") as f:
        compressed = f.read(6).startswith(COMPRESSED_MAGIC)
    if not compressed and archive.stat().st_size < end + 2 * tarfile.BLOCKSIZE:
        raise SvqbenchError(f"{archive}: ends before its end-of-archive marker (truncated); delete it and re-run")


def _write(source: BinaryIO, dest: Path, relative: PurePosixPath) -> Path:
    """Copy an open archive member to ``dest/relative``; return that path."""
    path = dest.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with source, open(path, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    return path
