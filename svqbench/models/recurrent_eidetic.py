"""E3D-LSTM (Wang et al. 2019: eidetic 3D LSTM), on the machinery of :mod:`svqbench.models.recurrent`.
Structure and sizes as OpenSTL's ``e3d_lstm`` model.

Each step sees a window of the last ``window_length`` fed frames (zeros before the first), advanced every
``window_length - window_stride`` steps. Its cells are 3D convolutions over (window, h, w) with kernel
(window_length, filter_size, filter_size) and ``stride``; as in OpenSTL, a strided convolution's output is
resized back to the input's size by nearest interpolation. The eidetic memory: the cell attends, with its
recall gate as query, over every past cell state of its layer (``c_history``), then LayerNorm.

Kept as OpenSTL computes it (its published numbers come from this code): the attention reshapes
(B, N, window, h, w) to (B, -1, N) without moving the channel axis last; and the cell returns the global
memory it was given, so the spatiotemporal memory stays at its initial zeros.

Shapes: B batch, K patch channels, N hidden channels, L = window_length, h x w the patch grid.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS
from svqbench.models.recurrent import (
    FORGET_BIAS,
    RecurrentForecaster,
    SamplingSchedule,
    check_options,
    with_sampling_options,
)
from svqbench.models.shape import ClipShape


class SizeKeepingConv3d(nn.Conv3d):
    """A 3D convolution whose output is resized (nearest) to its input's (L, h, w), as OpenSTL's tf_Conv3d."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-3:], mode="nearest")


