"""The one way lmbench writes a file: to a temporary file beside it, then a rename.

A killed run never leaves half a file under the real name, and every file keeps the permissions
the user's umask gives (``mkstemp`` alone would make it private, 0600). Results, models, ARPA
files, checkpoints, fetched corpora and reports all go through ``write_atomic``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from lmbench.core.errors import LmbenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask is process-wide and not thread-safe to query


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], *,
                 exclusive: bool = False) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, flush it to disk and
    rename it to ``path``. With ``exclusive``, refuse to replace an existing ``path`` (a hard
    link, which cannot overwrite; ``FileExistsError``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private (0600)
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        if not exclusive:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: check, then rename
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def check_writable(folder: str | Path, probe_bytes: int = 1 << 16) -> None:
    """Create ``folder`` (and its parents), write ``probe_bytes`` to a probe file there, sync,
    and delete it; folders this made are removed again, so nothing is left behind. A folder
    that cannot be written (read-only, full, a path through a regular file) is a one-line
    ``LmbenchError`` naming it: a run calls this before training, not after."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".lmbench-probe.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(bytes(probe_bytes))
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.unlink(probe)
    except OSError as error:
        raise LmbenchError(f"{folder}: the output folder cannot be written "
                           f"({error.strerror or error})") from None
    finally:
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()


def write_text_atomic(path: str | Path, text: str, *, exclusive: bool = False) -> None:
    """UTF-8 ``text`` through ``write_atomic``; with ``exclusive``, an existing ``path`` is an
    error (records are immutable)."""
    try:
        write_atomic(path, lambda out: out.write(text.encode("utf-8")), exclusive=exclusive)
    except FileExistsError:
        raise LmbenchError(f"{path}: a record with this run id exists; records are "
                           "immutable (write a new run)") from None


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON through ``write_atomic``."""
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")


def write_npz_atomic(path: str | Path, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Arrays plus a JSON ``meta`` entry in one ``.npz`` (no pickles), through ``write_atomic``."""
    write_atomic(path, lambda out: np.savez(out, meta=np.array(json.dumps(meta)), **arrays))


def read_npz(path: str | Path, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON ``meta`` and every array of a file written by ``write_npz_atomic``; never
    unpickles anything."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # numpy's own error suggests unpickling
        raise LmbenchError(f"{path}: not {what} file written by lmbench's save (an .npz is a zip "
                           "archive; this file is not one)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except FileNotFoundError:
        raise LmbenchError(f"{path}: model file not found") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).split(". ")[0]  # numpy's pickle refusal goes on for three sentences
        raise LmbenchError(f"{path}: not {what} file written by lmbench's save "
                           f"({reason})") from None
    if not isinstance(meta, dict):
        raise LmbenchError(f"{path}: not {what} file written by lmbench's save (bad meta)")
    return meta, arrays
