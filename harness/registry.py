"""One small registry, shared by problems, methods and patterns: names to definitions.

A name registered twice is an error naming both definitions (a plugin's `name = "linear"` would
otherwise silently replace the built-in problem, and its records take the real cells' ids),
unless the second registration says `replace=True`. The same definition registered again (a
plugin file imported a second time, or a copy of it) is not a clash.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryClash(ValueError):
    """A name that is taken, by another definition."""


def _defined(obj):
    """What was written in a source file: a class or function as is, an instance's class."""
    return obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)


def where(obj) -> str:
    """`module.Class (file:line)` of a class or function, or of an instance's class."""
    cls = _defined(obj)
    try:
        file = inspect.getsourcefile(cls) or "?"
        line = inspect.getsourcelines(cls)[1]
        at = f"{file}:{line}"
    except (OSError, TypeError):  # defined in a REPL or from a string
        at = "source unknown"
    return f"{cls.__module__}.{cls.__qualname__} ({at})"


def same_definition(a, b) -> bool:
    """One definition seen twice: the same place, or the same source text (a copy of a plugin
    file, as a run directory's config refers to it from elsewhere)."""
    if where(a) == where(b):
        return True
    ca, cb = (_defined(x) for x in (a, b))
    try:
        return ca.__qualname__ == cb.__qualname__ and inspect.getsource(ca) == inspect.getsource(cb)
    except (OSError, TypeError):
        return False


class Registry(Generic[T]):
    """Names of one kind ("problem", "method", "pattern") to their definitions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._shared: list[Registry] = []  # registries whose names this one's may not take

    def share_names(self, other: Registry) -> None:
        """One namespace for both (problems and layers: a config names either by its name alone)."""
        self._shared.append(other)
        other._shared.append(self)

    def add(self, name: str, item: T, replace: bool = False) -> T:
        for other in self._shared:
            if name in other:
                raise RegistryClash(
                    f"{self.kind} {name!r} of {where(item)} is the name of a {other.kind} already "
                    f"({where(other.get(name))}): problems and layers share one namespace: choose another "
                    "name"
                )
        old = self._items.get(name)
        if old is not None and not replace and not same_definition(old, item):
            raise RegistryClash(
                f"{self.kind} {name!r} is already registered by {where(old)}; {where(item)} registers "
                f"it again: choose another name, or register with replace=True to replace it on purpose"
            )
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def decorator(self, check: Callable[[type], None], make: Callable[[type], T] = lambda c: c):
        """A class decorator usable bare (`@register`) or with `replace=True`
        (`@register(replace=True)`); `check` validates the class, `make` turns it into the item."""

        def register(cls: type | None = None, *, replace: bool = False):
            def apply(c: type) -> type:
                check(c)
                self.add(c.name, make(c), replace=replace)
                return c

            return apply if cls is None else apply(cls)

        return register
