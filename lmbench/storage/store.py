"""The results store: a folder of immutable run records, the sidecars measured on their saved
models later, and the SQLite index reports query.

Layout (``root`` is the folder ``lmbench run --out`` names)::

    root/<run_id>/result.json      one ``RunResult`` (config, seed, env, metrics per split with
                                   per-block NLL, training curve, throughput, generation samples)
    root/<run_id>/generation.json  sidecar, optional: the generation benchmark of the run's saved
                                   model (``benchmarks/generation_report.py --attach-to-runs``;
                                   the schema is ``lmbench.evaluation.generation_results``'s)
    root/<run_id>/throughput.json  sidecar, optional: ``lmbench bench`` of the run's saved model
    root/index.sqlite              the index: one row per record, per (record, split), per sidecar

The JSON files are the truth. The index is a cache of them, brought up to date on every read
(a file that appeared, changed size or modification time, or vanished is re-read), so deleting
it loses nothing.

Sidecars. A record never changes, but its saved model may be measured later; those results go
beside it, one file per kind (``SIDECAR_KINDS``), replaced atomically when measured again
(``write_sidecar``). Every read merges them into the loaded ``RunResult``: ``generation.json``
into ``generation``, ``throughput.json`` (the medians and figures of a ``ThroughputResult``,
flattened to numbers) into ``throughput``. The record's own values win: a sidecar only adds keys
the record lacks (for ``generation``, also inside its ``metrics``). A sidecar joins the
``result.json`` of its folder and must carry the record's ``run_id`` (and, when it names one,
the record's corpus); one that does not, or that cannot be read, is reported by path and
skipped, and the record loads without it. A sidecar with no ``result.json`` beside it (``lmbench
bench`` of a model that is not in a run folder) is not a record and is ignored.

Several processes may write at once (parallel ``lmbench run`` sharing one ``--out``):

- a record is written to a temporary file beside its final name and then hard-linked into place,
  which fails if the name exists, so a record is never overwritten nor seen half-written;
- the index runs in SQLite's write-ahead-log mode (readers never block the writer), each update
  is one ``BEGIN IMMEDIATE`` transaction, and a locked database is waited for (``timeout_s``).

Every other ``*.json`` under the root is expected to be a record. One that is not (truncated, not
JSON, another tool's file) is reported by path and skipped; it never breaks a report. An index
that cannot be used (read-only folder, a corrupt file) is replaced by an in-memory one, and that
is reported too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import posixpath
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError, did_you_mean
from lmbench.core.io import write_text_atomic
from lmbench.core.results import EvalResult, RunResult

INDEX_NAME = "index.sqlite"
RECORD_NAME = "result.json"
SIDECAR_KINDS = ("generation", "throughput")  # <kind>.json beside a record fills RunResult.<kind>
SIDECAR_NAMES = {f"{kind}.json": kind for kind in SIDECAR_KINDS}
SCHEMA_VERSION = "2"
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
    content TEXT NOT NULL           -- what is merged into RunResult.<kind> (JSON)
);
"""


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


# ---------------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class Sidecar:
    """A checked sidecar file (module docstring): what it adds to the record of ``run_id``."""

    kind: str  # one of SIDECAR_KINDS: the RunResult field it fills
    run_id: str
    corpus: str | None  # when given, it must be the record's corpus
    content: dict[str, Any]  # merged into RunResult.<kind>


# ThroughputResult's fields that are a Spread (median, low, high) and those that are one number
_THROUGHPUT_SPREADS = ("score_tokens_per_s", "score_bytes_per_s", "prefill_tokens_per_s",
                       "decode_tokens_per_s", "time_to_first_token_s", "train_tokens_per_s")
_THROUGHPUT_NUMBERS = ("token_latency_p50_s", "token_latency_p95_s", "peak_rss_bytes",
                       "weight_bytes", "peak_tensor_bytes", "cache_bytes", "flops_per_token")


