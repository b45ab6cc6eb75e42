"""One optimiser step: what ``train`` runs on every batch and what ``bench`` times.

The forward pass is :func:`~svqbench.models.training_forecast` (the recurrent models see the targets for
scheduled sampling), under autocast, with every random draw keyed by (seed, step, index of the sample in the
global batch) and the input perturbation applied first; the loss adds the model's auxiliary loss; backward
goes through the grad scaler (active for fp16 only), then clipping, then the optimiser. Bookkeeping
(schedule, divergence flag, counters, logging) stays with the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from svqbench.engine.machine import autocast
from svqbench.engine.world import World
from svqbench.keyed import keyed_step, perturb
from svqbench.models import training_forecast

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepSettings:
    """The recipe settings a step reads (``train.*``)."""

    seed: int
    precision: str = "fp32"
    perturb_ratio: float = 0.0
    clip_grad: float = 0.0


@dataclass
class StepResult:
    loss: torch.Tensor  # the global batch's mean loss, a device scalar (no host sync)
    grad_norm: torch.Tensor | None  # clipped-gradient norm when clipping or asked for, else None
    total_grad_norm: torch.Tensor | None  # sum of per-tensor norms for the divergence flag; None under fp16


def optimiser_step(
    module: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: Loss,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: StepSettings,
    step: int,
    first_sample: int = 0,
    world: World | None = None,
    want_grad_norm: bool = False,
) -> StepResult:
    """One step on this rank's slice ``inputs`` (B/world, T_in, C, H, W), ``targets`` (B/world, T_out, C, H, W),
    both already on the device. ``module`` is what the step calls (the model or its DDP/compiled wrapper),
    ``model`` the bare model whose parameters are clipped and checked."""
    world = world or World()
    with keyed_step(settings.seed, step, first_sample, len(inputs)) as key, autocast(inputs.device, settings.precision):
        inputs = perturb(inputs, settings.perturb_ratio, key)
        out = training_forecast(module, inputs, targets, step)
        loss = loss_fn(out.frames.float(), targets) + out.aux_loss
    # equal slices on every rank: the mean over ranks is the global batch's mean
    global_loss = world.sum(loss.detach().float().clone()) / world.size
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grad_norm = None
    if settings.clip_grad or want_grad_norm:
        # without clipping the norm is still computed (with an infinite bound) for the loggers
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(trainable, settings.clip_grad or math.inf)
    grads = [p.grad for p in trainable if p.grad is not None]
    # fp16: the grad scaler skips steps with overflowing gradients by design; those are not divergence
    total = None if scaler.is_enabled() or not grads else torch.stack(torch._foreach_norm(grads)).sum()
    scaler.step(optimizer)
    scaler.update()
    return StepResult(global_loss, grad_norm, total)
