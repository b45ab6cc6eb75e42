"""The malloc tuning applies on glibc Linux and can be switched off."""

from __future__ import annotations

import subprocess
import sys

import pytest

from svqbench.engine.allocator import keep_freed_memory


def test_opt_out(monkeypatch):
    monkeypatch.setenv("SVQBENCH_MALLOC", "default")
    assert keep_freed_memory() is False


def _has_glibc_mallopt() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_glibc_mallopt(), reason="needs glibc")
def test_applies_in_a_fresh_process():
    code = "from svqbench.engine.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