def parse_sidecar(kind: str, payload: Any) -> Sidecar:
    """A ``Sidecar`` from decoded JSON, or ``ValueError`` saying why it is not one.

    ``generation``: the object ``generation_results.run_sidecar`` builds, kept whole once its
    ``metrics`` (name -> number), ``samples`` (objects of strings) and ``rows`` (label, metrics
    of {value, ci95}) check. ``throughput``: a ``ThroughputResult`` (``lmbench bench``),
    flattened to numbers: each spread's median under its own name, the single figures, and
    ``<kind>_utilization`` for each utilisation.
    """
    if kind not in SIDECAR_KINDS:
        raise ValueError(f"unknown sidecar kind {kind!r} (known: {', '.join(SIDECAR_KINDS)})")
    if not isinstance(payload, dict):
        raise ValueError(f"top level is a JSON {type(payload).__name__}, not an object")
    run_id = payload.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("no 'run_id' string")
    if kind == "throughput":
        return Sidecar(kind, run_id, None, _throughput_figures(payload))
    corpus = payload.get("corpus")
    if corpus is not None and not isinstance(corpus, str):
        raise ValueError("'corpus' is not a string")
    _check_generation(payload)
    return Sidecar(kind, run_id, corpus, dict(payload))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_generation(payload: dict[str, Any]) -> None:
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError("'metrics' is not an object")
    for name, value in metrics.items():
        if value is not None and not _is_number(value):
            raise ValueError(f"metrics[{name!r}] is not a number")
    samples = payload.get("samples", [])
    if not isinstance(samples, list) or not all(
            isinstance(s, dict) and all(isinstance(t, str) for t in s.values()) for s in samples):
        raise ValueError("'samples' is not a list of objects of strings")
    rows = payload.get("rows", [])
    if not isinstance(rows, list):
        raise ValueError("'rows' is not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("label"), str):
            raise ValueError(f"rows[{i}] has no 'label' string")
        if not isinstance(row.get("metrics"), dict):
            raise ValueError(f"rows[{i}].metrics is not an object")
        for name, entry in row["metrics"].items():
            value = entry.get("value") if isinstance(entry, dict) else "missing"
            interval = entry.get("ci95", [None, None]) if isinstance(entry, dict) else None
            if (value is not None and not _is_number(value)) or not (
                    isinstance(interval, list) and len(interval) == 2
                    and all(v is None or _is_number(v) for v in interval)):
                raise ValueError(f"rows[{i}].metrics[{name!r}] is not "
                                 "{value: number, ci95: [low, high]}")
    strategy = payload.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise ValueError("'strategy' is not a string")


def _throughput_figures(payload: dict[str, Any]) -> dict[str, float]:
    figures = {}
    for name in _THROUGHPUT_SPREADS:
        spread = payload.get(name)
        if spread is None:
            continue
        if not isinstance(spread, dict) or not _is_number(spread.get("median")):
            raise ValueError(f"{name!r} is not a spread with a numeric 'median'")
        figures[name] = float(spread["median"])
    for name in _THROUGHPUT_NUMBERS:
        value = payload.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise ValueError(f"{name!r} is not a number")
        figures[name] = float(value)
    utilization = payload.get("utilization") or {}
    if not isinstance(utilization, dict):
        raise ValueError("'utilization' is not an object")
    for name, value in utilization.items():
        if _is_number(value):
            figures[f"{name}_utilization"] = float(value)
    figures = {k: v for k, v in figures.items() if math.isfinite(v)}
    if not figures:
        raise ValueError("no throughput figure in it")
    return figures


def merge_sidecars(record: RunResult, sidecars: Iterable[Sidecar]) -> RunResult:
    """``record`` with its sidecars' content added; the record's own values win."""
    changes: dict[str, Any] = {}
    for sidecar in sidecars:
        own = getattr(record, sidecar.kind) or {}
        merged = {**sidecar.content, **own}
        if sidecar.kind == "generation" and isinstance(own.get("metrics"), dict):
            merged["metrics"] = {**sidecar.content["metrics"], **own["metrics"]}
        changes[sidecar.kind] = merged
    return dataclasses.replace(record, **changes) if changes else record


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
        for path in self._json_files():
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished while listing
            on_disk[self._relative(path)] = (path, stat.st_size, stat.st_mtime_ns)
        with self._connect() as db:
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
                        json.dumps(parsed_file.content, allow_nan=True)))
                else:
                    db.execute("INSERT INTO problems VALUES (?, ?, ?, ?)",
                               (key, size, mtime, problem))
            db.execute("COMMIT")

    def records(self, split: str | None = None, corpus: str | None = None) -> list[RunResult]:
        """Every readable record, its sidecars merged (optionally: that scored ``split``, on
        ``corpus``)."""
        self.refresh()
        query = "SELECT path, record FROM runs r WHERE 1=1"
        args: list[Any] = []
        if corpus is not None:
            query += " AND r.corpus = ?"
            args.append(corpus)
        if split is not None:
            query += " AND EXISTS (SELECT 1 FROM metrics m WHERE m.path = r.path AND m.split = ?)"
            args.append(split)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY r.corpus, r.model, r.run_id", args).fetchall()
            sidecars = _sidecars_by_folder(db)
        return [self._with_sidecars(key, text, sidecars)[0] for key, text in rows]

    def problems(self) -> list[str]:
        """One line per file under the root that was skipped, and why (and the index's trouble):
        records that cannot be read, sidecars that cannot be read or name another run."""
        self.refresh()
        with self._connect() as db:
            rows = db.execute("SELECT path, message FROM problems").fetchall()
            runs = db.execute("SELECT path, run_id, corpus FROM runs").fetchall()
            sidecars = _sidecars_by_folder(db)
        found = [(key, _sidecar_problem(self.root / key, message)
                  if posixpath.basename(key) in SIDECAR_NAMES else
                  f"{self.root / key}: skipped, not an lmbench run record ({message})")
                 for key, message in rows]
        for key, run_id, corpus in runs:
            found += self._attached(key, run_id, corpus, sidecars)[1]
        lines = [line for _, line in sorted(found)]
        return lines + ([self._index_problem] if self._index_problem else [])

    def get(self, run_id: str) -> RunResult:
        """The record with this run id (the folder name under the root), sidecars merged."""
        return self.lookup(run_id)[0]

    def lookup(self, run_id: str) -> tuple[RunResult, list[str]]:
        """The record with this run id, sidecars merged, and one line per sidecar of it that was
        skipped (``problems`` lists them too)."""
        self.refresh()
        with self._connect() as db:
            rows = db.execute("SELECT path, record FROM runs WHERE run_id = ?",
                              (run_id,)).fetchall()
            if not rows:
                ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
                raise LmbenchError(f"no run {run_id!r} under {self.root}"
                                   f"{did_you_mean(run_id, ids) if ids else ''}")
            sidecars = _sidecars_by_folder(db)
            key = rows[0][0]
            unreadable = [] if posixpath.basename(key) != RECORD_NAME else db.execute(
                "SELECT path, message FROM problems WHERE path IN "
                f"({', '.join('?' * len(SIDECAR_NAMES))}) ORDER BY path",
                [posixpath.join(posixpath.dirname(key), name) for name in SIDECAR_NAMES]
            ).fetchall()
        if len(rows) > 1:
            raise LmbenchError(f"run id {run_id!r} names {len(rows)} records under {self.root}; "
                               "give the path of one result.json")
        record, problems = self._with_sidecars(*rows[0], sidecars)
        return record, [_sidecar_problem(self.root / path, message)
                        for path, message in unreadable] + problems

    # ---------------------------------------------------------------------------- internals

    def _with_sidecars(self, key: str, text: str, sidecars: dict[str, list[tuple[str, Sidecar]]]
                       ) -> tuple[RunResult, list[str]]:
        record = parse_record(json.loads(text))
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
                                                         json.loads(content))))
    return out
