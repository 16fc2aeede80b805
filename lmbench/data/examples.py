"""Per-example training data: a prompt and the response to learn from it, or a prompt with a
chosen and a rejected response.

- ``Example(prompt, response)``: supervised fine-tuning (the SFT stage of Ouyang et al. 2022,
  "Training language models to follow instructions with human feedback", section 3.5): the
  loss counts the response's tokens only, each predicted from the prompt and the response so far.
- ``PreferencePair(prompt, chosen, rejected)``: a human (or judge) preferred ``chosen``; reward
  models (Ouyang et al. eq. 1, the Bradley-Terry loss -log sigmoid(r(x, y_w) - r(x, y_l))) and
  DPO (Rafailov et al. 2023, eq. 7) learn from such pairs.

A JSONL file holds one JSON object a line, all of one kind::

    {"prompt": "Q: 2 + 2?\\n", "response": "A: 4\\n"}
    {"prompt": "Say hi.\\n", "chosen": "Hi!\\n", "rejected": "No.\\n"}

Blank lines are skipped; any other mistake is an error naming the file, the line and the field.
Tokenizing, padding and loss masks are ``lmbench.training.batching``'s business.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError


@dataclass(frozen=True)
class Example:
    """A prompt and the response a model should learn to give."""

    prompt: str  # context only: never counted in the loss
    response: str  # the tokens the loss counts


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with the preferred (``chosen``) and the dispreferred (``rejected``) response."""

    prompt: str
    chosen: str
    rejected: str


_KINDS = (Example, PreferencePair)


def _kind_of(record: dict, where: str) -> type:
    keys = set(record)
    for kind in _KINDS:
        names = {f.name for f in fields(kind)}
        if keys == names:
            return kind
    if "chosen" in keys or "rejected" in keys:
        kind = PreferencePair
    else:
        kind = Example
    names = [f.name for f in fields(kind)]
    missing = [n for n in names if n not in keys]
    if missing:
        raise LmbenchError(f"{where}: missing field {missing[0]!r} (a {kind.__name__} has "
                           f"{', '.join(names)})")
    unknown = sorted(keys - set(names))
    raise LmbenchError(f"{where}: unknown field {unknown[0]!r} (a {kind.__name__} has "
                       f"{', '.join(names)})")


def example_from_dict(record: object, where: str = "example") -> Example | PreferencePair:
    """One JSON object -> an ``Example`` or a ``PreferencePair`` (errors start with ``where``)."""
    if not isinstance(record, dict):
        raise LmbenchError(f"{where}: expected a JSON object, got {type(record).__name__}")
    kind = _kind_of(record, where)
    for name, value in record.items():
        if not isinstance(value, str):
            raise LmbenchError(f"{where}: field {name!r} must be a string, got "
                               f"{type(value).__name__}")
    learned = ("response",) if kind is Example else ("chosen", "rejected")
    for name in learned:
        if not record[name]:
            raise LmbenchError(f"{where}: field {name!r} is empty (nothing to learn from)")
    return kind(**record)


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[str, Any]]:
    """The decoded lines of a JSONL file, blank lines skipped, each with its ``path:line``
    (for errors); a missing, non-UTF-8 or non-JSON file is a one-line ``LmbenchError`` naming
    the file (and line) and ``what`` it should hold ("examples", "preference")."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LmbenchError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise LmbenchError(f"{path}: expected a {what} .jsonl file, found a directory"
                           ) from None
    except UnicodeDecodeError:
        raise LmbenchError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise LmbenchError(f"{where}: not a JSON object ({error.msg})") from None
        yield where, record


def load_examples(path: str | Path) -> list[Example] | list[PreferencePair]:
    """Read a JSONL file of examples (module docstring); all lines must be of one kind.

    Args:
        path: the ``.jsonl`` file.

    Returns:
        The examples in file order.
    """
    examples: list = []
    for where, record in read_jsonl(path, "examples"):
        example = example_from_dict(record, where)
        if examples and type(example) is not type(examples[0]):
            raise LmbenchError(f"{where}: a {type(example).__name__} among "
                               f"{type(examples[0]).__name__}s (one kind per file)")
        examples.append(example)
    if not examples:
        raise LmbenchError(f"{path}: no examples")
    return examples
