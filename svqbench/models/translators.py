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
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from svqbench import keyed
from svqbench.errors import SvqbenchError
from svqbench.registry import Registry

TRANSLATORS: Registry[Callable[..., nn.Module]] = Registry("translator")


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability p, rescale the rest.

    Its coins are keyed per sample in training steps (see svqbench.keyed), so they do not depend on the world size.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        coins = keyed.uniform("drop_path", x.shape[0], (1,) * (x.dim() - 1), x.device)
        return x * (coins < keep).to(x.dtype) / keep


class KeyedDropout(nn.Module):
    """Dropout whose masks are keyed per sample in training steps (see svqbench.keyed): x (B*, ...) -> same."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        coins = keyed.uniform("dropout", x.shape[0], tuple(x.shape[1:]), x.device)
        return x * (coins < keep).to(x.dtype) / keep


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


@dataclass(frozen=True)
class TranslatorSettings:
    """What every block of one translator shares."""

    input_resolution: tuple[int, int]
    mlp_ratio: float
    drop: float


# (channels_in, channels_hid, depth, drop_path, settings) -> translator
Construct = Callable[[int, int, int, float, TranslatorSettings], nn.Module]
# (channels, layer index, drop path, settings) -> one MetaFormer block
BlockFactory = Callable[[int, int, float, TranslatorSettings], nn.Module]
# (channels, layer index, drop path) -> one block of a given translator
MakeLayerBlock = Callable[[int, int, float], nn.Module]


def register_translator(name: str, construct: Construct) -> None:
    """Register `construct` under `name` behind the common factory signature (see the module docstring)."""

    def build(
        channels_in: int,
        channels_hid: int,
        depth: int,
        *,
        input_resolution: tuple[int, int],
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> nn.Module:
        _check_depth(name, depth)
        settings = TranslatorSettings(tuple(input_resolution), mlp_ratio, drop)
        return construct(channels_in, channels_hid, depth, drop_path, settings)

    TRANSLATORS.register(name)(build)


def register_meta_translator(name: str, make_block: BlockFactory) -> None:
    """Register a MetaTranslator (defined below) built of `make_block` blocks."""
    register_translator(
        name,
        lambda c_in, c_hid, depth, drop_path, settings: MetaTranslator(
            c_in, c_hid, depth, drop_path, lambda c, i, rate: make_block(c, i, rate, settings)
        ),
    )


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
        # Grouped convs read `half` channels; when it splits into `groups`, so must every width they write.
        for name, width in (("hid_T", channels_hid), ("T*hid_S", channels_in)):
            if half % groups == 0 and width % groups:
                raise SvqbenchError(
                    f"translator 'incepu': {name} = {width} channels do not split into its {groups} GroupNorm groups "
                    f"(hid_T/2 = {half} does); valid: {name} a multiple of {groups}, or hid_T/2 not a multiple of "
                    f"{groups}"
                )
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


# Resolution, mlp_ratio, drop and drop_path do not apply to IncepU (as in OpenSTL).
register_translator("incepu", lambda c_in, c_hid, depth, drop_path, settings: IncepUTranslator(c_in, c_hid, depth))


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

    def __init__(self, channels_in: int, channels_hid: int, depth: int, drop_path: float, make_block: MakeLayerBlock):
        super().__init__()
        # OpenSTL's schedule: linear from 0.01 to drop_path over the first depth-1 blocks' slots, the last
        # block at drop_path itself; so the early blocks use drop path even when drop_path is 0.
        rates = torch.linspace(1e-2, drop_path, depth, device="cpu").tolist()  # plain numbers, on any default device
        rates[-1] = drop_path
        widths = [channels_in] + [channels_hid] * (depth - 1) + [channels_in]
        self.layers = nn.Sequential(
            *(MetaLayer(make_block(widths[i], i, rates[i]), widths[i], widths[i + 1]) for i in range(depth))
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
        self.drop = KeyedDropout(drop)

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


register_meta_translator("gsta", lambda c, i, rate, s: gsta_block(c, s.mlp_ratio, s.drop, rate))


# ---------------------------------------------------------------------------------------------------
# TAU: gSTA's block with a temporal attention (large-kernel attention times a squeeze-excitation gate).


class TemporalAttention(nn.Module):
    """Depthwise + dilated depthwise convs and a 1x1 conv, times an SE gate over channels, times the input."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 3, reduction: int = 16):
        super().__init__()
        small, small_pad, dilated, dilated_pad = _decomposed_kernel(kernel_size, dilation)
        self.conv0 = nn.Conv2d(channels, channels, small, padding=small_pad, groups=channels)
        self.conv_spatial = nn.Conv2d(
            channels, channels, dilated, padding=dilated_pad, groups=channels, dilation=dilation
        )
        self.conv1 = nn.Conv2d(channels, channels, 1)
        squeezed = channels // max(channels // reduction, 4)
        self.fc = nn.Sequential(
            nn.Linear(channels, squeezed, bias=False),
            nn.ReLU(),
            nn.Linear(squeezed, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        statical = self.conv1(self.conv_spatial(self.conv0(x)))
        dynamical = self.fc(x.mean(dim=(2, 3)))[:, :, None, None]
        return dynamical * statical * x


def tau_block(channels: int, mlp_ratio: float, drop: float, drop_path: float) -> nn.Module:
    block = gsta_block(channels, mlp_ratio, drop, drop_path)
    # OpenSTL swaps the attention in after initialising the block: it keeps PyTorch's default init.
    block.attn = AttentionUnit(channels, TemporalAttention(channels, kernel_size=21))
    return block


register_meta_translator("tau", lambda c, i, rate, s: tau_block(c, s.mlp_ratio, s.drop, rate))


# ---------------------------------------------------------------------------------------------------
# ConvNeXt: depthwise 7x7 conv, channel LayerNorm, 1x1-conv MLP, layer scale 1e-6.


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, channels: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        hidden = int(mlp_ratio * channels)
        self.conv_dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = ChannelLayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), 1e-6))
        self.drop_path = drop_path_or_identity(drop_path)
        self.apply(init_fan_out_normal)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.gamma * self.mlp(self.norm(self.conv_dw(x))))


