"""Models: one registry; every model maps input clips to a :class:`Forecast`.

Contract: ``model(inputs)`` with inputs ``(B, T_in, C, H, W)`` returns ``Forecast(frames, aux_loss)``
with frames ``(B, T_in, C, H, W)`` (one pass; :func:`forecast` rolls out to any horizon) and
``aux_loss`` a scalar tensor added to the training loss (zero for most models).

>>> model = create_model("simvp_svq", info, hid_S=16, codebook_size=512)
>>> prediction = forecast(model, inputs, frames_out=20).frames   # (B, 20, C, H, W)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from svqbench.data.base import DatasetInfo
from svqbench.errors import SvqbenchError
from svqbench.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class Forecast(NamedTuple):
    frames: torch.Tensor  # (B, T, C, H, W)
    aux_loss: torch.Tensor  # scalar


def model_arguments(name: str) -> list[str]:
    """Names of the keyword arguments a registered model accepts (besides the dataset facts)."""
    params = inspect.signature(MODELS.get(name)).parameters
    return [p for p in params if p != "info"]


def check_model_args(name: str, args: dict[str, Any], source: str = "recipe") -> None:
    valid = model_arguments(name)
    for key in args:
        if key not in valid:
            raise SvqbenchError(
                f"{source}: model {name!r} has no argument {key!r}; valid: {', '.join(valid) or 'none'}"
            )


def create_model(name: str, info: DatasetInfo, **args: Any) -> nn.Module:
    """Build registered model ``name`` for a dataset's shapes; unknown arguments are errors."""
    check_model_args(name, args, source=f"model {name}")
    return MODELS.get(name)(info, **args)


def forecast(model: nn.Module, inputs: torch.Tensor, frames_out: int) -> Forecast:
    """Predict ``frames_out`` frames, rolling the model out when it makes fewer per pass.

    Each pass is fed the previous pass's prediction (KTH 10->20 = two 10->10 passes); the
    result is truncated to ``frames_out``. Auxiliary losses of the passes are summed.
    inputs (B, T_in, C, H, W) -> Forecast(frames (B, frames_out, C, H, W), aux_loss).
    """
    passes = []
    aux = inputs.new_zeros(())
    clip = inputs
    per_pass = inputs.shape[1]
    for _ in range(math.ceil(frames_out / per_pass)):
        out = model(clip)
        passes.append(out.frames)
        aux = aux + out.aux_loss
        clip = out.frames
    frames = torch.cat(passes, dim=1) if len(passes) > 1 else passes[0]
    return Forecast(frames[:, :frames_out], aux)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from svqbench.models import persistence, simvp  # noqa: E402,F401  (registers the models)
