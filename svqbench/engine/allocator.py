"""Keep freed host memory for reuse instead of handing it back to the OS (glibc malloc tuning).

A training step allocates and frees the same large activation tensors every step. glibc serves
blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` calls and unmaps them on free,
so every step page-faults all its activations in again. Measured at the KTH config (SimVP, batch 4,
2 cores): 2-4 million page faults and as much kernel time as compute per step; with mmap disabled
for large blocks and heap trimming off, the faults vanish and the step takes half the time. The
tensors are the same, so the peak memory is about the same. CUDA memory has its own caching
allocator and is not affected. ``SVQBENCH_MALLOC=default`` keeps glibc's behaviour.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for reuse; returns whether it applied (Linux with glibc, not opted out)."""
    if os.environ.get("SVQBENCH_MALLOC", "reuse") != "reuse" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    # -1 as the trim threshold means "never trim" (it is read as the largest size_t).
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
