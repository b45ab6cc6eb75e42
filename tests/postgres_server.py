"""A throwaway PostgreSQL server for the tuning tests: ``$SVQBENCH_TEST_POSTGRES`` when set (``.ci/run`` starts one),
else a cluster of Debian's ``postgresql`` package started here as the ``postgres`` user in a temporary folder, on
a free port with its socket in that folder. ``start()`` returns ``(url, stop)`` or raises :class:`Unavailable`
saying why no server could be had."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable

ENV = "SVQBENCH_TEST_POSTGRES"


class Unavailable(Exception):
    pass


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unavailable("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() == 0:
        runner = shutil.which("runuser")
        if runner is None:
            raise Unavailable("running as root without runuser to start the server as the postgres user")
        return [runner, "-u", "postgres", "--", *command]
    return list(command)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_database(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server at ``url`` (so tests never share trials), dropped by the returned stop."""
    import psycopg

    name = f"svqbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    address, question, query = url.partition("?")
    database_url = f"{address.rpartition('/')[0]}/{name}{question}{query}"

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return database_url, drop


def start() -> tuple[str, Callable[[], None]]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed (pip install 'svqbench[tune]')") from None
    if os.environ.get(ENV):
        return _create_database(os.environ[ENV])
    bin_dir = _binaries()
    folder = Path(tempfile.mkdtemp(prefix="svqbench-pg-"))
    data_dir = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()
    try:
        subprocess.run(
            _as_postgres(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust"),
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            _as_postgres(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=''",
                "-l",
                str(folder / "server.log"),
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        detail = getattr(e, "stderr", b"") or b""
        raise Unavailable(f"a PostgreSQL cluster could not be started: {detail.decode(errors='replace')[:200]}") from e
    url = f"postgresql://postgres@/postgres?host={folder}&port={port}"

    def stop() -> None:
        subprocess.run(
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)

    database_url, drop = _create_database(url)

    def stop_all() -> None:
        drop()
        stop()

    return database_url, stop_all
