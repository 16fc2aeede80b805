"""A small name -> object registry with "did you mean" errors (after lm-evaluation-harness).

Each family file registers itself with ``@MODELS.register("name")``; ``lmbench/models/__init__.py``
imports every family explicitly, so that import list is the single source of truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lmbench.errors import LmbenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; a miss raises ``LmbenchError`` with the closest name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what the names name, for messages: "model", "corpus", ...
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise LmbenchError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())


MODELS: Registry = Registry("model")  # every family registers here: @MODELS.register("name")
