"""``persistence``: repeat the last input frame. The sanity floor every table should carry."""

from __future__ import annotations

import torch
from torch import nn

from svqbench.models.base import MODELS, Forecast
from svqbench.models.shape import ClipShape


class Persistence(nn.Module):
    def __init__(self, targets: tuple[int, ...] = ()):
        super().__init__()
        self.targets = list(targets)

    def forward(self, inputs: torch.Tensor) -> Forecast:
        """inputs (B, T, C, H, W) -> the last frame repeated T times: (B, T, C_out, H, W), its target channels."""
        last = inputs[:, -1:, self.targets] if self.targets else inputs[:, -1:]
        frames = last.expand(inputs.shape[0], inputs.shape[1], *last.shape[2:])
        return Forecast(frames, inputs.new_zeros(()))


@MODELS.register("persistence")
def persistence(shape: ClipShape) -> Persistence:
    return Persistence(shape.targets)