# OpenSTL's ConvNeXt block has no dropout: `drop` does not apply.
register_meta_translator("convnext", lambda c, i, rate, s: ConvNeXtBlock(c, s.mlp_ratio, rate))


# ---------------------------------------------------------------------------------------------------
# Swin: windowed multi-head self-attention with a relative position bias, shifted on odd layers.


def swin_window(input_resolution: tuple[int, int], layer_index: int) -> tuple[int, int]:
    """OpenSTL's (window size, shift) for a latent of this size: 7 when the height is a multiple of 7,
    else max(4, height // 16), at most 8; a window no smaller than the map covers it, unshifted."""
    height = input_resolution[0]
    window = min(8, 7 if height % 7 == 0 else max(4, height // 16))
    shift = 0 if layer_index % 2 == 0 else window // 2
    if min(input_resolution) <= window:
        return min(input_resolution), 0
    return window, shift


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (window x window) token groups, plus a learnt relative bias."""

    def __init__(self, channels: int, window: int, heads: int, drop: float):
        super().__init__()
        if channels % heads != 0:
            raise SvqbenchError(
                f"translator 'swin': {channels} channels (T*hid_S or hid_T) do not split into {heads} heads; "
                f"valid: a multiple of {heads}"
            )
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = KeyedDropout(drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        axis = torch.arange(window)
        coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij")).flatten(1)
        offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        index = offsets[..., 0] * (2 * window - 1) + offsets[..., 1]
        self.register_buffer("relative_position_index", index, persistent=False)

    def forward(self, windows: Tensor, mask: Tensor | None = None) -> Tensor:
        """(windows, tokens, C) -> same. ``mask`` (windows per map, tokens, tokens), when given, is added to the
        scores of every map's windows (the windows come map-major, as :class:`SwinBlock` cuts them)."""
        count, tokens, channels = windows.shape
        q, k, v = self.qkv(windows).view(count, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)
        if mask is not None:  # (maps, windows per map, heads, tokens, tokens) scores
            per_map = mask.shape[0]
            q, k, v = (t.view(count // per_map, per_map, *t.shape[1:]) for t in (q, k, v))
            bias = bias + mask[:, None]
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        attended = attended.reshape(count, self.heads, tokens, -1)
        return self.proj_drop(self.proj(attended.transpose(1, 2).reshape(count, tokens, channels)))


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> Tensor:
    """(windows, window^2, window^2): 0 between tokens of one region of the cyclically shifted map, -100
    (timm's value) between tokens that the shift brought together from different regions."""
    region = torch.zeros(height, width)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            region[rows, cols] = 3 * i + j
    windows = region.view(height // window, window, width // window, window).permute(0, 2, 1, 3)
    windows = windows.reshape(-1, window * window)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, -100.0)


class SwinBlock(nn.Module):
    """Swin block on a (B, C, H, W) map; maps not divisible by the window are zero-padded (as timm does).

    As in OpenSTL's SimVP, shifted windows are attended without the cross-boundary mask, so tokens wrapped
    around by the cyclic shift attend to each other, and the window follows :func:`swin_window`. Other
    models pass ``window`` = (size, shift) and ``masked=True`` for timm's Swin block, which masks them.
    """

    def __init__(
        self,
        channels: int,
        input_resolution: tuple[int, int],
        layer_index: int,
        mlp_ratio: float,
        drop: float,
        drop_path: float,
        heads: int = 8,
        window: tuple[int, int] | None = None,
        masked: bool = False,
    ):
        super().__init__()
        self.window, self.shift = window if window is not None else swin_window(input_resolution, layer_index)
        mask = None
        if masked and self.shift:
            padded = [size + (-size) % self.window for size in input_resolution]
            mask = shifted_window_mask(*padded, self.window, self.shift)
        self.register_buffer("shift_mask", mask, persistent=False)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, self.window, heads, drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), KeyedDropout(drop), nn.Linear(hidden, channels), KeyedDropout(drop)
        )
        self.apply(init_linear_trunc_normal)

    def _windowed_attention(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> same."""
        batch, height, width, channels = x.shape
        w = self.window
        pad_h, pad_w = (-height) % w, (-width) % w
        x = nn.functional.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        rows, cols = x.shape[1] // w, x.shape[2] // w
        windows = x.view(batch, rows, w, cols, w, channels).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, w * w, channels)
        x = self.attn(windows, self.shift_mask).view(batch, rows, cols, w, w, channels).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, rows * w, cols * w, channels)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :height, :width]

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.permute(0, 2, 3, 1)
        tokens = tokens + self.drop_path(self._windowed_attention(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.permute(0, 3, 1, 2)


register_meta_translator("swin", lambda c, i, rate, s: SwinBlock(c, s.input_resolution, i, s.mlp_ratio, s.drop, rate))


# ---------------------------------------------------------------------------------------------------
# MogaNet: multi-order gated aggregation (dilated depthwise convs on channel splits) and a channel-
# aggregation FFN, both with a learnt "feature decomposition" scale sigma.


class MultiOrderDepthwiseConv(nn.Module):
    """Depthwise 5x5 on all channels, then 5x5 dilation 2 on 3/8 of them and 7x7 dilation 3 on the last
    4/8; a 1x1 conv mixes the three orders."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 8 != 0:
            raise SvqbenchError(f"translator 'moganet': {channels} channels (T*hid_S or hid_T); valid: a multiple of 8")
        self.split_1 = int(3 / 8 * channels)
        self.split_2 = int(4 / 8 * channels)
        self.split_0 = channels - self.split_1 - self.split_2
        self.DW_conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.DW_conv1 = nn.Conv2d(self.split_1, self.split_1, 5, padding=4, dilation=2, groups=self.split_1)
        self.DW_conv2 = nn.Conv2d(self.split_2, self.split_2, 7, padding=9, dilation=3, groups=self.split_2)
        self.PW_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.DW_conv0(x)
        first, middle, last = x.split([self.split_0, self.split_1, self.split_2], dim=1)
        return self.PW_conv(torch.cat([first, self.DW_conv1(middle), self.DW_conv2(last)], dim=1))


class MultiOrderGatedAggregation(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Conv2d(channels, channels, 1)
        self.value = MultiOrderDepthwiseConv(channels)
        self.proj_2 = nn.Conv2d(channels, channels, 1)
        self.sigma = nn.Parameter(torch.full((1, channels, 1, 1), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        features = self.proj_1(x)
        features = features + self.sigma * (features - features.mean(dim=(2, 3), keepdim=True))
        features = nn.functional.silu(features)
        gated = nn.functional.silu(self.gate(features)) * nn.functional.silu(self.value(features))
        return x + self.proj_2(gated)


class ChannelAggregationFFN(nn.Module):
    def __init__(self, channels: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.decompose = nn.Conv2d(hidden, 1, 1)
        self.sigma = nn.Parameter(torch.full((1, hidden, 1, 1), 1e-5))
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.drop = KeyedDropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        x = x + self.sigma * (x - self.act(self.decompose(x)))
        return self.drop(self.fc2(x))


class MogaBlock(nn.Module):
    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.attn = MultiOrderGatedAggregation(channels)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = ChannelAggregationFFN(channels, int(channels * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((channels, 1, 1), 1e-5))
        self.layer_scale_2 = nn.Parameter(torch.full((channels, 1, 1), 1e-5))
        self.apply(init_fan_out_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


register_meta_translator("moganet", lambda c, i, rate, s: MogaBlock(c, s.mlp_ratio, s.drop, rate))
