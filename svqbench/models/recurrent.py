"""The recurrent baselines the field compares against: ``convlstm``, ``predrnn``, ``predrnn_v2``.

Structure as in OpenSTL (ConvLSTM: Shi et al. 2015; PredRNN: Wang et al. 2017; PredRNN-V2: Wang et
al. 2021): frames are cut into ``patch_size`` x ``patch_size`` patches stacked as channels, a stack
of convolutional cells (``num_hidden`` channels each, ``filter_size`` kernels) steps through time, a
1x1 convolution reads the top hidden state out as the next frame. Each step predicts frame t+1 from
frame t, so T_in + T_out - 1 steps make the T_out outputs.

What the cell is fed after the first frame is a training choice:

- test time (``model(inputs)``, or any call in eval mode): the true input frames, then only its own
  predictions; no ground truth ever enters after the input frames;
- scheduled sampling (ConvLSTM, PredRNN): output steps are fed the true frame with probability
  ``eta``, which falls linearly from ``sampling_start_value`` by ``sampling_changing_rate`` a step
  and is 0 from ``sampling_stop_iter`` on;
- reverse scheduled sampling (PredRNN-V2): input steps too may be fed the model's own prediction;
  their true-frame probability rises from 0.5 to 1 (exponentially, time constant ``r_exp_alpha``)
  between ``r_sampling_step_1`` and ``r_sampling_step_2`` while that of output steps falls from 0.5 to 0.

The random choices are one coin per (sample, step). In a training step they are keyed by (training seed,
step, the sample's index in the global batch, ``sampling_seed``) (svqbench.keyed), so they do not depend
on the world size; called outside one, by (``sampling_seed``, step, index in this batch). Either way a
training pass is a pure function of its arguments and the weights, and the schedule is a function of
the step, so a resumed run replays exactly.

Differences from OpenSTL, on purpose: OpenSTL's loss also covers the frames predicted during the input
steps; svqbench's training loss covers the T_out outputs (the predictions of input steps still learn
through what they feed). PredRNN-V2's decoupling loss (``decouple_beta`` x mean |cos| between the
adapted memory increments) is the model's ``aux_loss`` in training; at test time the adapter is skipped.

Shapes: B batch, T frames, C channels, H x W frame, p patch size, K = C p^2 patch channels,
h x w = H/p x W/p the cells' grid, N hidden channels.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from svqbench import keyed
from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS, Forecast
from svqbench.models.shape import ClipShape

FORGET_BIAS = 1.0  # added to the forget gates' pre-activations, as in PredRNN's cells


def to_patches(frames: Tensor, patch_size: int) -> Tensor:
    """(B, T, C, H, W) -> (B, T, K, h, w): each p x p patch becomes K = p*p*C channels (OpenSTL's order)."""
    return rearrange(frames, "b t c (h p) (w q) -> b t (p q c) h w", p=patch_size, q=patch_size)


def from_patches(patches: Tensor, patch_size: int) -> Tensor:
    """(B, T, K, h, w) -> (B, T, C, H, W), the inverse of :func:`to_patches`."""
    return rearrange(patches, "b t (p q c) h w -> b t c (h p) (w q)", p=patch_size, q=patch_size)


@dataclass(frozen=True)
class SamplingSchedule:
    """When training feeds the cells the true frame rather than their own prediction (see module doc)."""

    scheduled_sampling: bool = True
    sampling_stop_iter: int = 50000
    sampling_start_value: float = 1.0
    sampling_changing_rate: float = 0.00002
    reverse_scheduled_sampling: bool = False
    r_sampling_step_1: int = 25000
    r_sampling_step_2: int = 50000
    r_exp_alpha: float = 5000.0
    sampling_seed: int = 0  # with the training step, seeds the coins

    def __post_init__(self) -> None:
        if self.sampling_stop_iter < 0 or self.sampling_changing_rate < 0:
            raise SvqbenchError("model.sampling_stop_iter and model.sampling_changing_rate: valid: numbers >= 0")
        if not 0 <= self.r_sampling_step_1 <= self.r_sampling_step_2 or self.r_exp_alpha <= 0:
            raise SvqbenchError(
                f"model.r_sampling_step_1={self.r_sampling_step_1}, r_sampling_step_2={self.r_sampling_step_2}, "
                f"r_exp_alpha={self.r_exp_alpha}; valid: 0 <= step_1 <= step_2 and r_exp_alpha > 0"
            )

    def true_frame_probabilities(self, step: int) -> tuple[float, float]:
        """(for input steps, for output steps) at training step ``step`` (0-based, as OpenSTL's iteration)."""
        if self.reverse_scheduled_sampling:
            if step < self.r_sampling_step_1:
                return 0.5, 0.5
            if step < self.r_sampling_step_2:
                since = step - self.r_sampling_step_1
                span = self.r_sampling_step_2 - self.r_sampling_step_1
                return 1.0 - 0.5 * float(np.exp(-since / self.r_exp_alpha)), 0.5 - 0.5 * since / span
            return 1.0, 0.0
        if not self.scheduled_sampling or step >= self.sampling_stop_iter:
            return 1.0, 0.0
        # OpenSTL lowers eta before drawing, so step 0 already uses start - rate
        return 1.0, max(0.0, self.sampling_start_value - self.sampling_changing_rate * (step + 1))

    def teacher_mask(self, step: int, batch: int, frames_in: int, frames_out: int) -> Tensor:
        """(B, T_in + T_out - 2) of 0/1: 1 where step t = 1 .. T-2 is fed the true frame t."""
        p_in, p_out = self.true_frame_probabilities(step)
        key = keyed.active() or keyed.StepKey(self.sampling_seed, step, first_sample=0, samples=batch)
        coins = keyed.uniform(f"sampling:{self.sampling_seed}", batch, (frames_in + frames_out - 2,), "cpu", key)
        probability = torch.tensor([p_in] * (frames_in - 1) + [p_out] * (frames_out - 1))
        return (coins < probability).float()


def gate_conv(
    in_channels: int, out_channels: int, filter_size: int, layer_norm: bool, grid: tuple[int, int]
) -> nn.Sequential:
    """A bias-free, size-keeping convolution, then LayerNorm over (out_channels, h, w) when ``layer_norm``."""
    conv = nn.Conv2d(in_channels, out_channels, filter_size, padding=filter_size // 2, bias=False)
    return nn.Sequential(conv, nn.LayerNorm([out_channels, *grid])) if layer_norm else nn.Sequential(conv)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer. ``form="standard"``: Shi et al., h = o * tanh(c), forget bias 1.

    ``form="openstl"`` reproduces OpenSTL's cell, whose numbers the field quotes: h = o * g (the cell
    state never reaches the output) and no forget bias. OpenSTL also builds two convolutions its
    forward never calls (``conv_o``, ``conv_last``); 3.4M of the 14.9M parameters in its KTH table.
    They are kept here, frozen, so that the parameter count is the published one.
    """

    def __init__(
        self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool, form: str
    ):
        super().__init__()
        self.hidden = hidden
        self.form = form
        self.conv_x = gate_conv(in_channels, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_h = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        if form == "openstl":
            self.unused = nn.ModuleDict(
                {
                    "conv_o": gate_conv(2 * hidden, hidden, filter_size, layer_norm, grid),
                    "conv_last": nn.Conv2d(2 * hidden, hidden, 1, bias=False),
                }
            ).requires_grad_(False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, K_in, h, w), h and c (B, N, h, w) -> new (h, c)."""
        i_x, f_x, g_x, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        forget_bias = 0.0 if self.form == "openstl" else FORGET_BIAS
        g = torch.tanh(g_x + g_h)
        c_new = torch.sigmoid(f_x + f_h + forget_bias) * c + torch.sigmoid(i_x + i_h) * g
        o = torch.sigmoid(o_x + o_h)
        h_new = o * g if self.form == "openstl" else o * torch.tanh(c_new)
        return h_new, c_new


class SpatioTemporalLSTMCell(nn.Module):
    """One ST-LSTM layer (PredRNN): a temporal memory c and a spatiotemporal memory m that zigzags
    up the stack and back to the bottom at the next step. Also returns the memories' increments,
    which PredRNN-V2's decoupling loss keeps apart."""

    def __init__(self, in_channels: int, hidden: int, grid: tuple[int, int], filter_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_x = gate_conv(in_channels, 7 * hidden, filter_size, layer_norm, grid)
        self.conv_h = gate_conv(hidden, 4 * hidden, filter_size, layer_norm, grid)
        self.conv_m = gate_conv(hidden, 3 * hidden, filter_size, layer_norm, grid)
        self.conv_o = gate_conv(2 * hidden, hidden, filter_size, layer_norm, grid)
        self.conv_memory = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, ...]:
        """x (B, K_in, h, w); h, c, m (B, N, h, w) -> new (h, c, m) and the increments (delta_c, delta_m)."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_m, f_m, g_m = torch.split(self.conv_m(m), self.hidden, dim=1)
        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        c_new = torch.sigmoid(f_x + f_h + FORGET_BIAS) * c + delta_c
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        m_new = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * m + delta_m
        memory = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(o_x + o_h + self.conv_o(memory))
        h_new = o * torch.tanh(self.conv_memory(memory))
        return h_new, c_new, m_new, delta_c, delta_m


class RecurrentForecaster(nn.Module):
    """Patches in, a stack of cells stepped through time, a 1x1 readout to the next frame's patches.

    ``model(inputs)`` -> Forecast(frames (B, T_out, C, H, W), zero aux_loss); in training mode,
    ``model(inputs, targets=targets, step=step)`` is the scheduled-sampling pass of that step.
    Subclasses define the cells' state and one step through the stack (:meth:`advance`).
    """

    trains_with_targets = True

    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        patch_size: int,
        schedule: SamplingSchedule,
        readout: nn.Module | None = None,
    ):
        super().__init__()
        self.frames_in = shape.frames_in
        self.frames_out = shape.frames_out
        self.patch_size = patch_size
        self.patch_channels = patch_size * patch_size * shape.channels
        self.grid = (shape.height // patch_size, shape.width // patch_size)
        self.num_hidden = list(num_hidden)
        self.schedule = schedule
        # most cells are read out by a 1x1 convolution; models with their own decoder pass it
        if readout is None:
            readout = nn.Conv2d(self.num_hidden[-1], self.patch_channels, 1, bias=False)
        self.readout = readout

    def cell_inputs(self) -> list[int]:
        """Input channels of each layer: the patches for the first, the hidden state below for the rest."""
        return [self.patch_channels, *self.num_hidden[:-1]]

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        """Step the stack on x (B, K, h, w), updating ``state``; returns the top hidden state (B, N, h, w)."""
        raise NotImplementedError

    def auxiliary_loss(self, training_terms: list[Tensor], like: Tensor) -> Tensor:
        return like.new_zeros(())

    def forward(self, inputs: Tensor, targets: Tensor | None = None, step: int | None = None) -> Forecast:
        """inputs (B, T_in, C, H, W) [, targets (B, T_out, C, H, W), training step] -> Forecast."""
        teacher = self.training and targets is not None
        if teacher and step is None:
            raise SvqbenchError("a scheduled-sampling pass needs the training step: model(inputs, targets, step=...)")
        horizon = targets.shape[1] if teacher else self.frames_out
        frames = torch.cat([inputs, targets], dim=1) if teacher else inputs
        patches = to_patches(frames, self.patch_size)
        batch = inputs.shape[0]
        mask = None
        if teacher:
            mask = self.schedule.teacher_mask(step, batch, self.frames_in, horizon)
            mask = mask.to(device=inputs.device, dtype=patches.dtype)[:, :, None, None, None]
        state = self.initial_state(batch, patches)
        training_terms: list[Tensor] = []
        predictions = []
        prediction = None
        for t in range(self.frames_in + horizon - 1):
            if t == 0 or (mask is None and t < self.frames_in):
                x = patches[:, t]
            elif mask is None:
                x = prediction
            else:
                x = mask[:, t - 1] * patches[:, t] + (1 - mask[:, t - 1]) * prediction
            prediction = self.readout(self.advance(x, state, training_terms))
            predictions.append(prediction)
        out = from_patches(torch.stack(predictions[-horizon:], dim=1), self.patch_size)
        return Forecast(out, self.auxiliary_loss(training_terms, out))


class ConvLSTM(RecurrentForecaster):
    def __init__(
        self,
        shape: ClipShape,
        num_hidden: Sequence[int],
        filter_size: int,
        layer_norm: bool,
        patch_size: int,
        schedule: SamplingSchedule,
        form: str,
    ):
        super().__init__(shape, num_hidden, patch_size, schedule)
        self.cells = nn.ModuleList(
            ConvLSTMCell(k, n, self.grid, filter_size, layer_norm, form)
            for k, n in zip(self.cell_inputs(), self.num_hidden)
        )

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, n, *self.grid) for n in self.num_hidden]
        return {"h": list(zeros), "c": list(zeros)}

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        below = x
        for layer, cell in enumerate(self.cells):
            state["h"][layer], state["c"][layer] = cell(below, state["h"][layer], state["c"][layer])
            below = state["h"][layer]
        return below


class PredRNN(RecurrentForecaster):
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
            SpatioTemporalLSTMCell(k, n, self.grid, filter_size, layer_norm)
            for k, n in zip(self.cell_inputs(), self.num_hidden)
        )

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, n, *self.grid) for n in self.num_hidden]
        return {"h": list(zeros), "c": list(zeros), "m": [zeros[0]]}

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        below, memory = x, state["m"][0]
        for layer, cell in enumerate(self.cells):
            h, c, memory, delta_c, delta_m = cell(below, state["h"][layer], state["c"][layer], memory)
            state["h"][layer], state["c"][layer] = h, c
            self.record_increments(delta_c, delta_m, training_terms)
            below = h
        state["m"][0] = memory  # the top layer's memory enters the bottom layer at the next step
        return below

    def record_increments(self, delta_c: Tensor, delta_m: Tensor, training_terms: list[Tensor]) -> None:
        """PredRNN keeps nothing; PredRNN-V2 turns the increments into its decoupling loss."""


class PredRNNv2(PredRNN):
    """PredRNN with a shared 1x1 adapter on the memory increments and the decoupling loss:
    mean over steps, layers, samples and channels of |cos(adapter(delta_c), adapter(delta_m))| over
    the h x w positions, times ``decouple_beta``, as the training pass's aux_loss."""

    def __init__(self, *args, decouple_beta: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.decouple_beta = decouple_beta
        self.adapter = nn.Conv2d(self.num_hidden[0], self.num_hidden[0], 1, bias=False)

    def record_increments(self, delta_c: Tensor, delta_m: Tensor, training_terms: list[Tensor]) -> None:
        if not self.training:
            return
        adapted_c = self.adapter(delta_c).flatten(2)  # (B, N, h*w)
        adapted_m = self.adapter(delta_m).flatten(2)
        training_terms.append(F.cosine_similarity(adapted_c, adapted_m, dim=2).abs().mean())

    def auxiliary_loss(self, training_terms: list[Tensor], like: Tensor) -> Tensor:
        if not training_terms:
            return like.new_zeros(())
        return self.decouple_beta * torch.stack(training_terms).mean()


def check_options(
    shape: ClipShape, num_hidden: Sequence[int], filter_size: int, stride: int, patch_size: int, same_widths: bool
) -> list[int]:
    widths = list(num_hidden)
    if not widths or any(not isinstance(n, int) or n < 1 for n in widths):
        raise SvqbenchError(f"model.num_hidden={num_hidden!r}; valid: a list of positive integers, one per layer")
    if same_widths and len(set(widths)) > 1:
        raise SvqbenchError(
            f"model.num_hidden={widths}: the spatiotemporal memory passes through every layer, "
            "so all layers need the same width"
        )
    if filter_size < 1 or filter_size % 2 == 0:
        raise SvqbenchError(f"model.filter_size={filter_size}; valid: an odd integer >= 1 (the state keeps its size)")
    if stride != 1:
        raise SvqbenchError(f"model.stride={stride}; valid: 1 (a strided cell would shrink its own state)")
    if patch_size < 1 or shape.height % patch_size or shape.width % patch_size:
        raise SvqbenchError(f"model.patch_size={patch_size}: must divide the frame size {shape.height}x{shape.width}")
    return widths


def with_sampling_options(**defaults: object) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Give a factory ``build(shape, ..., schedule)`` every :class:`SamplingSchedule` field as a keyword
    option (OpenSTL's names; defaults from the dataclass unless given here), so recipes are validated
    against every name while each default is stated once."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        own = [p for p in inspect.signature(build).parameters.values() if p.name != "schedule"]
        sampling = [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(f.name, f.default), annotation=f.type
            )
            for f in fields(SamplingSchedule)
        ]
        signature = inspect.Signature(own + sampling)

        @functools.wraps(build)
        def factory(*args: object, **kwargs: object) -> nn.Module:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            options = dict(bound.arguments)
            schedule = SamplingSchedule(**{f.name: options.pop(f.name) for f in fields(SamplingSchedule)})
            return build(**options, schedule=schedule)

        factory.__signature__ = signature
        return factory

    return decorate


@MODELS.register("convlstm")
@with_sampling_options()
def convlstm(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    cell: str = "openstl",
    *,
    schedule: SamplingSchedule,
) -> ConvLSTM:
    """ConvLSTM (defaults as OpenSTL's Moving MNIST config); ``cell``: openstl (OpenSTL's cell, see
    :class:`ConvLSTMCell`) or standard (Shi et al.)."""
    if cell not in ("openstl", "standard"):
        raise SvqbenchError(f"model.cell={cell!r}; valid: openstl, standard")
    widths = check_options(shape, num_hidden, filter_size, stride, patch_size, same_widths=False)
    return ConvLSTM(shape, widths, filter_size, layer_norm, patch_size, schedule, cell)


@MODELS.register("predrnn")
@with_sampling_options()
def predrnn(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    *,
    schedule: SamplingSchedule,
) -> PredRNN:
    """PredRNN (defaults as OpenSTL's Moving MNIST config)."""
    widths = check_options(shape, num_hidden, filter_size, stride, patch_size, same_widths=True)
    return PredRNN(shape, widths, filter_size, layer_norm, patch_size, schedule)


@MODELS.register("predrnn_v2")
@with_sampling_options(reverse_scheduled_sampling=True)
def predrnn_v2(
    shape: ClipShape,
    num_hidden: Sequence[int] = (128, 128, 128, 128),
    filter_size: int = 5,
    stride: int = 1,
    patch_size: int = 4,
    layer_norm: bool = False,
    decouple_beta: float = 0.1,
    *,
    schedule: SamplingSchedule,
) -> PredRNNv2:
    """PredRNN-V2 (defaults as OpenSTL's Moving MNIST config): reverse scheduled sampling and the
    decoupling loss weighted by ``decouple_beta``."""
    widths = check_options(shape, num_hidden, filter_size, stride, patch_size, same_widths=True)
    if decouple_beta < 0:
        raise SvqbenchError(f"model.decouple_beta={decouple_beta}; valid: a number >= 0")
    return PredRNNv2(shape, widths, filter_size, layer_norm, patch_size, schedule, decouple_beta=decouple_beta)
