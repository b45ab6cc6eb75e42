"""MAU, the motion-aware unit (Chang et al. 2021), on the machinery of :mod:`svqbench.models.recurrent`.
Structure and sizes as OpenSTL's ``mau`` model.

Each frame's patches are encoded (a 1x1 convolution, then log2(``sr_size``) stride-2 convolutions) into the
spatial state S; every layer's cell attends over its last ``tau`` spatial states to weigh the last ``tau``
temporal states into a motion trend, fuses it with the temporal state T and updates (T, S). The top S is
decoded by stride-2 transposed convolutions (``model_mode: recall`` adds the encoder's features of the same
scale, a skip connection) and a 1x1 convolution to the next frame's patches.

OpenSTL also builds two 1x1 convolutions its forward never calls (``merge``, ``conv_last_sr``); they are
kept, frozen, so that the parameter count is the published one.

Shapes: B batch, K patch channels, N hidden channels, h x w = the patch grid / sr_size.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS
from svqbench.models.recurrent import RecurrentForecaster, SamplingSchedule, check_options, with_sampling_options
from svqbench.models.shape import ClipShape


def normed_conv(in_channels: int, out_channels: int, filter_size: int, grid: tuple[int, int]) -> nn.Sequential:
    """A size-keeping convolution with bias, then LayerNorm over (out_channels, h, w), as MAU's cells use."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, filter_size, padding=filter_size // 2), nn.LayerNorm([out_channels, *grid])
    )


class MAUCell(nn.Module):
    """One MAU layer: attention over the last tau states, then the fusion of temporal and spatial states."""

    def __init__(self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, residual: bool):
        super().__init__()
        self.hidden = hidden
        self.residual = residual
        self.scale = math.sqrt(hidden * grid[0] * grid[1])
        self.conv_t = normed_conv(in_channels, 3 * hidden, filter_size, grid)
        self.conv_t_next = normed_conv(in_channels, hidden, filter_size, grid)
        self.conv_s = normed_conv(hidden, 3 * hidden, filter_size, grid)
        self.conv_s_next = normed_conv(hidden, hidden, filter_size, grid)

    def forward(
        self, temporal: Tensor, spatial: Tensor, past_temporal: Tensor, past_spatial: Tensor
    ) -> tuple[Tensor, Tensor]:
        """temporal, spatial (B, N, h, w); past_* (tau, B, N, h, w) -> new (temporal, spatial)."""
        s_next = self.conv_s_next(spatial)
        t_next = self.conv_t_next(temporal)
        scores = (past_spatial * s_next).sum(dim=(2, 3, 4)) / self.scale  # (tau, B)
        weights = torch.softmax(scores, dim=0)[:, :, None, None, None]
        trend = (past_temporal * weights).sum(dim=0)
        gate = torch.sigmoid(t_next)
        fused = temporal * gate + (1 - gate) * trend
        t_g, t_t, t_s = torch.split(self.conv_t(fused), self.hidden, dim=1)
        s_g, s_t, s_s = torch.split(self.conv_s(spatial), self.hidden, dim=1)
        t_gate, s_gate = torch.sigmoid(t_g), torch.sigmoid(s_g)
        temporal_new = t_gate * t_t + (1 - t_gate) * s_t
        spatial_new = s_gate * s_s + (1 - s_gate) * t_s
        if self.residual:
            spatial_new = spatial_new + spatial
        return temporal_new, spatial_new


def encoder_stages(patch_channels: int, hidden: int, downsamplings: int) -> nn.ModuleList:
    stages = [nn.Sequential(nn.Conv2d(patch_channels, hidden, 1), nn.LeakyReLU(0.2))]
    stages += [
        nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
        for _ in range(downsamplings)
    ]
    return nn.ModuleList(stages)


def decoder_stages(hidden: int, upsamplings: int) -> nn.ModuleList:
    """Stride-2 transposed convolutions; all but the last followed by LeakyReLU (as OpenSTL's)."""
    stages = []
    for i in range(upsamplings):
        up = nn.ConvTranspose2d(hidden, hidden, 3, stride=2, padding=1, output_padding=1)
        stages.append(nn.Sequential(up, nn.LeakyReLU(0.2)) if i < upsamplings - 1 else nn.Sequential(up))
    return nn.ModuleList(stages)


