"""Loaders and batch order.

Batch order is a pure function of ``(seed, epoch)``: resuming skips the batches already done instead of
pickling loader state, and every world size sees the same global batches (each rank loads its slice).
"""

from __future__ import annotations

import random
import signal
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

if TYPE_CHECKING:
    from svqbench.engine.world import World


def epoch_aware(dataset) -> Any | None:
    """The dataset (possibly inside a Subset) that draws new samples per epoch via ``set_epoch``, if any."""
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    return inner if hasattr(inner, "set_epoch") else None


def init_worker(worker_id: int) -> None:
    """Loader workers seed python and numpy from their torch seed, which the loader's generator fixes.

    They ignore Ctrl-C: the main process stops the loop at a consistent point and ends them.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class PlannedBatches:
    """A batch sampler whose index lists are set before each pass, so that one DataLoader (and its
    persistent workers) serves every epoch of a run."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    device: torch.device,
    batches: list[list[int]] | PlannedBatches | None = None,
    seed: int = 0,
    persistent: bool = False,
) -> DataLoader:
    """In-order batches of ``batch_size``, or exactly the index lists ``batches``.

    ``seed`` fixes the loader's generator, hence every worker's seed; the global RNG is never drawn from.
    ``persistent`` keeps the workers alive between passes (their copy of the dataset then never changes).
    """
    common = dict(
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=init_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=persistent and workers > 0,
    )
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, **common)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)


def epoch_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled window order of ``epoch``: a pure function of (seed, epoch)."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))


def steps_per_epoch(length: int, batch_size: int) -> int:
    """Full global batches per epoch (a split smaller than a batch is one batch)."""
    return max(1, length // batch_size)


def rank_batches(
    length: int, batch_size: int, seed: int, epoch: int, start: int, count: int, world: "World"
) -> list[list[int]]:
    """Window indices this rank loads for global batches ``start .. start+count-1`` of ``epoch``.

    Each global batch of ``batch_size`` windows is cut into ``world_size`` contiguous equal slices.
    """
    batch_size = min(batch_size, length)
    order = epoch_order(length, seed, epoch)
    per_rank = batch_size // world.size
    batches = []
    for index in range(start, start + count):
        first = index * batch_size + world.rank * per_rank
        batches.append(order[first : first + per_rank].tolist())
    return batches


def evenly_spaced(length: int, samples: int) -> list[int]:
    """``samples`` indices spread over ``range(length)`` (all of them when ``samples`` is 0 or too many)."""
    if not samples or samples >= length:
        return list(range(length))
    return np.unique(np.linspace(0, length - 1, samples).round().astype(int)).tolist()
