"""Models: one registry; every model maps input clips to a :class:`Forecast`.

Contract: a registered factory takes a :class:`ClipShape` (the only thing a model knows of its
data) and keyword options. ``model(inputs)`` with inputs ``(B, T_in, C, H, W)`` returns
``Forecast(frames, aux_loss)``: frames ``(B, T_pass, C, H, W)`` for one pass (SimVP: T_pass = T_in;
recurrent models: T_pass = T_out) and ``aux_loss`` a scalar tensor added to the training loss (zero
for most models). :func:`forecast` rolls any model out to any horizon.

A model whose training pass must see the targets (scheduled sampling) sets the class attribute
``trains_with_targets = True`` and accepts ``model(inputs, targets=targets, step=step)``;
:func:`training_forecast` calls it so (through a DistributedDataParallel wrapper too). That pass
must be a pure function of its arguments and the weights (randomness from a generator seeded by
``step``), so that resuming a run at any step replays it exactly.

>>> model = create_model("simvp_svq", ClipShape(10, 20, 1, 64, 64), hid_S=16, codebook_size=512)
>>> prediction = forecast(model, inputs, frames_out=20).frames   # (B, 20, C, H, W)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from svqbench.errors import SvqbenchError
from svqbench.models.shape import ClipShape
from svqbench.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class Forecast(NamedTuple):
    frames: torch.Tensor  # (B, T, C, H, W)
    aux_loss: torch.Tensor  # scalar


def model_arguments(name: str) -> list[str]:
    """Names of the keyword arguments a registered model accepts (besides the clip shape)."""
    params = inspect.signature(MODELS.get(name)).parameters
    return [p for p in params if p != "shape"]


def check_model_args(name: str, args: dict[str, Any], source: str = "recipe") -> None:
    valid = model_arguments(name)
    defaults = {k: p.default for k, p in inspect.signature(MODELS.get(name)).parameters.items()}
    for key, value in args.items():
        if key not in valid:
            raise SvqbenchError(
                f"{source}: model {name!r} has no argument {key!r}; valid: {', '.join(valid) or 'none'}"
            )
        default = defaults.get(key)
        if isinstance(value, bool) and type(default) in (int, float):
            raise SvqbenchError(f"{source}: model.{key}: expected a number, got {str(value).lower()}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SvqbenchError(f"{source}: model.{key}: expected a finite number, got {value}")


def create_model(name: str, shape: Any, **args: Any) -> nn.Module:
    """Build registered model ``name`` for clips of ``shape`` (a :class:`ClipShape`, or anything with its
    five attributes, such as a ``DatasetInfo``); unknown arguments are errors."""
    check_model_args(name, args, source=f"model {name}")
    return MODELS.get(name)(ClipShape.of(shape), **args)


def forecast(model: nn.Module, inputs: torch.Tensor, frames_out: int) -> Forecast:
    """Predict ``frames_out`` frames, rolling the model out when it makes fewer per pass.

    Each further pass is fed the latest ``T_in`` frames, predictions included (KTH 10->20 with
    SimVP = two 10->10 passes); the result is truncated to ``frames_out``. Auxiliary losses of the
    passes are summed. inputs (B, T_in, C, H, W) -> Forecast(frames (B, frames_out, C, H, W), aux_loss).
    """
    passes = []
    aux = inputs.new_zeros(())
    clip = inputs
    frames_in = inputs.shape[1]
    made = 0
    while made < frames_out:
        out = model(clip)
        passes.append(out.frames)
        aux = aux + out.aux_loss
        made += out.frames.shape[1]
        clip = torch.cat([clip, out.frames], dim=1)[:, -frames_in:]
    frames = torch.cat(passes, dim=1) if len(passes) > 1 else passes[0]
    return Forecast(frames[:, :frames_out], aux)


def training_forecast(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> Forecast:
    """The forecast a training step learns from. Models with ``trains_with_targets`` see the targets
    and the step (scheduled sampling); others are rolled out by :func:`forecast` to the targets' horizon.
    ``model`` may be wrapped in DistributedDataParallel.
    inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W) -> Forecast(frames (B, T_out, C, H, W), aux_loss)."""
    core = getattr(model, "module", model)
    if getattr(core, "trains_with_targets", False):
        return model(inputs, targets=targets, step=step)
    return forecast(model, inputs, targets.shape[1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from svqbench.models import blank, persistence, recurrent, simvp  # noqa: E402,F401  (registers the models)
