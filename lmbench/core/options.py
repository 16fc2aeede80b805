"""Options checked against frozen dataclasses: unknown keys (with a did-you-mean) and wrong types
are errors naming where they came from. Run files, family configs, published references and
tokenizer options are all validated here, once.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

from lmbench.core.errors import LmbenchError, did_you_mean


def check_fields(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``data`` against dataclass ``cls``: known keys, values of the declared types."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in known:
            raise LmbenchError(f"{where}: unknown key {key!r}{did_you_mean(key, known)}")
        expected = hints[key]
        if not _matches(value, expected):
            raise LmbenchError(
                f"{where}: {key!r} must be {_type_name(expected)}, got {type(value).__name__} "
                f"{value!r}"
            )
    return data


def check_arguments(function: Any, data: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``data`` against the keyword parameters of ``function`` (a constructor such as a
    tokenizer's ``__init__``): known names, values of the annotated types."""
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    known = [p.name for p in parameters]
    hints = typing.get_type_hints(function)
    for key, value in data.items():
        if key not in known:
            choices = f" (it takes: {', '.join(known)})" if known else " (it takes no options)"
            hint = did_you_mean(key, known) if known else ""
            raise LmbenchError(f"{where}: unknown key {key!r}{hint or choices}")
        if key in hints and not _matches(value, hints[key]):
            raise LmbenchError(f"{where}: {key!r} must be {_type_name(hints[key])}, got "
                               f"{type(value).__name__} {value!r}")
    return data


def build_config(cls: type, data: dict[str, Any], where: str):
    """Check ``data`` against dataclass ``cls`` and build it; nested dataclass fields (such as a
    family's ``train`` table) are checked and built the same way."""
    check_fields(cls, data, where)
    hints = typing.get_type_hints(cls)
    values = dict(data)
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            values[key] = build_config(hints[key], value, f"{where} [{key}]")
    return cls(**values)


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if dataclasses.is_dataclass(expected):
        return isinstance(value, (dict, expected))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if origin is dict or expected is dict:
        return isinstance(value, dict)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(expected))
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(expected)[0])}"
    return getattr(expected, "__name__", str(expected))
