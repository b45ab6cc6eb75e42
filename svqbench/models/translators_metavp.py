"""OpenSTL's MetaVP translators beyond gSTA, TAU, ConvNeXt, Swin and MogaNet (Tan et al., "OpenSTL", NeurIPS 2023
Datasets and Benchmarks): blocks from ConvMixer, PoolFormer, MLP-Mixer, VAN, ViT, UniFormer and HorNet inside the
same MetaTranslator, with
OpenSTL's layer shapes, inits and drop-path schedule, so their parameter counts equal OpenSTL's at its
``configs/kth/simvp/SimVP_*.py``. Every block maps (B, C, H, W) -> (B, C, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from svqbench.models.translators import (
    ChannelLayerNorm,
    KeyedDropout,
    MetaTranslator,
    MixMlp,
    TranslatorSettings,
    drop_path_or_identity,
    init_fan_out_normal,
    init_linear_trunc_normal,
    register_meta_translator,
    register_translator,
)


class ConvMixerBlock(nn.Module):
    """ConvMixer (Trockman & Kolter 2022): depthwise k x k conv -> GELU -> BatchNorm with a residual, then a pointwise
    conv -> GELU -> BatchNorm without one (as OpenSTL's block; no drop path, no dropout)."""

    def __init__(self, channels: int, kernel_size: int = 11):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, kernel_size, groups=channels, padding="same")
        self.norm_1 = nn.BatchNorm2d(channels)
        self.conv_pw = nn.Conv2d(channels, channels, 1)
        self.norm_2 = nn.BatchNorm2d(channels)
        self.act = nn.GELU()
        self.apply(init_fan_out_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.norm_1(self.act(self.conv_dw(x)))
        return self.norm_2(self.act(self.conv_pw(x)))


class ConvMlp(nn.Module):
    """1x1 conv -> GELU -> dropout -> 1x1 conv -> dropout (PoolFormer's channel MLP)."""

    def __init__(self, channels: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.drop = KeyedDropout(drop)
        for conv in (self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PoolFormerBlock(nn.Module):
    """PoolFormer (Yu et al., CVPR 2022): average pooling minus identity as the token mixer, a 1x1-conv MLP, both with
    layer scale (1e-5) and drop path; GroupNorm with one group before each."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float, pool_size: int = 3):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)
        self.norm2 = nn.GroupNorm(1, channels)
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio), drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.layer_scale_1 = nn.Parameter(1e-5 * torch.ones(channels))
        self.layer_scale_2 = nn.Parameter(1e-5 * torch.ones(channels))
        for norm in (self.norm1, self.norm2):
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.norm1(x)
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * (self.pool(mixed) - mixed))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))


class LinearMlp(nn.Module):
    """Linear -> GELU -> dropout -> linear -> dropout over the last dimension."""

    def __init__(self, features: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, features)
        self.drop = KeyedDropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class MixerBlock(nn.Module):
    """MLP-Mixer (Tolstikhin et al., NeurIPS 2021) over the H*W tokens of the latent: a token MLP (hidden C/2) and a
    channel MLP (hidden mlp_ratio * C), each after a LayerNorm (eps 1e-6) with a residual and drop path."""

    def __init__(self, channels: int, tokens: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.mlp_tokens = LinearMlp(tokens, int(0.5 * channels), drop)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        self.mlp_channels = LinearMlp(channels, int(mlp_ratio * channels), drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.apply(init_linear_trunc_normal)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class LargeKernelAttention(nn.Module):
    """VAN's LKA: 5x5 depthwise conv -> 7x7 depthwise conv of dilation 3 -> 1x1 conv, multiplying the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_spatial = nn.Conv2d(channels, channels, 7, padding=9, groups=channels, dilation=3)
        self.conv1 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class VanAttention(nn.Module):
    """1x1 conv -> GELU -> LKA -> 1x1 conv, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.act = nn.GELU()
        self.lka = LargeKernelAttention(channels)
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_2(self.lka(self.act(self.proj_1(x))))


class VanBlock(nn.Module):
    """VAN (Guo et al., 2022): BatchNorm -> large-kernel attention and BatchNorm -> convolutional FFN, each with
    layer scale (1e-2) and drop path."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.attn = VanAttention(channels)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = MixMlp(channels, int(channels * mlp_ratio), drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.layer_scale_1 = nn.Parameter(1e-2 * torch.ones(channels))
        self.layer_scale_2 = nn.Parameter(1e-2 * torch.ones(channels))
        self.apply(init_fan_out_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C): one qkv projection (with bias), scaled dot products, an output
    projection with dropout."""

    def __init__(self, channels: int, heads: int, drop: float):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} attention heads")
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.drop = KeyedDropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, heads, N, C/heads)
        return self.drop(self.proj(attended.transpose(1, 2).reshape(batch, tokens, channels)))


class ViTBlock(nn.Module):
    """A Vision Transformer block (Dosovitskiy et al., ICLR 2021) over the H*W tokens of the latent: LayerNorm ->
    8-head self-attention and LayerNorm -> MLP, each with a residual and drop path (timm's ``Block``, as OpenSTL's)."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float, heads: int = 8):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SelfAttention(channels, heads, drop)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = LinearMlp(channels, int(channels * mlp_ratio), drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.apply(init_linear_trunc_normal)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class UniFormerConvBlock(nn.Module):
    """UniFormer's local block (Li et al., ICLR 2022): a depthwise 3x3 position embedding, then BatchNorm -> 1x1 ->
    depthwise 5x5 -> 1x1 and BatchNorm -> 1x1-conv MLP, each with a residual and drop path."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.attn = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.norm2 = nn.BatchNorm2d(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.GELU(),
            KeyedDropout(drop),
            nn.Conv2d(hidden, channels, 1),
            KeyedDropout(drop),
        )
        self.drop_path = drop_path_or_identity(drop_path)
        self.apply(init_fan_out_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class UniFormerAttentionBlock(nn.Module):
    """UniFormer's global block: a depthwise 3x3 position embedding, then LayerNorm -> 8-head self-attention and
    LayerNorm -> MLP over the tokens, each with layer scale (1e-6), a residual and drop path."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float, heads: int = 8):
        super().__init__()
        self.pos_embed = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SelfAttention(channels, heads, drop)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = LinearMlp(channels, int(channels * mlp_ratio), drop)
        self.drop_path = drop_path_or_identity(drop_path)
        self.gamma_1 = nn.Parameter(1e-6 * torch.ones(channels))
        self.gamma_2 = nn.Parameter(1e-6 * torch.ones(channels))
        self.apply(init_linear_trunc_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(batch, channels, height, width)


def _uniformer(channels_in: int, channels_hid: int, depth: int, drop_path: float, settings: TranslatorSettings):
    """UniFormer's blocks as OpenSTL stacks them: attention where a block keeps its width (the middle ones),
    convolution where it changes it (the first and the last)."""
    widths = [channels_in] + [channels_hid] * (depth - 1) + [channels_in]

    def block(channels: int, layer: int, rate: float) -> nn.Module:
        if layer > 0 and widths[layer] == widths[layer + 1]:
            return UniFormerAttentionBlock(channels, settings.mlp_ratio, settings.drop, rate)
        return UniFormerConvBlock(channels, settings.mlp_ratio, settings.drop, rate)

    return MetaTranslator(channels_in, channels_hid, depth, drop_path, block)


class RecursiveGatedConv(nn.Module):
    """HorNet's g^n conv (order 4): a 1x1 projection to 2C, a 7x7 depthwise conv over all but the first C/8 of them,
    then gating by each order's share, widening C/8 -> C/4 -> C/2 -> C through 1x1 convs, and a 1x1 output."""

    def __init__(self, channels: int, order: int = 4):
        super().__init__()
        self.dims = [channels // 2**i for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(channels, 2 * channels, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 7, padding=3, groups=sum(self.dims))
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))

    def forward(self, x: Tensor) -> Tensor:
        gate, rest = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        orders = torch.split(self.dwconv(rest), self.dims, dim=1)
        x = gate * orders[0]
        for widen, order in zip(self.pws, orders[1:]):
            x = widen(x) * order
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    """HorNet (Rao et al., NeurIPS 2022): LayerNorm -> g^n conv and LayerNorm -> MLP over the channels, each with layer
    scale (1e-6), a residual and drop path (LayerNorms with eps 1e-6)."""

    def __init__(self, channels: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, eps=1e-6)
        self.gnconv = RecursiveGatedConv(channels)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, int(mlp_ratio * channels))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * channels), channels)
        self.gamma1 = nn.Parameter(1e-6 * torch.ones(channels))
        self.gamma2 = nn.Parameter(1e-6 * torch.ones(channels))
        self.drop_path = drop_path_or_identity(drop_path)
        self.apply(init_fan_out_normal)
        self.apply(init_linear_trunc_normal)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.gamma1[:, None, None] * self.gnconv(self.norm1(x)))
        mlp = self.gamma2 * self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + self.drop_path(mlp.permute(0, 3, 1, 2))


def _mixer(channels: int, layer: int, rate: float, settings: TranslatorSettings) -> MixerBlock:
    tokens = settings.input_resolution[0] * settings.input_resolution[1]
    return MixerBlock(channels, tokens, settings.mlp_ratio, settings.drop, rate)


# OpenSTL's ConvMixer block takes no drop path and no dropout; its kernel is 11 in SimVP
register_meta_translator("convmixer", lambda c, i, rate, s: ConvMixerBlock(c, 11))
register_meta_translator("poolformer", lambda c, i, rate, s: PoolFormerBlock(c, s.mlp_ratio, s.drop, rate))
register_meta_translator("mlpmixer", _mixer)
register_meta_translator("van", lambda c, i, rate, s: VanBlock(c, s.mlp_ratio, s.drop, rate))
register_meta_translator("vit", lambda c, i, rate, s: ViTBlock(c, s.mlp_ratio, s.drop, rate))
register_translator("uniformer", _uniformer)
# OpenSTL's HorNet block takes no dropout: `drop` does not apply
register_meta_translator("hornet", lambda c, i, rate, s: HorNetBlock(c, s.mlp_ratio, rate))
