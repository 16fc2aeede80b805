"""The results store: a folder of immutable run records, and the SQLite index reports query.

Layout (``root`` is the folder ``lmbench run --out`` names)::

    root/<run_id>/result.json    one ``RunResult`` (config, seed, env, metrics per split with
                                 per-block NLL, training curve, throughput, generation samples)
    root/index.sqlite            the index: one row per record and per (record, split)

The JSON files are the truth. The index is a cache of them, brought up to date on every read
(a file that appeared, changed size or modification time, or vanished is re-read), so deleting
it loses nothing.

Several processes may write at once (parallel ``lmbench run`` sharing one ``--out``):

- a record is written to a temporary file beside its final name and then hard-linked into place,
  which fails if the name exists, so a record is never overwritten nor seen half-written;
- the index runs in SQLite's write-ahead-log mode (readers never block the writer), each update
  is one ``BEGIN IMMEDIATE`` transaction, and a locked database is waited for (``timeout_s``).

Every ``*.json`` under the root is expected to be a record. One that is not (truncated, not
JSON, another tool's file) is reported by path and skipped; it never breaks a report. An index
that cannot be used (read-only folder, a corrupt file) is replaced by an in-memory one, and that
is reported too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from lmbench.errors import LmbenchError, did_you_mean
from lmbench.results import EvalResult, RunResult

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = "1"
_SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,          -- relative to the root, '/'-separated
    size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    run_id TEXT NOT NULL, corpus TEXT NOT NULL, model TEXT NOT NULL, tokenizer TEXT,
    seed INTEGER, n_params INTEGER, fit_s REAL, created TEXT, git_commit TEXT,
    record TEXT NOT NULL            -- the file's JSON text
);
CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id);
CREATE TABLE IF NOT EXISTS metrics (
    path TEXT NOT NULL, split TEXT NOT NULL, perplexity REAL, bits_per_byte REAL,
    exact_likelihood INTEGER, unk_rate REAL, tokens_per_s REAL, n_tokens INTEGER,
    PRIMARY KEY (path, split)
);
CREATE TABLE IF NOT EXISTS problems (
    path TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    message TEXT NOT NULL
);
"""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def parse_record(payload: Any) -> RunResult:
    """A ``RunResult`` from decoded JSON, or ``ValueError`` saying why it is not a record.

    Keys this version does not know are ignored (records written by a newer lmbench still load).
    """
    if not isinstance(payload, dict):
        raise ValueError(f"top level is a JSON {type(payload).__name__}, not an object")
    expected = {"run_id": str, "model": str, "corpus": str, "config": dict, "seed": int,
                "n_params": int, "fit_s": (int, float), "metrics": dict, "env": dict}
    for key, kind in expected.items():
        if key not in payload:
            raise ValueError(f"no {key!r} key")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise ValueError(f"{key!r} has the wrong type ({type(payload[key]).__name__})")
    if not payload["metrics"]:
        raise ValueError("'metrics' is empty")
    known = {f.name for f in fields(RunResult)}
    values = {k: v for k, v in payload.items() if k in known}
    values["metrics"] = {split: _parse_metrics(split, m) for split, m in payload["metrics"].items()}
    for key in ("train_log", "tokenizer", "throughput", "generation"):
        if values.get(key) is not None and not isinstance(values[key], dict):
            raise ValueError(f"{key!r} is not an object")
    return RunResult(**values)


def _parse_metrics(split: str, data: Any) -> EvalResult:
    if not isinstance(data, dict):
        raise ValueError(f"metrics[{split!r}] is not an object")
    for key in ("nll_nats", "n_tokens", "n_bytes", "block_len", "block_nll_nats"):
        if key not in data:
            raise ValueError(f"metrics[{split!r}] has no {key!r}")
    for key in ("n_tokens", "n_bytes", "block_len"):
        if not isinstance(data[key], int) or data[key] < 1:
            raise ValueError(f"metrics[{split!r}].{key} must be an integer >= 1")
    if not isinstance(data["nll_nats"], (int, float)) or math.isnan(data["nll_nats"]):
        raise ValueError(f"metrics[{split!r}].nll_nats is not a number")  # inf is: p = 0 seen
    blocks = data["block_nll_nats"]
    if not isinstance(blocks, list) or not all(isinstance(b, (int, float)) for b in blocks):
        raise ValueError(f"metrics[{split!r}].block_nll_nats is not a list of numbers")
    try:
        return EvalResult.from_dict(data)
    except TypeError as error:  # a missing or unexpected field of EvalResult
        raise ValueError(f"metrics[{split!r}]: {error}") from None


