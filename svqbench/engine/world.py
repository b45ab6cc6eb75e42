"""This process among torchrun's: the process group, the global RNG states a checkpoint captures, and Ctrl-C."""

from __future__ import annotations

import atexit
import os
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from svqbench.errors import SvqbenchError


@dataclass(frozen=True)
class World:
    """This process's place among the processes ``torchrun`` started (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (even as 1 process): joins a process group, trains under DDP

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, length: int) -> range:
        """This rank's contiguous share of ``range(length)``; shares differ by at most one."""
        return range(length * self.rank // self.size, length * (self.rank + 1) // self.size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all ranks (in place)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def gather_concatenated(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each name's arrays of all ranks, concatenated in rank order (with contiguous shards: sample order)."""
        if self.size == 1:
            return arrays
        shares: list[dict[str, np.ndarray]] = [{} for _ in range(self.size)]
        dist.all_gather_object(shares, arrays)
        return {name: np.concatenate([share[name] for share in shares]) for name in arrays}

    def gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (picklable objects)."""
        if self.size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast_state(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank."""
        if self.size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)


def launched_world() -> World:
    """The world described by torchrun's environment variables."""
    return World(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
        launched="RANK" in os.environ,
    )


def join_world(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group, once per process: gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK.

    A process not started by torchrun joins nothing. The group is left at exit.
    """
    world = launched_world()
    if not world.launched:
        return world, device
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            visible = torch.cuda.device_count()
            raise SvqbenchError(
                f"local rank {world.local_rank} has no GPU: only {visible} visible; start torchrun with "
                f"--nproc_per_node {visible} (a run resumes at any world size that divides "
                "train.batch_size)"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_group)
    return world, device


def leave_world() -> None:
    """After a command that every rank completed: wait for all ranks, then leave the process group.

    Leaving it explicitly, with every rank done, rather than during interpreter shutdown: a gloo group torn
    down at exit while another rank still talks to it aborted a process ("terminate called without an
    active exception") in a loaded test run.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _destroy_group() -> None:
    if dist.is_initialized():  # a command that failed on this rank: leave without waiting for the others
        dist.destroy_process_group()


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's global RNG states (python, numpy, torch CPU, and the GPU it trains on), in types a
    ``weights_only`` checkpoint load accepts."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
    }


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state`'s states; the GPU state goes to ``device``, whatever GPU saved it (older
    checkpoints hold one state per GPU visible then: the one of the same index, else the first)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    saved = state["cuda"]
    if saved and device.type == "cuda":
        index = device.index or 0
        torch.cuda.set_rng_state(saved[index if index < len(saved) else 0].cpu(), device)


class InterruptRequest:
    """Ctrl-C while active only sets ``requested``; the loop stops at a consistent point. A second Ctrl-C stops now."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def active(self) -> Iterator["InterruptRequest"]:
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C cannot reach us here anyway
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
