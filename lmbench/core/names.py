"""Names that become paths: run ids and folder names, made in one place.

Every user-given name that ends up in a path (a model label, a corpus name, a run id read back
from a record) goes through here, before anything is written:

- ``check_name`` refuses what could leave a folder or hide in a listing: an empty name, a path
  separator (``/`` or ``\\``), ``..``, a control character. Labels are checked when a run file
  is parsed, so the mistake is a one-line error before any training.
- ``safe_name`` maps a checked name to a folder name of ASCII letters, digits and ``._=+-``,
  starting with a letter or digit and at most ``MAX_NAME_LEN`` characters, deterministically:
  accents are dropped (NFKD: ``gpt-naïve`` -> ``gpt-naive``), every other character becomes
  ``_``, and a name that had to change gets the first 6 hex digits of the SHA-256 of the
  original appended (``my corpus`` -> ``my_corpus-<hex>``), so two different names never share
  a folder (checkpoints of one are never resumed by the other).
- ``contained(root, *parts)`` joins parts under ``root`` and refuses a result outside it (after
  resolving ``..`` and symbolic links): nothing is read or written outside ``--out``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from lmbench.core.errors import LmbenchError

MAX_NAME_LEN = 100  # characters of a safe folder name (a file name may have 255 bytes)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")  # what safe_name returns
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._=+-]")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it cannot leave a folder, else raise ``LmbenchError`` naming it.

    Args:
        name: the user's name (a label, a corpus name).
        what: what it is, for the message (``"label"``).
    """
    if not isinstance(name, str) or not name.strip():
        raise LmbenchError(f"{what} {name!r} is empty; give a name")
    if "/" in name or "\\" in name:
        raise LmbenchError(f"{what} {name!r} contains a path separator; names become folder "
                           "names and may not contain '/' or '\\'")
    if ".." in name:
        raise LmbenchError(f"{what} {name!r} contains '..'; names become folder names")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise LmbenchError(f"{what} {name!r} contains a control character")
    return name


def safe_name(name: str, what: str = "name") -> str:
    """``check_name``, then the deterministic folder name of ``name`` (module docstring)."""
    check_name(name, what)
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    mapped = _UNSAFE_CHAR.sub("_", folded)
    if mapped == name and SAFE_NAME.fullmatch(name) and len(name) <= MAX_NAME_LEN:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:6]
    mapped = mapped.lstrip("._=+-")[: MAX_NAME_LEN - 7]
    return f"{mapped}-{digest}" if mapped else digest


def contained(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts...``, refused with ``LmbenchError`` if it resolves outside ``root``."""
    root = Path(root)
    path = root.joinpath(*parts)
    inside = Path(os.path.realpath(root))
    if not Path(os.path.realpath(path)).is_relative_to(inside):
        raise LmbenchError(f"{path}: resolves outside the output folder {root}; refusing to "
                           "read or write it")
    return path


def new_run_id(corpus: str, label: str) -> str:
    """``<corpus>-<label>-<UTC time>-<6 hex>``, the corpus and label through ``safe_name``
    (a label or corpus name that cannot be a folder name is an ``LmbenchError``)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return (f"{safe_name(corpus, 'corpus name')}-{safe_name(label, 'label')}-{stamp}-"
            f"{secrets.token_hex(3)}")