class MAU(RecurrentForecaster):
    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        filter_size: int,
        patch_size: int,
        sr_size: int,
        tau: int,
        cell_mode: str,
        model_mode: str,
        schedule: SamplingSchedule,
    ):
        k = patch_size * patch_size * shape.channels
        super().__init__(shape, num_hidden, patch_size, schedule, readout=nn.Conv2d(num_hidden[-1], k, 1))
        self.tau = tau
        self.recall = model_mode == "recall"
        self.state_grid = (self.grid[0] // sr_size, self.grid[1] // sr_size)
        downsamplings = int(math.log2(sr_size))
        self.encoders = encoder_stages(k, self.num_hidden[0], downsamplings)
        self.decoders = decoder_stages(self.num_hidden[-1], downsamplings)
        self.cells = nn.ModuleList(
            MAUCell(self.num_hidden[i - 1], n, self.state_grid, filter_size, cell_mode == "residual")
            for i, n in enumerate(self.num_hidden)
        )
        self.unused = nn.ModuleDict(
            {
                "merge": nn.Conv2d(2 * self.num_hidden[-1], self.num_hidden[-1], 1),
                "conv_last_sr": nn.Conv2d(2 * k, k, 1),
            }
        ).requires_grad_(False)

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, n, *self.state_grid) for n in self.num_hidden]
        below = [like.new_zeros(batch, self.num_hidden[i - 1], *self.state_grid) for i in range(len(self.num_hidden))]
        state = {"T": list(zeros)}
        for layer, empty in enumerate(below):  # tau empty past states per layer, as OpenSTL starts
            state[f"past_T{layer}"] = [empty] * self.tau
            state[f"past_S{layer}"] = [empty] * self.tau
        return state

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        features = []
        spatial = x
        for stage in self.encoders:
            spatial = stage(spatial)
            features.append(spatial)
        for layer, cell in enumerate(self.cells):
            past_t = torch.stack(state[f"past_T{layer}"][-self.tau :])
            past_s = torch.stack(state[f"past_S{layer}"][-self.tau :])
            state[f"past_S{layer}"] = (state[f"past_S{layer}"] + [spatial])[-self.tau :]
            state["T"][layer], spatial = cell(state["T"][layer], spatial, past_t, past_s)
            state[f"past_T{layer}"] = (state[f"past_T{layer}"] + [state["T"][layer]])[-self.tau :]
        out = spatial
        for i, stage in enumerate(self.decoders):
            out = stage(out)
            if self.recall:
                out = out + features[-2 - i]
        return out


@MODELS.register("mau")
@with_sampling_options()
def mau(
    shape: ClipShape,
    num_hidden: Sequence[int] = (64, 64, 64, 64),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 1,
    layer_norm: bool = False,
    sr_size: int = 4,
    tau: int = 5,
    cell_mode: str = "normal",
    model_mode: str = "normal",
    *,
    schedule: SamplingSchedule,
) -> MAU:
    """MAU (defaults as OpenSTL's Moving MNIST config). ``layer_norm`` is read for OpenSTL's configs' sake:
    MAU's cells always normalise. ``cell_mode``: normal or residual; ``model_mode``: normal or recall."""
    widths = check_options(shape, num_hidden, filter_size, stride, patch_size, same_widths=True)
    if cell_mode not in ("normal", "residual"):
        raise SvqbenchError(f"model.cell_mode={cell_mode!r}; valid: normal, residual")
    if model_mode not in ("normal", "recall"):
        raise SvqbenchError(f"model.model_mode={model_mode!r}; valid: normal, recall")
    if tau < 1:
        raise SvqbenchError(f"model.tau={tau}; valid: an integer >= 1 (the number of past states attended)")
    grid = (shape.height // patch_size, shape.width // patch_size)
    if sr_size < 1 or sr_size & (sr_size - 1) or grid[0] % sr_size or grid[1] % sr_size:
        raise SvqbenchError(
            f"model.sr_size={sr_size}: must be a power of 2 dividing the patch grid {grid[0]}x{grid[1]}"
        )
    return MAU(shape, widths, filter_size, patch_size, sr_size, tau, cell_mode, model_mode, schedule)
