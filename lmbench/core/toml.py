"""The TOML parser every run, pipeline, task and reference file is read with: the standard
library's ``tomllib`` (Python 3.11+), or ``tomli``, the same parser as a package, on 3.10, and
``read_toml``, which reads one such file and turns each way it can be wrong into one line that
names the file and what was expected."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["read_toml", "tomllib"]


def read_toml(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The table the TOML file ``path`` holds; ``kind`` names the file in errors ("config",
    "pipeline", "task"): ``<path>: <kind> file not found``, ``... is a folder, not a <kind>
    file``, ``... not UTF-8 text``, ``... not valid TOML (<the parser's reason>)``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LmbenchError(f"{path}: {kind} file not found") from None
    except IsADirectoryError:
        raise LmbenchError(f"{path}: is a folder, not a {kind} file") from None
    except UnicodeDecodeError:
        raise LmbenchError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise LmbenchError(f"{path}: not valid TOML ({error})") from None
