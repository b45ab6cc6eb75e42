"""SimVP translators: the temporal module between encoder and decoder, over (B, T*C, H, W) latents.

Layer shapes, inits and drop-path schedules follow OpenSTL's SimVP (v0.3.0, the base of the released
SVQ code), so parameter counts and starting points match its model zoo.

Every registered factory has the signature
    (channels_in, channels_hid, depth, *, input_resolution, mlp_ratio=8.0, drop=0.0, drop_path=0.0)
and returns a module mapping (B, channels_in, H, W) -> (B, channels_in, H, W), where
channels_in = T * hid_S and (H, W) = input_resolution.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.registry import Registry

TRANSLATORS: Registry[Callable[..., nn.Module]] = Registry("translator")

BlockFactory = Callable[[int, float, int], nn.Module]  # (channels, drop_path, layer_index) -> block


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability p, rescale the rest."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def drop_path_or_identity(p: float) -> nn.Module:
    return DropPath(p) if p > 0.0 else nn.Identity()


def init_fan_out_normal(module: nn.Module) -> None:
    """OpenSTL's conv init (normal, std sqrt(2 / fan_out), zero bias); norms reset to identity."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_linear_trunc_normal(module: nn.Module) -> None:
    """OpenSTL's transformer init: truncated normal (std 0.02) linears, identity layer norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_depth(name: str, depth: int) -> None:
    if depth < 2:
        raise SvqbenchError(f"translator {name!r}: depth (N_T) = {depth}; valid: an integer >= 2")


# ---------------------------------------------------------------------------------------------------
# IncepU (SimVP v1): inception blocks of grouped convolutions, arranged as a U-Net with skips.


class GroupConvNormAct(nn.Module):
    """Grouped conv -> GroupNorm -> LeakyReLU(0.2); falls back to one group when channels don't divide."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, groups: int):
        super().__init__()
        if channels_in % groups != 0:
            groups = 1
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, channels_out)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class InceptionBlock(nn.Module):
    """1x1 conv to `channels_hid`, then the sum of grouped convs of several kernel sizes (gInception_ST)."""

    def __init__(self, channels_in: int, channels_hid: int, channels_out: int, kernels: tuple[int, ...], groups: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels_in, channels_hid, 1)
        self.branches = nn.ModuleList(
            GroupConvNormAct(channels_hid, channels_out, kernel, groups) for kernel in kernels
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        return sum(branch(x) for branch in self.branches)


class IncepUTranslator(nn.Module):
    """(B, channels_in, H, W) -> same: `depth` inception blocks down, `depth` up, U-Net skips between."""

    def __init__(self, channels_in: int, channels_hid: int, depth: int, kernels=(3, 5, 7, 11), groups: int = 8):
        super().__init__()
        half = channels_hid // 2
        self.encoder = nn.ModuleList(
            InceptionBlock(channels_in if i == 0 else channels_hid, half, channels_hid, kernels, groups)
            for i in range(depth)
        )
        self.decoder = nn.ModuleList(
            InceptionBlock(
                channels_hid if i == 0 else 2 * channels_hid,
                half,
                channels_in if i == depth - 1 else channels_hid,
                kernels,
                groups,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.decoder[0](x)
        for block, skip in zip(self.decoder[1:], reversed(skips[:-1])):
            x = block(torch.cat([x, skip], dim=1))
        return x


@TRANSLATORS.register("incepu")
def incepu(
    channels_in: int,
    channels_hid: int,
    depth: int,
    *,
    input_resolution: tuple[int, int],
    mlp_ratio: float = 8.0,
    drop: float = 0.0,
    drop_path: float = 0.0,
) -> nn.Module:
    """SimVP v1's IncepU; resolution, mlp_ratio, drop and drop_path do not apply to it (as in OpenSTL)."""
    _check_depth("incepu", depth)
    return IncepUTranslator(channels_in, channels_hid, depth)


# ---------------------------------------------------------------------------------------------------
# MetaFormer-style translators (SimVP v2): a stack of same-resolution blocks; the first and last block
# work at their input width and are followed by a 1x1 conv to the next width.


class MetaLayer(nn.Module):
    """A block at `channels_in` width, then a 1x1 conv to `channels_out` when the widths differ."""

    def __init__(self, block: nn.Module, channels_in: int, channels_out: int):
        super().__init__()
        self.block = block
        self.reduction = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.block(x))


class MetaTranslator(nn.Module):
    """(B, channels_in, H, W) -> same: `depth` blocks, channels_in -> hid -> ... -> hid -> channels_in."""

    def __init__(self, channels_in: int, channels_hid: int, depth: int, drop_path: float, make_block: BlockFactory):
        super().__init__()
        # OpenSTL's schedule: linear from 0.01 to drop_path over the first depth-1 blocks' slots, the last
        # block at drop_path itself; so the early blocks use drop path even when drop_path is 0.
        rates = torch.linspace(1e-2, drop_path, depth).tolist()
        rates[-1] = drop_path
        widths = [channels_in] + [channels_hid] * (depth - 1) + [channels_in]
        self.layers = nn.Sequential(
            *(MetaLayer(make_block(widths[i], rates[i], i), widths[i], widths[i + 1]) for i in range(depth))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MixMlp(nn.Module):
    """1x1 conv -> 3x3 depthwise conv -> GELU -> 1x1 conv, with dropout (VAN's convolutional FFN)."""

    def __init__(self, channels: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


def _decomposed_kernel(kernel_size: int, dilation: int) -> tuple[int, int, int, int]:
    """A k x k receptive field as a small depthwise conv then a dilated one: (k0, pad0, k1, pad1)."""
    small = 2 * dilation - 1
    dilated = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
    return small, (small - 1) // 2, dilated, dilation * (dilated - 1) // 2


class GatedLargeKernelAttention(nn.Module):
    """gSTA's attention: depthwise k=5 conv, dilated depthwise conv, 1x1 to 2C, sigmoid(g) * f."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 3):
        super().__init__()
        small, small_pad, dilated, dilated_pad = _decomposed_kernel(kernel_size, dilation)
        self.conv0 = nn.Conv2d(channels, channels, small, padding=small_pad, groups=channels)
        self.conv_spatial = nn.Conv2d(
            channels, channels, dilated, padding=dilated_pad, groups=channels, dilation=dilation
        )
        self.conv1 = nn.Conv2d(channels, 2 * channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        values, gates = self.conv1(self.conv_spatial(self.conv0(x))).chunk(2, dim=1)
        return torch.sigmoid(gates) * values


class AttentionUnit(nn.Module):
    """1x1 conv -> GELU -> attention -> 1x1 conv, plus the input (shortcut)."""

    def __init__(self, channels: int, attention: nn.Module):
        super().__init__()
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = attention
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class AttentionMlpBlock(nn.Module):
    """x + s1 * attn(BN(x)), then x + s2 * MixMlp(BN(x)); layer scales s start at 1e-2 (gSTA, TAU)."""

    def __init__(self, channels: int, attention: nn.Module, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.attn = attention
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = MixMlp(channels, int(channels * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((channels, 1, 1), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((channels, 1, 1), 1e-2))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


def gsta_block(channels: int, mlp_ratio: float, drop: float, drop_path: float) -> nn.Module:
    attention = AttentionUnit(channels, GatedLargeKernelAttention(channels, kernel_size=21))
    block = AttentionMlpBlock(channels, attention, mlp_ratio, drop, drop_path)
    block.apply(init_fan_out_normal)
    return block


@TRANSLATORS.register("gsta")
def gsta(
    channels_in: int,
    channels_hid: int,
    depth: int,
    *,
    input_resolution: tuple[int, int],
    mlp_ratio: float = 8.0,
    drop: float = 0.0,
    drop_path: float = 0.0,
) -> nn.Module:
    """SimVP v2's gated spatio-temporal attention (gSTA) blocks."""
    _check_depth("gsta", depth)
    return MetaTranslator(
        channels_in, channels_hid, depth, drop_path, lambda c, rate, _: gsta_block(c, mlp_ratio, drop, rate)
    )
