"""``blank``: predict every frame as the per-pixel median of the training targets.

The second floor next to ``persistence``: on sparse data (digits on black) the median frame is
black, and a model that has learned to predict nothing scores close to it. A table that carries
``blank`` shows such a degenerate model as one. It has no trainable parameters: ``fit`` computes the
median once, before training, from an evenly spaced subset of training windows, and keeps it as a
buffer so checkpoints carry it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from svqbench.models.base import MODELS, Forecast
from svqbench.models.shape import ClipShape

MAX_WINDOWS = 512  # enough for a stable median; bounds the memory (windows x T_out frames) and time


class Blank(nn.Module):
    def __init__(self, shape: ClipShape, max_windows: int = MAX_WINDOWS):
        super().__init__()
        self.frames_out = shape.frames_out
        self.max_windows = max_windows
        self.register_buffer("median", torch.zeros(shape.out_channels, shape.height, shape.width))

    @torch.no_grad()
    def fit(self, train_dataset: Dataset) -> None:
        """Set ``median`` (C, H, W) from all target frames of up to ``max_windows`` evenly spaced windows."""
        n = len(train_dataset)
        if n == 0:
            return
        picks = np.unique(np.linspace(0, n - 1, min(n, self.max_windows)).round().astype(int))
        targets = torch.cat([train_dataset[int(i)][1] for i in picks])  # (windows * T_out, C, H, W)
        self.median.copy_(targets.median(dim=0).values.to(self.median))

    def forward(self, inputs: torch.Tensor) -> Forecast:
        """inputs (B, T_in, C, H, W) -> the median frame repeated: (B, T_out, C, H, W)."""
        frames = self.median.to(inputs.dtype).expand(inputs.shape[0], self.frames_out, *self.median.shape)
        return Forecast(frames, inputs.new_zeros(()))


@MODELS.register("blank")
def blank(shape: ClipShape, max_windows: int = MAX_WINDOWS) -> Blank:
    return Blank(shape, max_windows)
