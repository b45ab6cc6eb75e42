"""One small name -> factory registry, used for models, translators, quantizers and datasets."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from svqbench.errors import SvqbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name fails with the list of known ones.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("persistence")
    ... class Persistence: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise SvqbenchError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
