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

    @classmethod
    def of(cls, facts: Any) -> "ClipShape":
        """The clip shape of anything carrying these five attributes (a ``DatasetInfo``, say)."""
        return cls(facts.frames_in, facts.frames_out, facts.channels, facts.height, facts.width)

    @property
    def shape_in(self) -> tuple[int, int, int, int]:
        """(T_in, C, H, W) of one input clip."""
        return (self.frames_in, self.channels, self.height, self.width)

    @property
    def shape_out(self) -> tuple[int, int, int, int]:
        """(T_out, C, H, W) of one target clip."""
        return (self.frames_out, self.channels, self.height, self.width)
