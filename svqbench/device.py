"""``--device auto|cpu|cuda[:N]`` -> torch.device, with a one-line error when it cannot work."""

from __future__ import annotations

import re

import torch

from svqbench.errors import SvqbenchError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks the first CUDA GPU when there is one, else the CPU."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise SvqbenchError(f"--device {spec!r}: valid values are auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise SvqbenchError(f"--device {spec}: no CUDA GPU is visible to torch; use --device cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise SvqbenchError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)
