"""LPIPS v0.1 with AlexNet features, in plain torch (no torchvision, no network at evaluation).

Shapes: frames (N, C, H, W) in [0, 1] with C = 1 (grey, replicated to RGB) or 3 -> (N,) distances.

Per frame: scale to [-1, 1], shift/scale per RGB channel, take the five ReLU outputs of AlexNet,
unit-normalise each feature vector over channels, square the difference, weight channels with the
learned non-negative calibration, average over space, sum over the five layers.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from svqbench.errors import SvqbenchError
from svqbench.metrics.lpips_weights import ensure_lpips_weights, load_state

# (out channels, kernel, stride, padding, max-pool before the conv) of AlexNet's five conv layers
_ALEXNET = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False), (256, 3, 1, 1, False))
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
# Frames per forward pass: bounds activation memory for large frames (the first layer of 256x256 is 4 MB a frame).
_PIXELS_PER_CHUNK = 1 << 22


class LpipsAlexNet(nn.Module):
    """AlexNet-LPIPS v0.1; ``forward(pred, true)`` on (N, C, H, W) frames in [0, 1] returns (N,) float32."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        in_channels = 3
        self.features = nn.ModuleList()
        for out_channels, kernel, stride, padding, _ in _ALEXNET:
            self.features.append(nn.Conv2d(in_channels, out_channels, kernel, stride, padding))
            in_channels = out_channels
        self.lin = nn.ModuleList(nn.Conv2d(conv.out_channels, 1, 1, bias=False) for conv in self.features)
        self.load_state_dict(state)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) in [-1, 1] -> the five ReLU outputs, each unit-normalised over channels."""
        x = (images - self.shift) / self.scale
        outputs = []
        for conv, (_, _, _, _, pool_first) in zip(self.features, _ALEXNET):
            if pool_first:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            outputs.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + _EPS))
        return outputs

    def _distance(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        both = torch.cat([pred, true]) * 2.0 - 1.0
        if both.shape[1] == 1:
            both = both.expand(-1, 3, -1, -1)
        distance = 0.0
        for lin, features in zip(self.lin, self._activations(both)):
            pred_features, true_features = features.chunk(2)
            distance = distance + lin((pred_features - true_features).square()).mean(dim=(1, 2, 3))
        return distance

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        if pred.shape[1] not in (1, 3):
            raise SvqbenchError(f"lpips needs grey or RGB frames (1 or 3 channels); got {pred.shape[1]} channels")
        pred, true = pred.float(), true.float()
        chunk = max(1, _PIXELS_PER_CHUNK // math.prod(pred.shape[-2:]))
        return torch.cat([self._distance(p, t) for p, t in zip(pred.split(chunk), true.split(chunk))])


def load_lpips(device: torch.device, weights: str | os.PathLike | None = None) -> LpipsAlexNet:
    """LPIPS on ``device`` from the weights resolved by ``ensure_lpips_weights(weights)``."""
    return LpipsAlexNet(load_state(ensure_lpips_weights(weights))).to(device)
