"""PhyDNet (Le Guen & Thome 2020): a PhyCell (physical dynamics as a learned PDE, corrected by the
observation) beside a ConvLSTM (the residual), on a shared convolutional encoder/decoder. Structure and sizes
as OpenSTL's ``phydnet`` model (its widths: 64 encoded channels, F = 49 filters of 7x7, ConvLSTM
128, 128, 64; ``num_hidden`` sets the ConvLSTM's, OpenSTL's by default); on the machinery of
:mod:`svqbench.models.recurrent` (scheduled sampling keyed per sample and step, test-time rollout on its own
predictions).

The moment constraint: the PhyCell's 7x7 filters, for each of the 64 input channels, are mapped to their
moment matrices (K2M, m = M k M^T with M[i, j] = (j - 3)^i / i!), and the MSE of the 49 matrices to the
49 unit matrices e_(i,j) is summed over the channels. It is the training pass's ``aux_loss``, unweighted
as in OpenSTL's method; at test time it is zero.

Differences from OpenSTL, on purpose: OpenSTL feeds the decoder the true frame with probability
1 - 0.003 x epoch, one coin for the whole batch and pass; svqbench draws one keyed coin per (sample, step)
on the recurrent models' schedule (``sampling_*`` keys), so that a pass is a function of the step. Its
training loss covers the T_out outputs (OpenSTL's also the reconstructions of the input frames).

Shapes: B batch, C channels, H x W frame, p = ``patch_size`` (2 or 4) the encoder's downsampling,
h x w = H/p x W/p.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS
from svqbench.models.recurrent import RecurrentForecaster, SamplingSchedule, with_sampling_options
from svqbench.models.shape import ClipShape

ENCODED = 64  # the encoder's channels and the PhyCell's state
PHYSICS_FILTERS = 49  # F's hidden channels: one per 7x7 moment
PHYSICS_KERNEL = 7
RESIDUAL_HIDDEN = (128, 128, 64)  # OpenSTL's ConvLSTM widths


def conv_stage(nin: int, nout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(nin, nout, 3, stride=stride, padding=1), nn.GroupNorm(16, nout), nn.LeakyReLU(0.2))


def upconv_stage(nin: int, nout: int, stride: int) -> nn.Sequential:
    up = nn.ConvTranspose2d(nin, nout, 3, stride=stride, padding=1, output_padding=stride - 1)
    return nn.Sequential(up, nn.GroupNorm(16, nout), nn.LeakyReLU(0.2))


class PhyCell(nn.Module):
    """Prediction h~ = h + F(h) (F: 7x7 conv to 49, GroupNorm, 1x1 back), then correction towards x by a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.physics = nn.Sequential(
            nn.Conv2d(ENCODED, PHYSICS_FILTERS, PHYSICS_KERNEL, padding=PHYSICS_KERNEL // 2),
            nn.GroupNorm(7, PHYSICS_FILTERS),
            nn.Conv2d(PHYSICS_FILTERS, ENCODED, 1),
        )
        self.gate = nn.Conv2d(2 * ENCODED, ENCODED, 3, padding=1)

    def forward(self, x: Tensor, hidden: Tensor) -> Tensor:
        """x, hidden (B, 64, h, w) -> new hidden."""
        gain = torch.sigmoid(self.gate(torch.cat([x, hidden], dim=1)))
        predicted = hidden + self.physics(hidden)
        return predicted + gain * (x - predicted)


class ResidualLSTMCell(nn.Module):
    """PhyDNet's ConvLSTM cell: one 3x3 convolution over [x, h] with bias, gates i, f, o, g, no forget bias."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new


def moment_matrix(size: int) -> Tensor:
    """(size, size): M[i, j] = (j - (size - 1) // 2)^i / i!, float64."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) // 2
    return torch.stack([offsets**i / math.factorial(i) for i in range(size)])


class PhyDNet(RecurrentForecaster):
    def __init__(self, shape: ClipShape, patch_size: int, num_hidden: tuple[int, ...], schedule: SamplingSchedule):
        channels = shape.channels
        decoder = nn.Sequential(
            upconv_stage(2 * 32, 32, 2),
            upconv_stage(32, 32, 1),
            nn.ConvTranspose2d(32, channels, 3, stride=patch_size // 2, padding=1, output_padding=patch_size // 2 - 1),
            nn.Sigmoid(),
        )  # inside the loop: the fed-back prediction is in [0, 1] too
        # the frames enter whole (patch 1): the encoder does the downsampling
        super().__init__(shape, [ENCODED], 1, schedule, readout=decoder)
        self.grid = (shape.height // patch_size, shape.width // patch_size)
        self.encoder = nn.Sequential(
            conv_stage(channels, 32, 2), conv_stage(32, 32, 1), conv_stage(32, ENCODED, patch_size // 2)
        )
        self.encoder_physics = nn.Sequential(conv_stage(ENCODED, ENCODED, 1), conv_stage(ENCODED, ENCODED, 1))
        self.encoder_residual = nn.Sequential(conv_stage(ENCODED, ENCODED, 1), conv_stage(ENCODED, ENCODED, 1))
        self.decoder_physics = nn.Sequential(upconv_stage(ENCODED, ENCODED, 1), upconv_stage(ENCODED, ENCODED, 1))
        residual_out = num_hidden[-1]  # the residual decoder reads the last ConvLSTM's output
        self.decoder_residual = nn.Sequential(upconv_stage(residual_out, ENCODED, 1), upconv_stage(ENCODED, ENCODED, 1))
        self.phycell = PhyCell()
        self.residual_hidden = tuple(num_hidden)
        inputs = (ENCODED, *num_hidden[:-1])
        self.residual_cells = nn.ModuleList(ResidualLSTMCell(k, n) for k, n in zip(inputs, num_hidden))
        self.register_buffer("moments", moment_matrix(PHYSICS_KERNEL), persistent=False)

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        hidden = [like.new_zeros(batch, n, *self.grid) for n in self.residual_hidden]
        return {"physics": [like.new_zeros(batch, ENCODED, *self.grid)], "h": list(hidden), "c": list(hidden)}

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        """x (B, C, H, W) -> the two branches' decoded sum (B, 64, h, w), which the readout decodes to a frame."""
        encoded = self.encoder(x)
        state["physics"][0] = self.phycell(self.encoder_physics(encoded), state["physics"][0])
        below = self.encoder_residual(encoded)
        for layer, cell in enumerate(self.residual_cells):
            state["h"][layer], state["c"][layer] = cell(below, state["h"][layer], state["c"][layer])
            below = state["h"][layer]
        return self.decoder_physics(state["physics"][0]) + self.decoder_residual(below)

    def auxiliary_loss(self, training_terms: list[Tensor], like: Tensor) -> Tensor:
        """The moment constraint in training, zero at test time."""
        return self.moment_loss() if self.training else like.new_zeros(())

    def moment_loss(self) -> Tensor:
        """Sum over the 64 input channels of MSE(K2M(filters), unit moments); filters (49, 64, 7, 7)."""
        filters = self.phycell.physics[0].weight.double()
        moments = torch.einsum("ap,bq,ncpq->cnab", self.moments, self.moments, filters)  # (64, 49, 7, 7)
        target = torch.eye(PHYSICS_FILTERS, dtype=moments.dtype, device=moments.device)
        target = target.view(PHYSICS_FILTERS, PHYSICS_KERNEL, PHYSICS_KERNEL)
        return (moments.float() - target.float()).square().mean(dim=(1, 2, 3)).sum()


@MODELS.register("phydnet")
@with_sampling_options()
def phydnet(
    shape: ClipShape, patch_size: int = 4, num_hidden: list[int] = RESIDUAL_HIDDEN, *, schedule: SamplingSchedule
) -> PhyDNet:
    """PhyDNet; ``patch_size`` 2 or 4 is the encoder's downsampling, ``num_hidden`` the ConvLSTM's widths (the
    residual decoder reads the last one's output; OpenSTL's 128, 128, 64 by default)."""
    widths = tuple(num_hidden) if isinstance(num_hidden, (list, tuple)) else ()
    if not widths or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in widths):
        raise SvqbenchError(
            f"model.num_hidden={num_hidden!r}: expected a list of positive channel counts, e.g. [128, 128, 64]"
        )
    if patch_size not in (2, 4) or shape.height % patch_size or shape.width % patch_size:
        raise SvqbenchError(
            f"model.patch_size={patch_size}; valid: 2 or 4, dividing the frame size {shape.height}x{shape.width}"
        )
    return PhyDNet(shape, patch_size, widths, schedule)
