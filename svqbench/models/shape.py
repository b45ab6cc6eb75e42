"""The only thing a model knows of its data: the shape of one clip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClipShape:
    """``frames_in`` input frames of ``(channels, height, width)`` predict ``frames_out`` frames."""

    frames_in: int
    frames_out: int
    channels: int
    height: int
    width: int
    # the input channels a model predicts (indices), when they are not all of them: t2m from t2m, u10 and v10
    targets: tuple[int, ...] = ()

    @classmethod
    def of(cls, facts: Any) -> "ClipShape":
        """The clip shape of anything carrying these attributes (a ``DatasetInfo``, say; ``targets`` optional)."""
        targets = tuple(getattr(facts, "targets", ()) or ())
        return cls(facts.frames_in, facts.frames_out, facts.channels, facts.height, facts.width, targets)

    @property
    def out_channels(self) -> int:
        """Channels of a predicted frame: the target channels, or every input channel."""
        return len(self.targets) or self.channels

    @property
    def predicts_inputs(self) -> bool:
        """Whether predictions have the inputs' channels (so they can be fed back as inputs)."""
        return not self.targets or tuple(self.targets) == tuple(range(self.channels))

    @property
    def shape_in(self) -> tuple[int, int, int, int]:
        """(T_in, C, H, W) of one input clip."""
        return (self.frames_in, self.channels, self.height, self.width)

    @property
    def shape_out(self) -> tuple[int, int, int, int]:
        """(T_out, C_out, H, W) of one target clip."""
        return (self.frames_out, self.out_channels, self.height, self.width)
