"""LPIPS v0.1 with AlexNet features, in plain torch (no torchvision, no network at evaluation).

Shapes: frames (N, C, H, W) in [0, 1] with C = 1 (grey, replicated to RGB) or 3 -> (N,) distances.

Per frame: scale to [-1, 1], shift/scale per RGB channel, take the five ReLU outputs of AlexNet,
unit-normalise each feature vector over channels, square the difference, weight channels with the
learned non-negative calibration, average over space, sum over the five layers.

Arranged for speed, with the same values up to float32 rounding:
- the input affine maps ([0,1] -> [-1,1], then shift/scale) are folded into the first convolution:
  its weights absorb the scales (summed over RGB for grey frames, so grey runs one input channel) and
  the constant part becomes a bias map that depends only on the frame size, because the zero padding
  applies after the affine maps;
- the calibration weights are applied after the spatial mean (both are linear);
- the 11x11 stride-4 first convolution runs as a 3x3 convolution over the 16 pixel phases;
- activations are channels-last and processed a few frames at a time so they stay in cache.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from svqbench.errors import SvqbenchError
from svqbench.metrics.lpips_weights import ensure_lpips_weights, load_state

# (out channels, kernel, stride, padding, max-pool before the conv) of AlexNet's five conv layers
_ALEXNET = (
    (64, 11, 4, 2, False),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, True),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, False),
)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
# smallest side for which every AlexNet layer still has a 3x3 input to pool
_MIN_SIZE = 31
# Input pixels per forward pass on CPU: first-layer activations of this many pixels (~1/16 of them
# times 64 channels, float32) stay within a few MB of cache. GPUs take the whole batch.
_CPU_PIXELS_PER_CHUNK = 1 << 18


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
        self.eval().requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        scale = torch.tensor(_SCALE).view(1, 3, 1, 1)
        # pixel p in [0,1] enters as (2p - 1 - shift) / scale = p * (2 / scale) + (-1 - shift) / scale
        rgb_weight = self.features[0].weight * (2.0 / scale)
        self.register_buffer("rgb_weight", _phase_weight(rgb_weight), persistent=False)
        self.register_buffer("grey_weight", _phase_weight(rgb_weight.sum(dim=1, keepdim=True)), persistent=False)
        self.register_buffer("input_offset", (-1.0 - torch.tensor(_SHIFT).view(1, 3, 1, 1)) / scale, persistent=False)
        self._bias_maps: dict[tuple, torch.Tensor] = {}

    def _first_layer_bias(self, height: int, width: int) -> torch.Tensor:
        """(1, 64, H', W'): the first convolution of the constant input offset plus its bias."""
        key = (height, width, self.input_offset.device)
        if key not in self._bias_maps:
            first = self.features[0]
            constant = self.input_offset.expand(1, 3, height, width)
            self._bias_maps[key] = F.conv2d(constant, first.weight, first.bias, first.stride, first.padding)
        return self._bias_maps[key]

    def _layer_distances(self, frames: torch.Tensor) -> torch.Tensor:
        """(2N, C, H, W) = [pred; true] in [0, 1] -> (N,) distance summed over the five layers."""
        weight = self.grey_weight if frames.shape[1] == 1 else self.rgb_weight
        x = F.conv2d(_phase_split(frames), weight) + self._first_layer_bias(*frames.shape[-2:])
        distance = torch.zeros(frames.shape[0] // 2, device=frames.device)
        for index, (conv, lin, (_, _, _, _, pool_first)) in enumerate(zip(self.features, self.lin, _ALEXNET)):
            if index > 0:
                if pool_first:
                    x = F.max_pool2d(x, kernel_size=3, stride=2)
                x = conv(x)
            x = F.relu_(x)
            unit = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + _EPS)
            pred_unit, true_unit = unit.chunk(2)
            channel_means = (pred_unit - true_unit).square().mean(dim=(2, 3))
            distance = distance + channel_means @ lin.weight.view(-1)
        return distance

    def reference_distance(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The textbook computation, one step after the other (slow): what ``forward`` must equal."""
        _check_frames(pred)
        shift, scale = torch.tensor(_SHIFT).view(1, 3, 1, 1), torch.tensor(_SCALE).view(1, 3, 1, 1)
        images = [
            ((x.float() * 2 - 1).expand(-1, 3, -1, -1) - shift.to(x.device)) / scale.to(x.device) for x in (pred, true)
        ]
        distance = 0.0
        for conv, lin, (_, _, _, _, pool_first) in zip(self.features, self.lin, _ALEXNET):
            units = []
            for index, x in enumerate(images):
                if pool_first:
                    x = F.max_pool2d(x, kernel_size=3, stride=2)
                x = F.relu(F.conv2d(x.contiguous(), conv.weight, conv.bias, conv.stride, conv.padding))
                images[index] = x
                units.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + _EPS))
            distance = distance + F.conv2d((units[0] - units[1]).square(), lin.weight).mean(dim=(1, 2, 3))
        return distance

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        _check_frames(pred)
        pred, true = pred.float(), true.float()
        if pred.device.type != "cpu":
            return self._layer_distances(torch.cat([pred, true]))
        chunk = max(1, _CPU_PIXELS_PER_CHUNK // math.prod(pred.shape[-2:]))
        return torch.cat(
            [self._layer_distances(torch.cat([p, t])) for p, t in zip(pred.split(chunk), true.split(chunk))]
        )


def _check_frames(frames: torch.Tensor) -> None:
    if frames.shape[1] not in (1, 3):
        raise SvqbenchError(f"lpips needs grey or RGB frames (1 or 3 channels); got {frames.shape[1]} channels")
    if min(frames.shape[-2:]) < _MIN_SIZE:
        raise SvqbenchError(f"lpips needs frames of at least {_MIN_SIZE}x{_MIN_SIZE}; got {tuple(frames.shape[-2:])}")


def _phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """First-layer kernel (64, C, 11, 11), stride 4 -> equivalent (64, 16 C, 3, 3) kernel, stride 1.

    Zero-padded to 12x12, tap (4i + a, 4j + b) of input channel c moves to tap (i, j) of channel
    16 c + 4 a + b: the channel order of ``pixel_unshuffle(x, 4)``.
    """
    out_channels, in_channels = weight.shape[:2]
    padded = F.pad(weight, (0, 1, 0, 1)).view(out_channels, in_channels, 3, 4, 3, 4)
    phases = padded.permute(0, 1, 3, 5, 2, 4).reshape(out_channels, 16 * in_channels, 3, 3)
    return phases.contiguous(memory_format=torch.channels_last)


def _phase_split(frames: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 16 C, H'+2, W'+2) phases of the input padded by 2 (H' = first-layer output height).

    An 11x11 stride-4 convolution on one or three channels is a poor fit for the CPU convolution
    kernels; as a 3x3 stride-1 convolution over the 16 phases it runs several times faster.
    """
    height, width = frames.shape[-2:]
    out_height, out_width = (height - 7) // 4 + 1, (width - 7) // 4 + 1
    # pad 2 on the top/left as AlexNet does; bottom/right up to a multiple of 4 (extra rows meet zero taps)
    padded = F.pad(frames, (2, 4 * (out_width + 2) - width - 2, 2, 4 * (out_height + 2) - height - 2))
    return F.pixel_unshuffle(padded, 4).contiguous(memory_format=torch.channels_last)


def load_lpips(device: torch.device, weights: str | os.PathLike | None = None) -> LpipsAlexNet:
    """LPIPS on ``device`` from the weights resolved by ``ensure_lpips_weights(weights)``.

    Shared between callers (it holds only weights and a cache of bias maps), so repeated ``compute`` calls
    during training read the weight file once.
    """
    return _load_lpips(torch.device(device), ensure_lpips_weights(weights))


@functools.lru_cache(maxsize=4)
def _load_lpips(device: torch.device, path: Path) -> LpipsAlexNet:
    return LpipsAlexNet(load_state(path)).to(device)
