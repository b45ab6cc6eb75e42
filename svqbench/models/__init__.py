"""Models: one registry; every model maps input clips to a :class:`Forecast`.

Contract: a registered factory takes a :class:`ClipShape` (the only thing a model knows of its
data) and keyword options. ``model(inputs)`` with inputs ``(B, T_in, C, H, W)`` returns
``Forecast(frames, aux_loss)``: frames ``(B, T_pass, C, H, W)`` for one pass (SimVP: T_pass = T_in;
recurrent models: T_pass = T_out) and ``aux_loss`` a scalar tensor added to the training loss (zero
for most models). :func:`forecast` rolls any model out to any horizon.

A model whose training pass must see the targets (scheduled sampling) sets the class attribute
``trains_with_targets = True`` and accepts ``model(inputs, targets=targets, step=step)``;
:func:`training_forecast` calls it so (through a DistributedDataParallel wrapper too). That pass
must be a pure function of its arguments and the weights, so that resuming a run at any step replays it
exactly: random layers draw through :mod:`svqbench.keyed`, which the training step keys by (seed, step,
index of the sample in the global batch), so the draws do not depend on the world size either.

A model of one's own joins without registering anything: ``model.name`` may be ``package.module:Factory``,
``path/to/file.py:Factory`` or an entry point of group ``svqbench.models`` (see :mod:`svqbench.models.plugins`);
its ``forward`` may return the frames alone, a tensor.

>>> model = create_model("simvp_svq", ClipShape(10, 20, 1, 64, 64), hid_S=16, codebook_size=512)
>>> prediction = forecast(model, inputs, frames_out=20).frames   # (B, 20, C, H, W)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
from torch import nn

from svqbench.errors import SvqbenchError

# the built-in model modules register themselves in MODELS as they are imported
from svqbench.models import (  # noqa: F401
    blank,
    persistence,
    plugins,
    recurrent,
    recurrent_causal,
    recurrent_eidetic,
    recurrent_mau,
    recurrent_phydnet,
    recurrent_swin,
    simvp,
)
from svqbench.models.base import MODELS, Forecast
from svqbench.models.recurrent import RecurrentForecaster
from svqbench.models.shape import ClipShape


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory of a built-in or installed model, or of a plugin's import path (``module:Factory``)."""
    if plugins.is_import_path(name):
        return plugins.load_factory(name)
    if name not in MODELS:
        raise SvqbenchError(
            f"unknown model {name!r}; valid: {', '.join(MODELS.names())}, or a plugin: "
            "package.module:Factory or path/to/file.py:Factory"
        )
    return MODELS.get(name)


def _parameters(name: str) -> list[inspect.Parameter]:
    """The factory's parameters after the first (the clip shape)."""
    try:
        return list(inspect.signature(model_factory(name)).parameters.values())[1:]
    except (TypeError, ValueError):  # a callable without a readable signature: its arguments are unknown
        return [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]


def model_arguments(name: str) -> list[str]:
    """Names of the keyword arguments a model accepts (besides the clip shape)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in _parameters(name) if p.kind in named]


def accepts_any_argument(name: str) -> bool:
    """A factory taking ``**options`` accepts any key."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _parameters(name))


def check_model_args(name: str, args: dict[str, Any], source: str = "recipe") -> None:
    valid = model_arguments(name)
    defaults = {p.name: p.default for p in _parameters(name)}
    for key, value in args.items():
        if key not in valid and not accepts_any_argument(name):
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
    clip = ClipShape.of(shape)
    if MODELS.built_in(name):
        model = MODELS.get(name)(clip, **args)
        if not clip.predicts_inputs and isinstance(model, RecurrentForecaster):
            raise SvqbenchError(
                f"model {name} feeds its own predictions back as its next inputs, so it must predict every input "
                f"channel; this dataset predicts {clip.out_channels} target channel(s) of {clip.channels}: use a "
                "SimVP-family model, or prepare the data without --target"
            )
        return model
    return plugins.build(name, model_factory(name), ClipShape.of(shape), args)


def as_forecast(out: Any, inputs: torch.Tensor) -> Forecast:
    """A model's output as a :class:`Forecast`: plugins may return the frames alone (no auxiliary loss)."""
    if isinstance(out, torch.Tensor):
        return Forecast(out, inputs.new_zeros(()))
    return Forecast(*out)


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
        out = as_forecast(model(clip), clip)
        passes.append(out.frames)
        aux = aux + out.aux_loss
        made += out.frames.shape[1]
        if made < frames_out and out.frames.shape[2] != clip.shape[2]:
            raise SvqbenchError(
                f"predicting {frames_out} frames needs another pass on the model's own predictions, but it predicts "
                f"{out.frames.shape[2]} target channels of the {clip.shape[2]} inputs: evaluate at most "
                f"{made} frames (--frames {made})"
            )
        if made < frames_out:
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
        return as_forecast(model(inputs, targets=targets, step=step), inputs)
    return forecast(model, inputs, targets.shape[1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_catalog(shape: Any, extra: list[str] = ()) -> list[dict[str, Any]]:
    """Every built-in and installed model, then ``extra`` plugin names, each with its parameter count at
    ``shape`` with default arguments (built on the meta device: no weights), or why it cannot be built.
    -> [{"name", "kind": "built-in" | "entry point" | "plugin", "parameters": int | None, "note": str}]"""
    rows = []
    for name in [*MODELS.names(), *extra]:
        kind = "built-in" if MODELS.built_in(name) else "plugin" if plugins.is_import_path(name) else "entry point"
        try:
            with torch.device("meta"):
                count, note = count_parameters(create_model(name, shape)), ""
        except SvqbenchError as e:
            count, note = None, str(e)
        if kind == "entry point":
            note = note or MODELS.plugin(name).value
        rows.append({"name": name, "kind": kind, "parameters": count, "note": note})
    return rows
