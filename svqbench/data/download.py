"""Source files of a dataset: found in ``--src``, or downloaded with resume, retries and checksums.

Downloads land in ``ROOT/downloads/`` (kept between preps, so an interrupted download resumes from
its ``.part`` file and a forced re-prep does not download again a file that matched its published checksum; one
without a published checksum is fetched again under ``--force`` or from another ``--url``, since nothing proves it
whole). A file is accepted only when it
matches its published checksum (a download that does not is deleted and fetched once more; a ``--src``
file that does not is refused unless the user trusts it with ``--trust-src``, which the manifest and every
leaderboard row then record); files without a published one get their sha256 printed and stored in a
``.sha256`` file next to them and in the dataset manifest. HTTP 5xx answers are retried like dropped
connections.

pooch was considered; it cannot resume a partial file, which matters for multi-GB archives on
flaky links, so this module does the HTTP part itself with ``requests``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import requests
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from svqbench.errors import SvqbenchError

RETRIES = 5
RETRY_WAIT = 1.0  # seconds before the first retry; doubled each time
CHUNK = 1 << 20
console = Console(stderr=True)


@dataclass(frozen=True)
class Source:
    """One file a dataset is built from: its name, where it is published, its known checksum."""

    filename: str
    url: str
    sha256: str = ""
    md5: str = ""


class _ServerError(Exception):
    """An HTTP 5xx answer: the server's trouble, retried like a dropped connection."""


_TRUSTED: list[bool] = [False]  # set by trusting_src() while a prep runs with --trust-src
_TRUSTED_FILES: list[str] = []  # what trusting_src() let through


@contextmanager
def trusting_src(trust: bool) -> Iterator[list[str]]:
    """While active (with ``trust``), ``--src`` files whose checksum differs from the published one are used
    instead of refused; yields the list that names each file so used (for the manifest)."""
    _TRUSTED[0] = trust
    _TRUSTED_FILES.clear()
    try:
        yield _TRUSTED_FILES
    finally:
        _TRUSTED[0] = False


_REFETCH: list[bool] = [False]  # set by refetching() while a prep runs with --force


@contextmanager
def refetching(force: bool) -> Iterator[None]:
    """While active (with ``force``), cached downloads without a published checksum are fetched again: nothing
    proves such a file complete (a transfer cut off without a Content-Length looks like a whole one)."""
    _REFETCH[0] = force
    try:
        yield
    finally:
        _REFETCH[0] = False


def _cached(path: Path, recorded: Path, source: Source, origin: str) -> str | None:
    """The sha256 of a cached download that may be reused, else None: a file with a published checksum was
    verified against it; one without is reused only when fetched from the same address and not under --force."""
    if not (path.is_file() and recorded.is_file()):
        return None
    sha256, _, fetched_from = recorded.read_text().strip().partition(" ")
    if source.sha256 or source.md5:
        return sha256
    if _REFETCH[0] or fetched_from.strip() != origin:
        return None
    return sha256


def join_url(base: str, name: str) -> str:
    """``base`` (a mirror folder, with or without a trailing slash) joined with a file ``name``."""
    return base.rstrip("/") + "/" + name


def download_dir(target: Path) -> Path:
    """The download cache of the data root that the temporary prep folder ``target`` lives in."""
    return target.parent / "downloads"


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, source: Source, hint: str = "") -> str:
    """Check ``path`` against the published checksum of ``source``; return its sha256."""
    sha256 = file_hash(path)
    if source.sha256 and sha256 != source.sha256:
        raise SvqbenchError(f"{path}: sha256 {sha256} does not match the published {source.sha256}{hint}")
    if source.md5:
        md5 = file_hash(path, "md5")
        if md5 != source.md5:
            raise SvqbenchError(f"{path}: md5 {md5} does not match the published {source.md5}{hint}")
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
            raise SvqbenchError(f"{source.filename} not found in --src {src}; it is published at {source.url}")
        record = {"file": source.filename, "origin": str(path)}
        try:
            return path, {**record, "sha256": verify(path, source, "; use --trust-src to prepare from it anyway")}
        except SvqbenchError:
            if not _TRUSTED[0]:
                raise
            published = source.sha256 or f"md5 {source.md5}"
            console.print(f"{path}: checksum differs from the published {published}; used because of --trust-src")
            sha256 = file_hash(path)
            _TRUSTED_FILES.append(f"{source.filename} (sha256 {sha256}; published {published})")
            return path, {**record, "sha256": sha256, "trusted": True, "published": published}
    cache = download_dir(target)
    path = cache / source.filename
    recorded = path.with_name(path.name + ".sha256")
    origin = url or source.url
    sha256 = _cached(path, recorded, source, origin)
    if sha256 is None:
        cache.mkdir(parents=True, exist_ok=True)
        if path.is_file():  # a cached file not to reuse (--force, another --url): its part proves nothing either
            path.unlink()
            path.with_name(path.name + ".part").unlink(missing_ok=True)
        for attempt in (1, 2):  # a download that fails its checksum is deleted and fetched once more
            download(origin, path, mirror=bool(url))
            try:
                sha256 = verify(path, source)
                break
            except SvqbenchError:
                path.unlink()  # a bad download is never kept, so never trusted by the next run
                if attempt == 2:
                    raise
                console.print(f"{path.name}: checksum does not match the published one; fetching it again")
        recorded.write_text(f"{sha256} {origin}\n")  # the address too: another --url fetches anew
    return path, {"file": source.filename, "sha256": sha256, "origin": origin}


def download(url: str, path: Path, mirror: bool = False) -> None:
    """Download ``url`` to ``path`` through ``path.part``, resuming it and retrying with backoff (dropped
    connections, timeouts and HTTP 5xx). ``mirror``: ``url`` came from ``--url``."""
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
            _download_once(url, part, mirror)
            part.replace(path)
            return
        except requests.TooManyRedirects:
            raise SvqbenchError(
                f"{url}: the server redirects in a loop (over {requests.models.DEFAULT_REDIRECT_LIMIT} redirects); "
                "check the --url address"
            ) from None
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            _ServerError,
        ) as e:
            reason = str(e) if isinstance(e, _ServerError) else type(e).__name__
            if attempt == RETRIES - 1:
                raise SvqbenchError(
                    f"{url}: download failed after {RETRIES} attempts ({reason}); "
                    f"re-run to resume {part}, or pass --src with the file"
                ) from None
            wait = RETRY_WAIT * 2**attempt
            console.print(f"{path.name}: {reason}, retrying in {wait:g} s")
            time.sleep(wait)


def _download_once(url: str, part: Path, mirror: bool = False) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        if response.status_code == 416:  # the part file already holds every byte
            return
        if response.status_code >= 500:
            raise _ServerError(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            advice = "check the --url address" if mirror else "pass --url with a mirror, or --src with the file"
            raise SvqbenchError(f"{url}: HTTP {response.status_code}; {advice}")
        if response.status_code != 206:  # server ignored the range: start over
            have = 0
        total = int(response.headers.get("Content-Length", 0)) + have or None
        columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with open(part, "ab" if have else "wb") as f, Progress(*columns, console=console) as bar:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=have)
            for block in response.iter_content(CHUNK):
                f.write(block)
                bar.advance(task, len(block))
