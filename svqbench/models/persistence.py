"""``persistence``: repeat the last input frame. The sanity floor every table should carry."""

from __future__ import annotations

import torch
from torch import nn

from svqbench.models.base import MODELS, Forecast
from svqbench.models.shape import ClipShape


class Persistence(nn.Module):
    def forward(self, inputs: torch.Tensor) -> Forecast:
        """inputs (B, T, C, H, W) -> the last frame repeated T times."""
        frames = inputs[:, -1:].expand_as(inputs)
        return Forecast(frames, inputs.new_zeros(()))


@MODELS.register("persistence")
def persistence(shape: ClipShape) -> Persistence:
    return Persistence()
