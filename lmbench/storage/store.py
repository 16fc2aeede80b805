"""The results store: a folder of immutable run records, the sidecars measured on their saved
models later, and the SQLite index reports query.

Layout (``root`` is the folder ``lmbench run --out`` names)::

    root/<run_id>/result.json      one ``RunResult`` (config, seed, env, metrics per split with
                                   per-block NLL, training curve, throughput, generation samples)
    root/<run_id>/generation.json  sidecar, optional: the generation benchmark of the run's saved
                                   model (``benchmarks/generation_report.py --attach-to-runs``;
                                   the schema is ``lmbench.evaluation.generation_results``'s)
    root/<run_id>/throughput.json  sidecar, optional: ``lmbench bench`` of the run's saved model
    root/<run_id>/tasks.json       sidecar, optional: ``lmbench eval-tasks`` of the run's saved
                                   model (``TaskResults``; per-example JSONL in ``tasks/``)
    root/index.sqlite              the index: one row per record, per (record, split), per sidecar

The JSON files are the truth. The index is a cache of them, brought up to date on every read
(a file that appeared, changed size or modification time, or vanished is re-read), so deleting
it loses nothing.

Sidecars. A record never changes, but its saved model may be measured later; those results go
beside it, one file per kind (``SIDECAR_KINDS``), replaced atomically when measured again
(``write_sidecar``). Every read merges them into the loaded ``RunResult``: ``generation.json``
(a ``GenerationResult``) into ``generation``, ``throughput.json`` (a ``ThroughputResult``) into
``throughput``, ``tasks.json`` (a ``TaskResults``) into ``tasks``. The record's own values win: a sidecar only fills the fields the record lacks
(for ``generation``, also inside its ``metrics``). A sidecar joins the
``result.json`` of its folder and must carry the record's ``run_id`` (and, when it names one,
the record's corpus); one that does not, or that cannot be read, is reported by path and
skipped, and the record loads without it. A sidecar with no ``result.json`` beside it (``lmbench
bench`` of a model that is not in a run folder) is not a record and is ignored.

Several processes may write at once (parallel ``lmbench run`` sharing one ``--out``):

- a record is written to a temporary file beside its final name and then hard-linked into place,
  which fails if the name exists, so a record is never overwritten nor seen half-written;
- the index runs in SQLite's write-ahead-log mode (readers never block the writer), each update
  is one ``BEGIN IMMEDIATE`` transaction, and a locked database is waited for (``timeout_s``).

Every file is checked against the typed schema of ``lmbench.core.results`` (``RunResult``,
``GenerationResult``, ``ThroughputResult``): ``put`` refuses to write a record that does not
check (no split scored, a field of the wrong type), and every other ``*.json`` under the root is
expected to be a record; one that is not (truncated, not JSON, another tool's file, a mistyped
field) is reported by path and skipped; it never breaks a report. An index that cannot be used
(read-only folder, a corrupt file, tables of another shape, locked by another process for longer
than ``timeout_s``) is replaced by an in-memory one read from the files, and that is reported
too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError, did_you_mean
from lmbench.core.io import write_text_atomic
from lmbench.core.results import GenerationResult, RunResult, TaskResults, ThroughputResult

INDEX_NAME = "index.sqlite"
RECORD_NAME = "result.json"
# <kind>.json beside a record fills RunResult.<kind>
SIDECAR_KINDS = ("generation", "throughput", "tasks")
SIDECAR_NAMES = {f"{kind}.json": kind for kind in SIDECAR_KINDS}
SCHEMA_VERSION = "3"  # 3: sidecar content is the whole typed record
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
CREATE TABLE IF NOT EXISTS sidecars (
    path TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    folder TEXT NOT NULL,           -- the folder whose result.json it joins ('' for the root)
    kind TEXT NOT NULL, run_id TEXT NOT NULL, corpus TEXT,
    content TEXT NOT NULL           -- the ThroughputResult / GenerationResult (JSON)
);
"""


def parse_record(payload: Any) -> RunResult:
    """A ``RunResult`` from decoded JSON, or ``ValueError`` saying why it is not a record
    (``RunResult.from_dict``: the typed schema, checked field by field).

    Keys this version does not know are ignored (records written by a newer lmbench still load).
    """
    try:
        return RunResult.from_dict(payload)
    except TypeError as error:  # a field the checks let through that a record cannot take
        raise ValueError(str(error)) from None


