"""One way to name a run or a model on the command line: ``compare``, ``evaluate``, ``generate``
and ``bench`` all resolve their arguments here.

A reference is, tried in this order:

1. a run folder (``<out>/<run_id>/``, holding ``result.json``) or its ``result.json``;
2. a model file: ``model.npz`` (``--save-models`` / ``model.save``) or an ``.arpa`` file; one
   that sits in a run folder brings that run's record (its corpus, its run id);
3. with ``results`` (``--results DIR``): a run id under DIR, else a label (the ``model`` of the
   records, e.g. ``kn5``), which must name one run only.

A JSON file where a model is expected is refused as what it is ("x.json is a JSON file, not a
saved model (.npz) or .arpa"), unless it is a run's ``result.json`` with the model saved beside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lmbench.core.errors import LmbenchError, did_you_mean
from lmbench.core.results import RunResult
from lmbench.storage.store import RECORD_NAME, ResultStore, read_run

MODEL_NAME = "model.npz"  # a model saved in its run folder (lmbench run --save-models)


@dataclass(frozen=True)
class RunReference:
    """A resolved run: its record (sidecars merged), its folder, the sidecars skipped."""

    record: RunResult
    folder: Path | None  # the run folder holding result.json (None: a record file elsewhere)
    skipped: tuple[str, ...] = ()  # one line per sidecar of the record that could not be merged


@dataclass(frozen=True)
class ModelReference:
    """A resolved model: the file to load, and the run it belongs to, if any."""

    path: Path
    run: RunReference | None  # None: a model file outside any run folder


def resolve_run(reference: str | os.PathLike, results: str | os.PathLike | None = None
                ) -> RunReference:
    """The run named by ``reference`` (module docstring): a run folder, a ``result.json``, a
    saved model in a run folder, or a run id or label under ``results``.

    Raises:
        LmbenchError: nothing of that name, or a label that several runs share.
    """
    path = Path(reference)
    if path.is_dir() and (path / RECORD_NAME).is_file():
        path = path / RECORD_NAME
    if path.is_file() and path.suffix != ".json" and (path.parent / RECORD_NAME).is_file():
        path = path.parent / RECORD_NAME  # a model saved in its run folder
    if path.is_file():
        record, skipped = read_run(path)
        folder = path.parent if path.name == RECORD_NAME else None
        return RunReference(record, folder, tuple(skipped))
    if results is None:
        raise LmbenchError(f"{reference}: no such result.json, run folder or model file (give "
                           "--results DIR to look a run id or label up)")
    return _lookup(str(reference), ResultStore(results))


def resolve_model(reference: str | os.PathLike, results: str | os.PathLike | None = None
                  ) -> ModelReference:
    """The model file named by ``reference`` (module docstring) and its run, if it has one.

    Raises:
        LmbenchError: no such model, a run saved without its model, or a JSON file.
    """
    path = Path(reference)
    if path.is_file() and path.suffix != ".json":
        beside = path.parent / RECORD_NAME
        run = resolve_run(beside) if path.name == MODEL_NAME and beside.is_file() else None
        return ModelReference(path, run)
    if path.is_file() and path.name != RECORD_NAME:
        raise LmbenchError(f"{path} is a JSON file, not a saved model (.npz) or .arpa")
    if not path.is_dir() and not path.is_file() and results is None:
        raise LmbenchError(f"{reference}: model file not found (give a model.npz or .arpa, a run "
                           "folder, or --results DIR to look a run id or label up)")
    run = resolve_run(reference, results)
    if run.folder is None or not (run.folder / MODEL_NAME).is_file():
        where = run.folder or path
        raise LmbenchError(f"{where}: run {run.record.run_id!r} has no saved model ({MODEL_NAME}"
                           "); run it again with lmbench run --save-models --retrain")
    return ModelReference(run.folder / MODEL_NAME, run)


def _lookup(name: str, store: ResultStore) -> RunReference:
    """A run id under ``store``, else a label that names one run there."""
    records = store.records()
    by_id = [r for r in records if r.run_id == name]
    if not by_id:
        by_id = [r for r in records if r.model == name]
        if len(by_id) > 1:
            raise LmbenchError(f"label {name!r} names {len(by_id)} runs under {store.root}: "
                               f"{', '.join(r.run_id for r in by_id)}; give one run id")
    if not by_id:
        known = sorted({r.run_id for r in records} | {r.model for r in records})
        raise LmbenchError(f"no run id or label {name!r} under {store.root}"
                           f"{did_you_mean(name, known) if known else ''}")
    record, skipped = store.lookup(by_id[0].run_id)
    matches = sorted(store.root.glob(f"**/{record.run_id}/{RECORD_NAME}"))
    return RunReference(record, matches[0].parent if matches else None, tuple(skipped))


def corpus_of(model: ModelReference, corpus: str | None, command: str) -> str:
    """``corpus`` if given, else the corpus the model's run was scored on (``--corpus``'s
    default for ``evaluate`` and ``bench``)."""
    if corpus:
        return corpus
    if model.run is None:
        raise LmbenchError(f"{command} of {model.path} needs --corpus: the model is not in a run "
                           "folder, so its corpus is unknown")
    return model.run.record.corpus
