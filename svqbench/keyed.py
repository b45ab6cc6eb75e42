"""Keyed randomness: every random draw of a training step is a function of (seed, step, sample, stream).

A sample is named by its index in the *global* batch (rank r of W holds samples r*B/W .. (r+1)*B/W - 1),
so what a sample draws does not depend on the world size, the rank or the slice, and a resumed run
replays a step's draws without any saved generator state.

:func:`keyed_step` opens the context around a training forward pass. Inside it, each random layer asks
for its draws by a stream name; a per-step counter tells apart several calls of the same kind (every
drop-path layer of a translator, every pass of a rollout), and the call order of a forward pass is the
same on every rank. Outside a context (a user calling ``model.train()`` by hand) the layers draw from
torch's global generator as usual.

>>> with keyed_step(seed=42, step=7, first_sample=8, samples=8):   # rank 1 of 2, global batch 16
...     coins = uniform("drop_path", rows=8, shape=(), device=x.device)   # (8,): samples 8..15
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch


@dataclass
class StepKey:
    """What keys the draws of one training step on this rank."""

    seed: int
    step: int
    first_sample: int  # index in the global batch of this rank's first sample
    samples: int  # samples on this rank
    calls: dict[str, int] = field(default_factory=dict)  # draws made so far, per stream

    def next_call(self, stream: str) -> int:
        index = self.calls.get(stream, 0)
        self.calls[stream] = index + 1
        return index


_CURRENT: ContextVar[StepKey | None] = ContextVar("svqbench_keyed_step", default=None)


@contextmanager
def keyed_step(seed: int, step: int, first_sample: int, samples: int) -> Iterator[StepKey]:
    """Key every draw made inside by (``seed``, ``step``, global sample index, stream)."""
    token = _CURRENT.set(StepKey(int(seed), int(step), int(first_sample), int(samples)))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def active() -> StepKey | None:
    """The current step's key, or None outside :func:`keyed_step`."""
    return _CURRENT.get()


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode())


def sample_seed(seed: int, step: int, sample: int, stream: str, call: int = 0) -> int:
    """A 63-bit generator seed for one sample's draws of one call in one step."""
    words = np.random.SeedSequence([seed, step, sample, _stream_id(stream), call]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def sample_generators(key: StepKey, stream: str, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample of this rank for the next call of ``stream`` (consumes one call)."""
    call = key.next_call(stream)
    return [
        torch.Generator(device=device).manual_seed(sample_seed(key.seed, key.step, key.first_sample + i, stream, call))
        for i in range(key.samples)
    ]


def uniform(
    stream: str, rows: int, shape: Sequence[int], device: torch.device | str, key: StepKey | None = None
) -> torch.Tensor:
    """(rows, *shape) uniforms in [0, 1), keyed per sample when a step key is active (or ``key`` given).

    ``rows`` must be a multiple of the samples on this rank, laid out sample-major (sample i owns rows
    i*k .. (i+1)*k - 1: a (B*N, ...) tensor reshaped from (B, N, ...)). Without a key: the global generator.
    """
    key = key or active()
    if key is None:
        return torch.rand((rows, *shape), device=device)
    if rows % key.samples:
        raise ValueError(f"{rows} rows cannot be split among the {key.samples} samples of the keyed step")
    per_sample = (rows // key.samples, *shape)
    draws = [torch.rand(per_sample, generator=g, device=device) for g in sample_generators(key, stream, device)]
    return torch.cat(draws)


def perturb(inputs: torch.Tensor, ratio: float, key: StepKey) -> torch.Tensor:
    """The released SVQ code's input perturbation, keyed per sample.

    In each sample, ``floor(ratio * T*C*H*W)`` values, chosen at random, are multiplied by a factor drawn
    uniformly from [-2, 2]; the others are kept. (The released code draws one such set over the whole
    batch tensor; per sample, the draws do not depend on how the batch is split among processes.)
    inputs (B, T, C, H, W) -> (B, T, C, H, W).
    """
    if ratio <= 0:
        return inputs
    values = inputs[0].numel()
    count = int(values * ratio)
    factors = torch.ones(inputs.shape[0], values, device=inputs.device, dtype=inputs.dtype)
    for row, generator in zip(factors, sample_generators(key, "perturb", inputs.device)):
        chosen = torch.randperm(values, generator=generator, device=inputs.device)[:count]
        draws = torch.rand(count, generator=generator, device=inputs.device) * 4.0 - 2.0
        row[chosen] = draws.to(inputs.dtype)
    return inputs * factors.view_as(inputs)