# ---------------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class Sidecar:
    """A checked sidecar file (module docstring): what it adds to the record of ``run_id``."""

    kind: str  # one of SIDECAR_KINDS: the RunResult field it fills
    run_id: str
    corpus: str | None  # when given, it must be the record's corpus
    content: ThroughputResult | GenerationResult | TaskResults  # merged into RunResult.<kind>


def parse_sidecar(kind: str, payload: Any) -> Sidecar:
    """A ``Sidecar`` from decoded JSON, or ``ValueError`` saying why it is not one.

    ``generation``: a ``GenerationResult`` (the object ``generation_results.run_sidecar``
    builds), which must name its run and have ``metrics``; ``throughput``: a
    ``ThroughputResult`` (``lmbench bench``) with at least one figure; ``tasks``: a
    ``TaskResults`` (``lmbench eval-tasks``).
    """
    if kind not in SIDECAR_KINDS:
        raise ValueError(f"unknown sidecar kind {kind!r} (known: {', '.join(SIDECAR_KINDS)})")
    if not isinstance(payload, dict):
        raise ValueError(f"top level is a JSON {type(payload).__name__}, not an object")
    run_id = payload.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("no 'run_id' string")
    if kind == "throughput":
        return Sidecar(kind, run_id, None, ThroughputResult.from_dict(payload, where=""))
    if kind == "tasks":
        return Sidecar(kind, run_id, None, TaskResults.from_dict(payload, where=""))
    if not isinstance(payload.get("metrics"), dict):
        raise ValueError("'metrics' is not an object")
    content = GenerationResult.from_dict(payload, where="")
    return Sidecar(kind, run_id, content.corpus, content)


def _content(kind: str, data: dict[str, Any]
             ) -> ThroughputResult | GenerationResult | TaskResults:
    """A sidecar's content from the JSON the index keeps of it."""
    if kind == "throughput":
        return ThroughputResult.from_dict(data, where="")
    if kind == "tasks":
        return TaskResults.from_dict(data, where="")
    return GenerationResult.from_dict(data, where="")


def merge_sidecars(record: RunResult, sidecars: Iterable[Sidecar]) -> RunResult:
    """``record`` with its sidecars' content added; the record's own values win (a field it
    lacks, and for ``generation`` each metric it lacks, comes from the sidecar)."""
    throughput, generation, tasks = record.throughput, record.generation, record.tasks
    for sidecar in sidecars:
        content = sidecar.content
        if isinstance(content, ThroughputResult):
            throughput = content if throughput is None else throughput.filled_from(content)
        elif isinstance(content, TaskResults):
            tasks = content if tasks is None else tasks.filled_from(content)
        else:
            generation = content if generation is None else generation.filled_from(content)
    if (throughput is record.throughput and generation is record.generation
            and tasks is record.tasks):
        return record
    return dataclasses.replace(record, throughput=throughput, generation=generation, tasks=tasks)


def _mismatch(sidecar: Sidecar, run_id: str, corpus: str) -> str | None:
    """Why ``sidecar`` does not belong to the record of ``run_id`` on ``corpus``, or None."""
    if sidecar.run_id != run_id:
        return f"its run_id {sidecar.run_id!r} is not the record's ({run_id!r})"
    if sidecar.corpus is not None and sidecar.corpus != corpus:
        return f"its corpus {sidecar.corpus!r} is not the record's ({corpus!r})"
    return None


def _sidecar_problem(path: Path, why: str) -> str:
    kind = SIDECAR_NAMES.get(Path(path).name, "?")
    return f"{path}: skipped, not a usable {kind} sidecar of the record beside it ({why})"


def read_run(path: str | os.PathLike) -> tuple[RunResult, list[str]]:
    """A record file with the sidecars beside it merged (read from disk, not through an index)
    and one line per sidecar skipped; ``LmbenchError`` if the file is not a record."""
    path = Path(path)
    _, record, problem = _read_record(path)
    if record is None:
        raise LmbenchError(f"{path}: not an lmbench run record ({problem})")
    if path.name != RECORD_NAME:
        return record, []
    found, problems = [], []
    for name in SIDECAR_NAMES:
        side_path = path.parent / name
        if not side_path.is_file():
            continue
        sidecar, why = _read_sidecar(side_path)
        why = why or _mismatch(sidecar, record.run_id, record.corpus)
        if why:
            problems.append(_sidecar_problem(side_path, why))
        else:
            found.append(sidecar)
    return merge_sidecars(record, found), problems


