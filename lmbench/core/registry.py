"""A small name -> object registry with "did you mean" errors (after lm-evaluation-harness).

Entries may be lazy: ``register_lazy("gpt", "lmbench.models.gpt:GPTLM")`` names where the object
lives, and the module is imported on the first ``get``, so listing names (``lmbench --help``)
never imports torch. ``lmbench.models.catalog`` is the one place that registers the families.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lmbench.core.errors import LmbenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (or to ``"module:attribute"`` placeholders, resolved on first use);
    a miss raises ``LmbenchError`` with the closest name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what the names name, for messages: "model", "corpus", ...
        self._entries: dict[str, T | str] = {}

    def _add(self, name: str, entry: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def register(self, *names: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            for name in names:
                self._add(name, obj)
            return obj

        return decorate

    def register_lazy(self, name: str, where: str) -> None:
        """Register ``"package.module:attribute"`` under ``name``, imported on first use."""
        if ":" not in where:
            raise ValueError(f"lazy entry {where!r} must look like 'module:attribute'")
        self._add(name, where)

    def get(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise LmbenchError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}"
            ) from None
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """Every registered name, sorted, without importing anything."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]
