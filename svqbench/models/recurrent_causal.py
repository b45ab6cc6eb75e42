"""PredRNN++ (Wang et al. 2018: causal LSTM + gradient highway unit) and MIM (Wang et al. 2019: memory in
memory), on the machinery of :mod:`svqbench.models.recurrent` (patches, scheduled sampling, rollout on
the model's own predictions at test time). Structure and sizes as OpenSTL's ``predrnnpp`` and ``mim`` models.

Differences from OpenSTL, on purpose: MIM's innermost stationary memory (``MIMBlock.convlstm_c`` in OpenSTL)
is an attribute there that survives from one batch to the next; here it starts at zero with every pass, so
that a pass is a function of its inputs. It is detached between steps as there.

Shapes: B batch, K patch channels, N hidden channels, h x w the cells' grid.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS
from svqbench.models.recurrent import (
    FORGET_BIAS,
    RecurrentForecaster,
    SamplingSchedule,
    SpatioTemporalLSTMCell,
    check_options,
    gate_conv,
    with_sampling_options,
)
from svqbench.models.shape import ClipShape

GHU_INIT_RANGE = 0.001  # the highway's convolutions start near zero (uniform +-0.001), as PredRNN++'s


class CausalLSTMCell(nn.Module):
    """PredRNN++'s cell: the temporal memory c is updated first and then drives the spatial memory m (cascade)."""

    def __init__(self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_x = gate_conv(in_channels, 7 * hidden, filter_size, layer_norm, grid)
        self.conv_h = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_c = gate_conv(hidden, 3 * hidden, filter_size, layer_norm, grid)
        self.conv_m = gate_conv(hidden, 3 * hidden, filter_size, layer_norm, grid)
        self.conv_o = gate_conv(2 * hidden, hidden, filter_size, layer_norm, grid)  # built, never called (OpenSTL)
        self.conv_c2m = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_om = gate_conv(hidden, hidden, filter_size, layer_norm, grid)
        self.conv_memory = nn.Conv2d(2 * hidden, hidden, 1, bias=False)
        self.conv_o.requires_grad_(False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, K_in, h, w); h, c, m (B, N, h, w) -> new (h, c, m)."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_m, f_m, m_m = torch.split(self.conv_m(m), self.hidden, dim=1)
        i_c, f_c, g_c = torch.split(self.conv_c(c), self.hidden, dim=1)
        c_new = torch.sigmoid(f_x + f_h + f_c + FORGET_BIAS) * c + torch.sigmoid(i_x + i_h + i_c) * torch.tanh(
            g_x + g_h + g_c
        )
        i_cm, g_cm, f_cm, o_c = torch.split(self.conv_c2m(c_new), self.hidden, dim=1)
        m_new = torch.sigmoid(f_xm + f_m + f_cm + FORGET_BIAS) * torch.tanh(m_m) + torch.sigmoid(
            i_xm + i_m + i_cm
        ) * torch.tanh(g_xm + g_cm)
        o = torch.tanh(o_x + o_h + o_c + self.conv_om(m_new))
        h_new = o * torch.tanh(self.conv_memory(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new


class GradientHighwayUnit(nn.Module):
    """z_new = u * tanh(p) + (1 - u) * z, gates from x and z: a short path for gradients through time."""

    def __init__(self, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_z = gate_conv(hidden, 2 * hidden, filter_size, layer_norm, grid)
        self.conv_x = gate_conv(hidden, 2 * hidden, filter_size, layer_norm, grid)
        for conv in (self.conv_z[0], self.conv_x[0]):
            nn.init.uniform_(conv.weight, -GHU_INIT_RANGE, GHU_INIT_RANGE)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x, z (B, N, h, w) -> new z."""
        p, u = torch.split(self.conv_x(x) + self.conv_z(z), self.hidden, dim=1)
        u = torch.sigmoid(u)
        return u * torch.tanh(p) + (1 - u) * z


class PredRNNpp(RecurrentForecaster):
    """Causal LSTM stack; the highway sits between the first and the second layer."""

    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        filter_size: int,
        layer_norm: bool,
        patch_size: int,
        schedule: SamplingSchedule,
    ):
        super().__init__(shape, num_hidden, patch_size, schedule)
        self.cells = nn.ModuleList(
            CausalLSTMCell(k, n, self.grid, filter_size, layer_norm)
            for k, n in zip(self.cell_inputs(), self.num_hidden)
        )
        self.highway = GradientHighwayUnit(self.num_hidden[0], self.grid, filter_size, layer_norm)

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, n, *self.grid) for n in self.num_hidden]
        return {"h": list(zeros), "c": list(zeros), "m": [zeros[0]], "z": [zeros[0]]}

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        below, memory = x, state["m"][0]
        for layer, cell in enumerate(self.cells):
            h, c, memory = cell(below, state["h"][layer], state["c"][layer], memory)
            state["h"][layer], state["c"][layer] = h, c
            if layer == 0:
                state["z"][0] = self.highway(h, state["z"][0])
                h = state["z"][0]
            below = h
        state["m"][0] = memory
        return state["h"][-1]


class StationaryMemory(nn.Module):
    """MIM's MIMS / MIMN: an LSTM with peephole weights (``ct_weight``, ``oc_weight``) per position that
    models the non-stationary (differential) part of the hidden state. x, h, c (B, N, h, w) -> new (h, c)."""

    def __init__(self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.ct_weight = nn.Parameter(torch.zeros(2 * hidden, *grid))
        self.oc_weight = nn.Parameter(torch.zeros(hidden, *grid))
        self.conv_h = gate_conv(in_channels, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_x = gate_conv(in_channels, 4 * hidden, filter_size, layer_norm, grid)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i_h, g_h, f_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_c, f_c = torch.split(c.repeat(1, 2, 1, 1) * self.ct_weight, self.hidden, dim=1)
        i_x, g_x, f_x, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        c_new = torch.sigmoid(f_h + f_c + f_x + FORGET_BIAS) * c + torch.sigmoid(i_h + i_c + i_x) * torch.tanh(
            g_h + g_x
        )
        h_new = torch.sigmoid(o_h + o_x + c_new * self.oc_weight) * torch.tanh(c_new)
        return h_new, c_new


class MIMBlock(nn.Module):
    """A MIM layer: the ST-LSTM's forget gate on c is replaced by a stationary memory fed the differences."""

    def __init__(self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_h = gate_conv(in_channels, 3 * hidden, filter_size, layer_norm, grid)
        self.conv_m = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_x = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_memory = nn.Conv2d(2 * hidden, hidden, 1, bias=False)
        self.stationary = StationaryMemory(hidden, hidden, grid, filter_size, layer_norm)

    def forward(
        self, x: Tensor, difference: Tensor, h: Tensor, c: Tensor, m: Tensor, inner: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x, difference, h, c, m, inner (B, N, h, w) -> new (h, c, m, inner)."""
        i_t, g_t, o_t = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_s, g_s, f_s, o_s = torch.split(self.conv_m(m), self.hidden, dim=1)
        i_x, g_x, f_x, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        m_new = torch.sigmoid(f_x + f_s + FORGET_BIAS) * m + torch.sigmoid(i_x + i_s) * torch.tanh(g_x + g_s)
        stationary_c, inner_new = self.stationary(difference, c, inner.detach())
        c_new = stationary_c + torch.sigmoid(i_x + i_t) * torch.tanh(g_x + g_t)
        o = torch.sigmoid(o_x + o_t + o_s)
        h_new = o * torch.tanh(self.conv_memory(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new, inner_new


class MIM(RecurrentForecaster):
    """An ST-LSTM first layer, MIM blocks above it; a MIMN per block turns the change of the hidden state
    below into the block's non-stationary input."""

    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        filter_size: int,
        layer_norm: bool,
        patch_size: int,
        schedule: SamplingSchedule,
    ):
        super().__init__(shape, num_hidden, patch_size, schedule)
        first, *others = self.cell_inputs()
        self.first = SpatioTemporalLSTMCell(first, self.num_hidden[0], self.grid, filter_size, layer_norm)
        self.blocks = nn.ModuleList(
            MIMBlock(k, n, self.grid, filter_size, layer_norm) for k, n in zip(others, self.num_hidden[1:])
        )
        self.differences = nn.ModuleList(
            StationaryMemory(k, n, self.grid, filter_size, layer_norm)
            for k, n in zip(self.num_hidden[:-1], self.num_hidden[1:])
        )
        # OpenSTL's MIMN also builds a 1x1 readout its forward never calls; kept, frozen, for the published count
        self.unused = nn.ModuleList(nn.Conv2d(2 * n, n, 1, bias=False) for n in self.num_hidden[1:])
        self.unused.requires_grad_(False)

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, n, *self.grid) for n in self.num_hidden]
        return {
            "h": list(zeros),
            "c": list(zeros),
            "m": [zeros[0]],
            "diff_h": list(zeros[1:]),
            "diff_c": list(zeros[1:]),
            "inner": list(zeros[1:]),
            "started": [],
        }

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        before = state["h"][0]
        h, state["c"][0], memory, _, _ = self.first(x, state["h"][0], state["c"][0], state["m"][0])
        state["h"][0] = h
        started = bool(state["started"])  # at the first step the differences are zero and MIMN's output unused
        for layer, block in enumerate(self.blocks):
            if started:
                change = h - before if layer == 0 else state["diff_h"][layer - 1]
                state["diff_h"][layer], state["diff_c"][layer] = self.differences[layer](
                    change, state["diff_h"][layer], state["diff_c"][layer]
                )
            above = layer + 1
            state["h"][above], state["c"][above], memory, state["inner"][layer] = block(
                state["h"][layer],
                state["diff_h"][layer],
                state["h"][above],
                state["c"][above],
                memory,
                state["inner"][layer],
            )
        state["m"][0] = memory
        state["started"] = [x]
        return state["h"][-1]


def check_stack(
    shape: ClipShape, num_hidden: Sequence[int], filter_size: int, stride: int, patch_size: int, name: str
) -> list[int]:
    widths = check_options(shape, num_hidden, filter_size, stride, patch_size, same_widths=True)
    if len(widths) < 2:
        raise SvqbenchError(f"model.num_hidden={widths}: {name} needs at least 2 layers")
    return widths


@MODELS.register("predrnn_pp")
@with_sampling_options()
def predrnn_pp(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    *,
    schedule: SamplingSchedule,
) -> PredRNNpp:
    """PredRNN++ (defaults as OpenSTL's Moving MNIST config)."""
    widths = check_stack(shape, num_hidden, filter_size, stride, patch_size, "PredRNN++ (the highway's two sides)")
    return PredRNNpp(shape, widths, filter_size, layer_norm, patch_size, schedule)


@MODELS.register("mim")
@with_sampling_options()
def mim(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    *,
    schedule: SamplingSchedule,
) -> MIM:
    """MIM (defaults as OpenSTL's Moving MNIST config)."""
    widths = check_stack(shape, num_hidden, filter_size, stride, patch_size, "MIM (an ST-LSTM under MIM blocks)")
    return MIM(shape, widths, filter_size, layer_norm, patch_size, schedule)