def write_sidecar(run_dir: str | os.PathLike, kind: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``<run_dir>/<kind>.json`` (atomically, replacing an older one) once
    it checks as a sidecar of the record in ``run_dir``; returns the path. The record itself is
    never touched. ``LmbenchError`` when there is no record or the payload does not belong."""
    run_dir = Path(run_dir)
    record_path = run_dir / RECORD_NAME
    _, record, problem = _read_record(record_path)
    if record is None:
        raise LmbenchError(f"{record_path}: no run record to attach {kind} results to "
                           f"({problem})")
    try:
        text = json.dumps(payload, indent=2, allow_nan=True) + "\n"
        sidecar = parse_sidecar(kind, json.loads(text))  # exactly what a reader will see
    except (TypeError, ValueError) as error:
        raise LmbenchError(f"{kind} results for {run_dir}: {error}") from None
    why = _mismatch(sidecar, record.run_id, record.corpus)
    if why:
        raise LmbenchError(f"{kind} results for {run_dir}: {why}")
    path = run_dir / f"{kind}.json"
    write_text_atomic(path, text)
    return path


class ResultStore:
    """A folder of run records and its index; see the module docstring.

    Example::

        store = ResultStore("runs/quick")
        store.put(result)                      # refuses to overwrite an existing record
        records = store.records(split="test")  # every readable record, from the index,
                                               # with its sidecars merged
        store.problems()                       # one line per skipped file
        write_sidecar(store.root / run_id, "generation", payload)  # results measured later
    """

    def __init__(self, root: str | os.PathLike, timeout_s: float = 60.0) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s  # how long to wait for another process's index transaction
        self._memory: sqlite3.Connection | None = None  # the fallback index, once needed
        self._index_problem: str | None = None
        self._bad_rows: dict[str, str] = {}  # index rows that did not parse: path -> line

    # ---------------------------------------------------------------------------- writing

    def put(self, result: RunResult) -> Path:
        """Write ``result`` as ``<root>/<run_id>/result.json`` and index it; returns the path.
        A record that does not check against the schema (no split scored, a field of the wrong
        type) is refused, ``LmbenchError``, and nothing is written."""
        if not _SAFE_RUN_ID.fullmatch(result.run_id):
            raise LmbenchError(f"run id {result.run_id!r} is not a safe folder name "
                               "(letters, digits and ._=+- only, not starting with a dot)")
        path = self.root / result.run_id / "result.json"
        try:
            text = json.dumps(result.to_dict(), indent=2, allow_nan=True) + "\n"
            record = parse_record(json.loads(text))  # exactly what a reader will see
        except (ValueError, TypeError, ZeroDivisionError, OverflowError) as error:
            raise LmbenchError(f"{path}: refusing to write an invalid run record "
                               f"({error})") from None
        write_text_atomic(path, text, exclusive=True)
        stat = path.stat()

        def index(db: sqlite3.Connection) -> None:
            _begin(db)
            _upsert(db, self._relative(path), stat.st_size, stat.st_mtime_ns, text, record)
            db.execute("COMMIT")

        self._with_index(index, update=False)
        return path

    # ---------------------------------------------------------------------------- reading

    def refresh(self) -> None:
        """Bring the index up to date with the files (re-reading only what changed)."""
        self._with_index(lambda db: None)

    def _update(self, db: sqlite3.Connection) -> None:
        """``refresh`` on one index."""
        on_disk = {}
        for path in self._json_files():
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished while listing
            on_disk[self._relative(path)] = (path, stat.st_size, stat.st_mtime_ns)
        known = {row[0]: (row[1], row[2]) for row in db.execute(
            "SELECT path, size_bytes, mtime_ns FROM runs "
            "UNION ALL SELECT path, size_bytes, mtime_ns FROM problems "
            "UNION ALL SELECT path, size_bytes, mtime_ns FROM sidecars")}
        changed = [key for key, (_, size, mtime) in on_disk.items()
                   if known.get(key) != (size, mtime)]
        gone = [key for key in known if key not in on_disk]
        if not changed and not gone:
            return
        parsed = [(key, *on_disk[key][1:], *(
            (None, *_read_sidecar(on_disk[key][0]))
            if posixpath.basename(key) in SIDECAR_NAMES else _read_record(on_disk[key][0])))
            for key in changed]
        _begin(db)  # parse first, then hold the write lock only for the updates
        for key in gone:
            _forget(db, key)
        for key, size, mtime, text, parsed_file, problem in parsed:
            _forget(db, key)
            if isinstance(parsed_file, RunResult):
                _upsert(db, key, size, mtime, text, parsed_file)
            elif isinstance(parsed_file, Sidecar):
                db.execute("INSERT INTO sidecars VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
                    key, size, mtime, posixpath.dirname(key), parsed_file.kind,
                    parsed_file.run_id, parsed_file.corpus,
                    json.dumps(parsed_file.content.to_dict(), allow_nan=True)))
            else:
                db.execute("INSERT INTO problems VALUES (?, ?, ?, ?)",
                           (key, size, mtime, problem))
        db.execute("COMMIT")

    def records(self, split: str | None = None, corpus: str | None = None) -> list[RunResult]:
        """Every readable record, its sidecars merged (optionally: that scored ``split``, on
        ``corpus``)."""
        query = "SELECT path, record FROM runs r WHERE 1=1"
        args: list[Any] = []
        if corpus is not None:
            query += " AND r.corpus = ?"
            args.append(corpus)
        if split is not None:
            query += " AND EXISTS (SELECT 1 FROM metrics m WHERE m.path = r.path AND m.split = ?)"
            args.append(split)

        def read(db: sqlite3.Connection):
            rows = db.execute(query + " ORDER BY r.corpus, r.model, r.run_id", args).fetchall()
            return rows, _sidecars_by_folder(db)

        rows, sidecars = self._with_index(read)
        loaded = [self._with_sidecars(key, text, sidecars) for key, text in rows]
        return [record for record, _ in loaded if record is not None]

    def problems(self) -> list[str]:
        """One line per file under the root that was skipped, and why (and the index's trouble):
        records that cannot be read, sidecars that cannot be read or name another run."""

        def read(db: sqlite3.Connection):
            return (db.execute("SELECT path, message FROM problems").fetchall(),
                    db.execute("SELECT path, run_id, corpus FROM runs").fetchall(),
                    _sidecars_by_folder(db))

        rows, runs, sidecars = self._with_index(read)
        found = [(key, _sidecar_problem(self.root / key, message)
                  if posixpath.basename(key) in SIDECAR_NAMES else
                  f"{self.root / key}: skipped, not an lmbench run record ({message})")
                 for key, message in rows]
        for key, run_id, corpus in runs:
            found += self._attached(key, run_id, corpus, sidecars)[1]
        found += [(key, line) for key, line in self._bad_rows.items()]
        lines = [line for _, line in sorted(found)]
        return lines + ([self._index_problem] if self._index_problem else [])

    def get(self, run_id: str) -> RunResult:
        """The record with this run id (the folder name under the root), sidecars merged."""
        return self.lookup(run_id)[0]

    def lookup(self, run_id: str) -> tuple[RunResult, list[str]]:
        """The record with this run id, sidecars merged, and one line per sidecar of it that was
        skipped (``problems`` lists them too)."""

        def read(db: sqlite3.Connection):
            rows = db.execute("SELECT path, record FROM runs WHERE run_id = ?",
                              (run_id,)).fetchall()
            if not rows:
                ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
                raise LmbenchError(f"no run {run_id!r} under {self.root}"
                                   f"{did_you_mean(run_id, ids) if ids else ''}")
            key = rows[0][0]
            unreadable = [] if posixpath.basename(key) != RECORD_NAME else db.execute(
                "SELECT path, message FROM problems WHERE path IN "
                f"({', '.join('?' * len(SIDECAR_NAMES))}) ORDER BY path",
                [posixpath.join(posixpath.dirname(key), name) for name in SIDECAR_NAMES]
            ).fetchall()
            return rows, _sidecars_by_folder(db), unreadable

        rows, sidecars, unreadable = self._with_index(read)
        if len(rows) > 1:
            raise LmbenchError(f"run id {run_id!r} names {len(rows)} records under {self.root}; "
                               "give the path of one result.json")
        record, problems = self._with_sidecars(*rows[0], sidecars)
        if record is None:
            raise LmbenchError(self._bad_rows[rows[0][0]])
        return record, [_sidecar_problem(self.root / path, message)
                        for path, message in unreadable] + problems

    # ---------------------------------------------------------------------------- internals

    def _with_index(self, operation, update: bool = True):
        """``operation(db)`` on the index, brought up to date first (``update``). An index that
        fails (locked by another process past ``timeout_s``, tables of another shape, not a
        database) is replaced by an in-memory one, rebuilt from the files, and that is reported
        (``problems``): a report never fails for its cache."""
        if not self.root.is_dir():
            raise LmbenchError(f"{self.root}: results folder not found")
        try:
            with self._connect() as db:
                if update or db is self._memory:
                    self._update(db)
                return operation(db)
        except sqlite3.Error as error:
            if self._memory is not None:
                raise
            self._fall_back(error)
            with self._connect() as db:
                self._update(db)
                return operation(db)

    def _with_sidecars(self, key: str, text: str, sidecars: dict[str, list[tuple[str, Sidecar]]]
                       ) -> tuple[RunResult | None, list[str]]:
        """The record of an index row with its sidecars, and the sidecars skipped; (None, [])
        for a row that does not parse (an index another program wrote), noted by path."""
        try:
            record = parse_record(json.loads(text))
        except (ValueError, TypeError) as error:
            self._bad_rows[key] = (f"{self.root / key}: skipped, its index row is not an "
                                   f"lmbench run record ({error})")
            return None, []
        found, problems = self._attached(key, record.run_id, record.corpus, sidecars)
        return merge_sidecars(record, found), [line for _, line in problems]

    def _attached(self, key: str, run_id: str, corpus: str,
                  sidecars: dict[str, list[tuple[str, Sidecar]]]
                  ) -> tuple[list[Sidecar], list[tuple[str, str]]]:
        """The sidecars that join the record at ``key``, and (path, line) for those skipped."""
        if posixpath.basename(key) != RECORD_NAME:
            return [], []
        found, problems = [], []
        for side_key, sidecar in sidecars.get(posixpath.dirname(key), []):
            why = _mismatch(sidecar, run_id, corpus)
            if why:
                problems.append((side_key, _sidecar_problem(self.root / side_key, why)))
            else:
                found.append(sidecar)
        return found, problems

    def _json_files(self) -> list[Path]:
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
            self._fall_back(error)
            return self._memory

    def _fall_back(self, error: Exception) -> None:
        """Use an in-memory index from now on, and say why (``problems``)."""
        self._index_problem = (f"{self.root / INDEX_NAME}: index not usable ({error}); read "
                               "the records into an in-memory index instead (if it persists, "
                               "delete the file to rebuild it)")
        self._memory = sqlite3.connect(":memory:", isolation_level=None)
        _ensure_schema(self._memory)


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
            for table in ("runs", "metrics", "problems", "sidecars"):
                db.execute(f"DELETE FROM {table}")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _forget(db: sqlite3.Connection, key: str) -> None:
    for table in ("runs", "metrics", "problems", "sidecars"):
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


def _read_sidecar(path: Path) -> tuple[Sidecar | None, str | None]:
    """(sidecar, None) for a readable sidecar (its kind from its file name), else (None, why)."""
    try:
        return parse_sidecar(SIDECAR_NAMES[path.name],
                             json.loads(path.read_text(encoding="utf-8"))), None
    except (OSError, UnicodeDecodeError) as error:
        return None, f"unreadable: {error}"
    except json.JSONDecodeError as error:
        return None, f"not valid JSON: {error}"
    except (ValueError, TypeError, OverflowError) as error:
        return None, str(error)


def _sidecars_by_folder(db: sqlite3.Connection) -> dict[str, list[tuple[str, Sidecar]]]:
    """Every indexed sidecar as (path, ``Sidecar``), by the folder whose record it joins."""
    out: dict[str, list[tuple[str, Sidecar]]] = {}
    for key, folder, kind, run_id, corpus, content in db.execute(
            "SELECT path, folder, kind, run_id, corpus, content FROM sidecars ORDER BY path"):
        out.setdefault(folder, []).append((key, Sidecar(kind, run_id, corpus,
                                                         _content(kind, json.loads(content)))))
    return out
