"""The Python API's entry points that need the engine, reached from the package as ``svqbench.load_run``.

``load_run(PATH, device="auto")`` -> a :class:`Forecaster`: the run's model (its selected checkpoint, as ``eval``
picks it) on a device, ready to forecast; ``forecaster.forecast(inputs, frames_out)`` takes inputs
(B, T_in, C, H, W) in the dataset's value space and returns frames (B, frames_out, C_out, H, W), rolling the model
out past its training horizon when ``frames_out`` asks for more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from svqbench.data.base import DatasetInfo
from svqbench.engine.machine import resolve_device
from svqbench.engine.runs import LoadedRun
from svqbench.errors import SvqbenchError
from svqbench.models import forecast


@dataclass
class Forecaster:
    """A trained run's model in evaluation mode on ``device``, with its dataset's facts (``info``)."""

    run: LoadedRun

    @property
    def model(self) -> torch.nn.Module:
        return self.run.model

    @property
    def info(self) -> DatasetInfo:
        return self.run.info

    @property
    def device(self) -> torch.device:
        return self.run.device

    @torch.no_grad()
    def forecast(self, inputs: torch.Tensor, frames_out: int | None = None) -> torch.Tensor:
        """inputs (B, T_in, C, H, W) or one clip (T_in, C, H, W) -> frames (B, frames_out, C_out, H, W) (or
        (frames_out, C_out, H, W)) on the run's device; ``frames_out`` defaults to the trained horizon."""
        single = inputs.dim() == 4
        batch = inputs[None] if single else inputs
        expected = (self.info.frames_in, self.info.channels, self.info.height, self.info.width)
        if batch.dim() != 5 or tuple(batch.shape[1:]) != expected:
            raise SvqbenchError(
                f"inputs of shape {tuple(inputs.shape)}: the run takes (B, {', '.join(map(str, expected))})"
            )
        frames = forecast(self.model, batch.to(self.device, torch.float32), frames_out or self.info.frames_out).frames
        return frames[0] if single else frames


def load_run(path: str | Path, device: str | torch.device = "auto") -> Forecaster:
    """The run in ``path`` (a folder ``svqbench train`` wrote, or ``import-openstl``) ready to forecast."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    return Forecaster(LoadedRun(Path(path), device))