class ResultStore:
    """A folder of run records and its index; see the module docstring.

    Example::

        store = ResultStore("runs/quick")
        store.put(result)                      # refuses to overwrite an existing record
        records = store.records(split="test")  # every readable record, from the index
        store.problems()                       # one line per skipped file
    """

    def __init__(self, root: str | os.PathLike, timeout_s: float = 60.0) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s  # how long to wait for another process's index transaction
        self._memory: sqlite3.Connection | None = None  # the fallback index, once needed
        self._index_problem: str | None = None

    # ---------------------------------------------------------------------------- writing

    def put(self, result: RunResult) -> Path:
        """Write ``result`` as ``<root>/<run_id>/result.json`` and index it; returns the path."""
        if not _SAFE_RUN_ID.fullmatch(result.run_id):
            raise LmbenchError(f"run id {result.run_id!r} is not a safe folder name "
                               "(letters, digits and ._=+- only, not starting with a dot)")
        path = self.root / result.run_id / "result.json"
        text = json.dumps(result.to_dict(), indent=2, allow_nan=True) + "\n"
        write_text_atomic(path, text, exclusive=True)
        stat = path.stat()
        with self._connect() as db:
            _begin(db)
            _upsert(db, self._relative(path), stat.st_size, stat.st_mtime_ns, text, result)
            db.execute("COMMIT")
        return path

    # ---------------------------------------------------------------------------- reading

    def refresh(self) -> None:
        """Bring the index up to date with the files (re-reading only what changed)."""
        on_disk = {}
        for path in self._record_files():
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished while listing
            on_disk[self._relative(path)] = (path, stat.st_size, stat.st_mtime_ns)
        with self._connect() as db:
            known = {row[0]: (row[1], row[2]) for row in db.execute(
                "SELECT path, size_bytes, mtime_ns FROM runs "
                "UNION ALL SELECT path, size_bytes, mtime_ns FROM problems")}
            changed = [key for key, (_, size, mtime) in on_disk.items()
                       if known.get(key) != (size, mtime)]
            gone = [key for key in known if key not in on_disk]
            if not changed and not gone:
                return
            parsed = [(key, *on_disk[key][1:], *_read_record(on_disk[key][0])) for key in changed]
            _begin(db)  # parse first, then hold the write lock only for the updates
            for key in gone:
                _forget(db, key)
            for key, size, mtime, text, record, problem in parsed:
                _forget(db, key)
                if record is not None:
                    _upsert(db, key, size, mtime, text, record)
                else:
                    db.execute("INSERT INTO problems VALUES (?, ?, ?, ?)",
                               (key, size, mtime, problem))
            db.execute("COMMIT")

    def records(self, split: str | None = None, corpus: str | None = None) -> list[RunResult]:
        """Every readable record (optionally: that scored ``split``, on ``corpus``)."""
        self.refresh()
        query = "SELECT record FROM runs r WHERE 1=1"
        args: list[Any] = []
        if corpus is not None:
            query += " AND r.corpus = ?"
            args.append(corpus)
        if split is not None:
            query += " AND EXISTS (SELECT 1 FROM metrics m WHERE m.path = r.path AND m.split = ?)"
            args.append(split)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY r.corpus, r.model, r.run_id", args).fetchall()
        return [parse_record(json.loads(text)) for (text,) in rows]

    def problems(self) -> list[str]:
        """One line per file under the root that was skipped, and why (and the index's trouble)."""
        self.refresh()
        with self._connect() as db:
            rows = db.execute("SELECT path, message FROM problems ORDER BY path").fetchall()
        lines = [f"{self.root / path}: skipped, not an lmbench run record ({message})"
                 for path, message in rows]
        return lines + ([self._index_problem] if self._index_problem else [])

    def get(self, run_id: str) -> RunResult:
        """The record with this run id (the folder name under the root)."""
        self.refresh()
        with self._connect() as db:
            rows = db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            if not rows:
                ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
                raise LmbenchError(f"no run {run_id!r} under {self.root}"
                                   f"{did_you_mean(run_id, ids) if ids else ''}")
        if len(rows) > 1:
            raise LmbenchError(f"run id {run_id!r} names {len(rows)} records under {self.root}; "
                               "give the path of one result.json")
        return parse_record(json.loads(rows[0][0]))

    # ---------------------------------------------------------------------------- internals

    def _record_files(self) -> list[Path]:
        if not self.root.is_dir():
            raise LmbenchError(f"{self.root}: results folder not found")
        return sorted(p for p in self.root.rglob("*.json")
                      if p.is_file() and not any(part.startswith(".")
                                                 for part in p.relative_to(self.root).parts))

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @contextlib.contextmanager
    def _connect(self):
        """A connection to the file index, or the in-memory fallback (module docstring); an
        unfinished transaction is rolled back and a file connection closed on exit."""
        db = self._memory or self._open_file_index()
        try:
            yield db
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if db is not self._memory:
                db.close()

    def _open_file_index(self) -> sqlite3.Connection:
        path = self.root / INDEX_NAME
        db = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=self.timeout_s, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            _ensure_schema(db)
            return db
        except (sqlite3.Error, OSError) as error:
            if db is not None:
                db.close()
            self._index_problem = (f"{path}: index not usable ({error}); using an in-memory "
                                   "index (delete the file to rebuild it)")
            self._memory = sqlite3.connect(":memory:", isolation_level=None)
            _ensure_schema(self._memory)
            return self._memory


