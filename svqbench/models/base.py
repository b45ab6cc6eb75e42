"""The model registry and the forecast every model returns; model modules import both from here."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from svqbench.registry import Registry

# the one model registry: built-in model modules register here as svqbench.models imports them;
# installed packages join through entry points of this group
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", group="svqbench.models")


class Forecast(NamedTuple):
    frames: torch.Tensor  # (B, T, C, H, W)
    aux_loss: torch.Tensor  # scalar
