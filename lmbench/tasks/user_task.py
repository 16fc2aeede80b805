"""A user's own task: documents in JSONL files and a small TOML description.

Example ``capitals.toml`` (paths are relative to the TOML file)::

    name = "capitals"
    train = "capitals-train.jsonl"         # optional: without it, zero-shot only
    test = "capitals-test.jsonl"           # one JSON object per line
    template = "Q: What is the capital of {country}?\\nA:"
    target = "capital"                     # the field holding the answer
    metric = "exact_match"                 # exact_match (generate) | acc (multiple_choice)
                                           # | perplexity (rolling)
    stop = ["\\n"]                         # generation stops at any of these
    # optional: instruction, choices (the field of a multiple-choice list), chain (the field of
    # a worked chain), target_delimiter, fewshot_delimiter, strict_regex, flexible_regex,
    # max_new_tokens, cot_stop, cot_max_new_tokens, description

Every mistake is one ``LmbenchError`` line naming the file and the field: an unknown key (with
a did-you-mean), a missing one, a value of the wrong type, a template naming a field the
documents lack, a regex that does not compile, an empty stop string, a JSONL line that is not
an object (with its line number). Nothing is written while a task is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError, did_you_mean
from lmbench.core.toml import read_toml
from lmbench.tasks.task import METRICS, Task

KIND_OF_METRIC = {metric: kind for kind, metric in METRICS.items()}
_STRINGS = ("name", "train", "test", "template", "target", "metric", "instruction", "choices",
            "chain", "target_delimiter", "fewshot_delimiter", "strict_regex", "flexible_regex",
            "description")
_INTEGERS = ("max_new_tokens", "cot_max_new_tokens")
_STRING_LISTS = ("stop", "cot_stop")
REQUIRED = ("name", "test", "template", "target", "metric")


def _check_types(path: Path, data: dict[str, Any]) -> None:
    known = (*_STRINGS, *_INTEGERS, *_STRING_LISTS)
    for key, value in data.items():
        if key not in known:
            raise LmbenchError(f"{path}: unknown field {key!r}{did_you_mean(key, known)}")
        if key in _STRINGS and not isinstance(value, str):
            raise LmbenchError(f"{path}: field {key!r} must be a string, got "
                               f"{type(value).__name__}")
        if key in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
            raise LmbenchError(f"{path}: field {key!r} must be a whole number, got {value!r}")
        if key in _STRING_LISTS and (not isinstance(value, list)
                                     or not all(isinstance(s, str) for s in value)):
            raise LmbenchError(f"{path}: field {key!r} must be a list of strings, got {value!r}")
    for key in REQUIRED:
        if key not in data:
            raise LmbenchError(f"{path}: missing field {key!r} (a task needs "
                               f"{', '.join(REQUIRED)})")
    if data["metric"] not in KIND_OF_METRIC:
        raise LmbenchError(f"{path}: field 'metric' must be one of {', '.join(KIND_OF_METRIC)}, "
                           f"got {data['metric']!r}")


def read_jsonl(path: Path, where: str) -> tuple[dict[str, Any], ...]:
    """The objects of a JSONL file, one per non-blank line; errors name ``where`` and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LmbenchError(f"{where}: file {str(path)!r} not found") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise LmbenchError(f"{where}: {str(path)!r} is not a UTF-8 JSONL file") from None
    docs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as error:
            raise LmbenchError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(doc, dict):
            raise LmbenchError(f"{path}:{number}: a document must be a JSON object, got "
                               f"{type(doc).__name__}")
        docs.append(doc)
    if not docs:
        raise LmbenchError(f"{where}: {str(path)!r} holds no documents")
    return tuple(docs)


def load_user_task(path: str | Path) -> Task:
    """The task a TOML file describes (module docstring)."""
    path = Path(path)
    data = read_toml(path, "task")
    _check_types(path, data)
    splits = {}
    for split in ("train", "test"):
        if split in data:
            splits[split] = read_jsonl(path.parent / data[split], f"{path}: field {split!r}")
    kind = KIND_OF_METRIC[data["metric"]]
    rename = {"choices": "choices_field", "chain": "chain_field"}
    passed = {rename.get(k, k): (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
              if k not in ("train", "test", "metric", "name")}
    return Task(name=data["name"], kind=kind, splits=splits, where=str(path),
                options={"file": str(path)}, **passed)