def gate_conv3d(
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int, int],
    stride: int,
    layer_norm: bool,
    volume: tuple[int, int, int],
) -> nn.Sequential:
    conv = SizeKeepingConv3d(
        in_channels, out_channels, kernel, stride=stride, padding=(0, kernel[1] // 2, kernel[2] // 2), bias=False
    )
    return nn.Sequential(conv, nn.LayerNorm([out_channels, *volume])) if layer_norm else nn.Sequential(conv)


class EideticLSTMCell(nn.Module):
    def __init__(
        self,
        in_channels: int,
        hidden: int,
        volume: tuple[int, int, int],
        kernel: tuple[int, int, int],
        stride: int,
        layer_norm: bool,
    ):
        super().__init__()
        self.hidden = hidden
        self.norm_cell = nn.LayerNorm([hidden, *volume])
        self.conv_x = gate_conv3d(in_channels, 7 * hidden, kernel, stride, layer_norm, volume)
        self.conv_h = gate_conv3d(hidden, 4 * hidden, kernel, stride, layer_norm, volume)
        self.conv_gm = gate_conv3d(hidden, 4 * hidden, kernel, stride, layer_norm, volume)
        self.conv_new_cell = gate_conv3d(hidden, hidden, kernel, stride, layer_norm, volume)
        self.conv_new_gm = gate_conv3d(hidden, hidden, kernel, stride, layer_norm, volume)
        self.conv_memory = SizeKeepingConv3d(2 * hidden, hidden, 1, bias=False)

    @staticmethod
    def recall(query: Tensor, history: Tensor) -> Tensor:
        """query (B, N, L, h, w), history (B, N * steps, L, h, w) -> attended (B, N, L, h, w)."""
        batch, channels = query.shape[:2]
        q = query.reshape(batch, -1, channels)
        keys = history.reshape(batch, -1, channels)
        attention = torch.softmax(torch.einsum("bxc,byc->bxy", q, keys), dim=2)
        return torch.einsum("bxy,byc->bxc", attention, keys).reshape(query.shape)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, memory: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, K_in, L, h, w); h, c, memory (B, N, L, h, w); history (B, N * steps, L, h, w) -> new (h, c)."""
        i_h, g_h, r_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_x, g_x, r_x, o_x, i_xm, g_xm, f_xm = torch.split(self.conv_x(x), self.hidden, dim=1)
        recalled = c + self.recall(torch.sigmoid(r_x + r_h), history)
        c_new = self.norm_cell(recalled) + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        i_m, f_m, g_m, m_m = torch.split(self.conv_gm(memory), self.hidden, dim=1)
        memory_new = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * torch.tanh(m_m) + torch.sigmoid(i_xm + i_m) * torch.tanh(
            g_xm + g_m
        )
        gate = torch.tanh(o_x + o_h + self.conv_new_cell(c_new) + self.conv_new_gm(memory_new))
        h_new = torch.tanh(self.conv_memory(torch.cat([c_new, memory_new], dim=1))) * torch.sigmoid(gate)
        return h_new, c_new


class WindowReadout(nn.Module):
    """(B, N, L, h, w) -> (B, K, h, w): a (L, 1, 1) convolution over the window."""

    def __init__(self, hidden: int, patch_channels: int, window_length: int):
        super().__init__()
        self.conv = nn.Conv3d(hidden, patch_channels, (window_length, 1, 1), stride=(window_length, 1, 1), bias=False)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(h).squeeze(2)


class E3DLSTM(RecurrentForecaster):
    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        filter_size: int,
        stride: int,
        layer_norm: bool,
        patch_size: int,
        window_length: int,
        window_stride: int,
        schedule: SamplingSchedule,
    ):
        k = patch_size * patch_size * shape.channels
        super().__init__(
            shape, num_hidden, patch_size, schedule, readout=WindowReadout(num_hidden[-1], k, window_length)
        )
        self.window_length = window_length
        self.window_advance = window_length - window_stride
        volume = (window_length, *self.grid)
        kernel = (window_length, filter_size, filter_size)
        self.cells = nn.ModuleList(
            EideticLSTMCell(k_in, n, volume, kernel, stride, layer_norm)
            for k_in, n in zip(self.cell_inputs(), self.num_hidden)
        )

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list]:
        """Zero states, the window's leading zero frames, and the step count (which steps move the window)."""
        zeros = [like.new_zeros(batch, n, self.window_length, *self.grid) for n in self.num_hidden]
        empty = like.new_zeros(batch, self.patch_channels, *self.grid)
        return {
            "h": list(zeros),
            "c": list(zeros),
            "history": [],
            "memory": [zeros[0]],
            "fed": [empty] * (self.window_length - 1),
            "window": [],
            "step": [0],
        }

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        step = state["step"][0]
        state["step"][0] = step + 1
        state["fed"] = (state["fed"] + [x])[-self.window_length :]
        if step % self.window_advance == 0:
            state["window"] = [torch.stack(state["fed"], dim=2)]  # (B, K, L, h, w)
        below = state["window"][0]
        for layer, cell in enumerate(self.cells):
            past = state["c"][layer] if step == 0 else torch.cat([state["history"][layer], state["c"][layer]], 1)
            state["history"][layer : layer + 1] = [past]
            state["h"][layer], state["c"][layer] = cell(
                below, state["h"][layer], state["c"][layer], state["memory"][0], past
            )
            below = state["h"][layer]
        return below


@MODELS.register("e3d_lstm")
@with_sampling_options()
def e3d_lstm(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    window_length: int = 2,
    window_stride: int = 1,
    *,
    schedule: SamplingSchedule,
) -> E3DLSTM:
    """E3D-LSTM (defaults as OpenSTL's Moving MNIST config; its window is 2 frames, moved by 1)."""
    widths = check_options(shape, num_hidden, filter_size, 1, patch_size, same_widths=True)
    if stride < 1:
        raise SvqbenchError(f"model.stride={stride}; valid: an integer >= 1 (outputs are resized back)")
    if not 1 <= window_stride < window_length:
        raise SvqbenchError(
            f"model.window_length={window_length}, window_stride={window_stride}; "
            "valid: 1 <= window_stride < window_length"
        )
    return E3DLSTM(shape, widths, filter_size, stride, layer_norm, patch_size, window_length, window_stride, schedule)
