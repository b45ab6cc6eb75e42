"""One small name -> factory registry, used for models, translators, quantizers and datasets.

A registry given an entry-point ``group`` also finds the objects that installed packages declare there
(``[project.entry-points."svqbench.models"] mynet = "mypkg.nets:MyNet"``), loaded on first use.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Generic, Iterator, TypeVar

from svqbench.errors import SvqbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name fails with the list of known ones.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("persistence")
    ... class Persistence: ...
    """

    def __init__(self, kind: str, group: str | None = None, base: type | None = None):
        self.kind = kind
        self.group = group  # entry-point group of installed plugins, e.g. "svqbench.models"
        self.base = base  # what an entry point must load: a subclass of this class (else any callable)
        self._entries: dict[str, T] = {}
        self._loaded: dict[str, T] = {}  # entry points loaded so far

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if name not in self._loaded and name in self.plugin_names():
            self._loaded[name] = self._load(self.plugin(name))
        try:
            return self._loaded[name]
        except KeyError:
            raise SvqbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def built_in(self, name: str) -> bool:
        """Registered in-process (with :meth:`register`), not by an installed package's entry point."""
        return name in self._entries

    def plugin(self, name: str) -> EntryPoint:
        """The entry point declaring ``name`` in this registry's group."""
        return next(iter(entry_points(group=self.group).select(name=name)))

    def plugin_names(self) -> list[str]:
        """Names declared by installed packages in this registry's entry-point group."""
        return sorted({ep.name for ep in entry_points(group=self.group)}) if self.group else []

    def _load(self, entry: EntryPoint) -> T:
        where = f"{self.kind} {entry.name!r} (entry point {entry.value!r} in group {self.group})"
        try:
            obj = entry.load()
        except Exception as e:  # the plugin's own import error, whatever its type
            message = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SvqbenchError(f"{where}: cannot load it ({type(e).__name__}: {message})") from None
        wanted = (
            issubclass(obj, self.base) if self.base and isinstance(obj, type) else self.base is None and callable(obj)
        )
        if not wanted:
            expected = f"a subclass of {self.base.__name__}" if self.base else "a class or function"
            raise SvqbenchError(f"{where}: loads {type(obj).__name__} {obj!r:.60}, expected {expected}")
        return obj

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self.plugin_names()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.plugin_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
