"""Source files of a dataset: found in ``--src``, or downloaded with resume, retries and checksums.

Downloads land in ``ROOT/downloads/`` (kept between preps, so an interrupted download resumes from
its ``.part`` file and a forced re-prep does not download again). A file is accepted only when it
matches its published checksum; files without a published one get their sha256 printed and stored
in a ``.sha256`` file next to them and in the dataset manifest.

pooch was considered; it cannot resume a partial file, which matters for multi-GB archives on
flaky links, so this module does the HTTP part itself with ``requests``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from svqbench.errors import SvqbenchError

RETRIES = 5
CHUNK = 1 << 20
console = Console(stderr=True)


@dataclass(frozen=True)
class Source:
    """One file a dataset is built from: its name, where it is published, its known checksum."""

    filename: str
    url: str
    sha256: str = ""
    md5: str = ""


def download_dir(target: Path) -> Path:
    """The download cache of the data root that the temporary prep folder ``target`` lives in."""
    return target.parent / "downloads"


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, source: Source) -> str:
    """Check ``path`` against the published checksum of ``source``; return its sha256."""
    sha256 = file_hash(path)
    if source.sha256 and sha256 != source.sha256:
        raise SvqbenchError(f"{path}: sha256 {sha256} does not match the published {source.sha256}")
    if source.md5:
        md5 = file_hash(path, "md5")
        if md5 != source.md5:
            raise SvqbenchError(f"{path}: md5 {md5} does not match the published {source.md5}")
    if not (source.sha256 or source.md5):
        console.print(f"sha256 {sha256}  {path.name} (no published checksum; recorded in the manifest)")
    return sha256


def find_in(src: Path, filename: str) -> Path | None:
    """``src/filename``, else the first file of that name below ``src`` (sorted, so deterministic)."""
    direct = src / filename
    if direct.is_file():
        return direct
    return next((p for p in sorted(src.rglob(filename)) if p.is_file()), None)


def fetch(source: Source, target: Path, src: Path | None, url: str = "") -> tuple[Path, dict[str, Any]]:
    """Path of ``source``'s file and its manifest record ``{file, sha256, origin}``.

    With ``src`` the file must be there (no network); otherwise it is downloaded into the cache of
    the data root, from ``url`` when given (a mirror, or ``file:///...``), else from the published URL.
    """
    if src is not None:
        path = find_in(src, source.filename)
        if path is None:
            raise SvqbenchError(
                f"{source.filename} not found in --src {src}; it is published at {source.url}"
            )
        return path, {"file": source.filename, "sha256": verify(path, source), "origin": str(path)}
    cache = download_dir(target)
    path = cache / source.filename
    recorded = path.with_name(path.name + ".sha256")
    origin = url or source.url
    if path.is_file() and recorded.is_file():
        sha256 = recorded.read_text().strip()
    else:
        cache.mkdir(parents=True, exist_ok=True)
        download(origin, path)
        try:
            sha256 = verify(path, source)
        except SvqbenchError:
            path.unlink()  # a bad download must not be trusted by the next run
            raise
        recorded.write_text(sha256 + "\n")
    return path, {"file": source.filename, "sha256": sha256, "origin": origin}


def download(url: str, path: Path) -> None:
    """Download ``url`` to ``path`` through ``path.part``, resuming it and retrying with backoff."""
    part = path.with_name(path.name + ".part")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
        if not local.is_file():
            raise SvqbenchError(f"--url {url}: no such file")
        shutil.copyfile(local, part)
        part.replace(path)
        return
    if parsed.scheme not in ("http", "https"):
        raise SvqbenchError(f"--url {url}: only http(s):// and file:// addresses are supported")
    for attempt in range(RETRIES):
        try:
            _download_once(url, part)
            part.replace(path)
            return
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            if attempt == RETRIES - 1:
                raise SvqbenchError(
                    f"{url}: download failed after {RETRIES} attempts ({type(e).__name__}); "
                    f"re-run to resume {part}, or pass --src with the file"
                ) from None
            wait = 2**attempt
            console.print(f"{path.name}: {type(e).__name__}, retrying in {wait} s")
            time.sleep(wait)


def _download_once(url: str, part: Path) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        if response.status_code == 416:  # the part file already holds every byte
            return
        if response.status_code >= 400:
            raise SvqbenchError(f"{url}: HTTP {response.status_code}; pass --url with a mirror")
        if response.status_code != 206:  # server ignored the range: start over
            have = 0
        total = int(response.headers.get("Content-Length", 0)) + have or None
        columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with open(part, "ab" if have else "wb") as f, Progress(*columns, console=console) as bar:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=have)
            for block in response.iter_content(CHUNK):
                f.write(block)
                bar.advance(task, len(block))