def _begin(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock later


def _ensure_schema(db: sqlite3.Connection) -> None:
    """Create the tables, or empty them if they are of another schema version (a cache)."""
    with contextlib.suppress(sqlite3.OperationalError):  # no meta table yet
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None and row[0] == SCHEMA_VERSION:
            return  # the common case: no write lock needed
    _begin(db)
    try:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:  # a cache: rebuild rather than migrate
            for table in ("runs", "metrics", "problems"):
                db.execute(f"DELETE FROM {table}")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _forget(db: sqlite3.Connection, key: str) -> None:
    for table in ("runs", "metrics", "problems"):
        db.execute(f"DELETE FROM {table} WHERE path = ?", (key,))


def _upsert(db: sqlite3.Connection, key: str, size: int, mtime_ns: int, text: str,
            record: RunResult) -> None:
    _forget(db, key)
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
        key, size, mtime_ns, record.run_id, record.corpus, record.model,
        str(record.config.get("tokenizer", "")), record.seed, record.n_params, record.fit_s,
        record.env.get("created"), record.env.get("git_commit"), text))
    for split, m in record.metrics.items():
        db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
            key, split, m.perplexity, m.bits_per_byte, int(m.exact_likelihood), m.unk_rate,
            m.tokens_per_s, m.n_tokens))


def _read_record(path: Path) -> tuple[str | None, RunResult | None, str | None]:
    """(text, record, None) for a readable record, else (None, None, why not)."""
    try:
        text = path.read_text(encoding="utf-8")
        return text, parse_record(json.loads(text)), None
    except (OSError, UnicodeDecodeError) as error:
        return None, None, f"unreadable: {error}"
    except json.JSONDecodeError as error:
        return None, None, f"not valid JSON: {error}"
    except (ValueError, TypeError, OverflowError) as error:
        return None, None, str(error)


def write_text_atomic(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` to a temporary file beside ``path``, then move it into place; with
    ``exclusive``, fail if ``path`` exists (a hard link, which refuses an existing name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private (0600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if not exclusive:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise LmbenchError(f"{path}: a record with this run id exists; records are "
                               "immutable (write a new run)") from None
        except OSError:  # a filesystem without hard links: check, then rename
            if path.exists():
                raise LmbenchError(f"{path}: a record with this run id exists") from None
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
