"""Writing task results: the ``tasks.json`` sidecar beside a run record and one JSONL file of
per-example records per score.

Layout, under the results folder ``out`` (a run's own folder is ``out/<run_id>``)::

    out/<run_id>/tasks.json                    TaskResults: every TaskScore of the model
    out/<run_id>/tasks/<task>-<k>shot-<mode>.jsonl   one line per example: prompt, output,
                                               extracted answer(s), correct

A new evaluation is merged into an existing ``tasks.json``: a score of the same task, shots
and mode is replaced, the others kept. Where ``out/<run_id>`` holds the run's ``result.json``
the sidecar is written through ``lmbench.storage.store.write_sidecar`` (checked against the
record, so the leaderboard and ``compare`` read it); elsewhere (a model file outside any run)
it is written alone. Every file is written atomically, the JSONL files first and
``tasks.json`` last, so a reader never sees a score whose examples are missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.names import contained, safe_name
from lmbench.core.results import TaskResults, TaskScore, environment
from lmbench.storage.store import RECORD_NAME, write_sidecar
from lmbench.tasks.evaluator import TaskEvaluation

TASKS_NAME = "tasks.json"
EXAMPLES_FOLDER = "tasks"


def examples_name(score: TaskScore) -> str:
    """``addition-8shot-cot.jsonl``: the per-example file of one score."""
    return safe_name(f"{score.task}-{score.num_fewshot}shot-{score.mode}", "task name") + ".jsonl"


def jsonl_text(examples: Sequence[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)


def read_task_results(path: str | Path) -> TaskResults:
    """A ``tasks.json`` file (``ValueError`` naming the field if it is not one)."""
    return TaskResults.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), where="")


def write_task_results(out: str | Path, run_id: str, model: str, evaluations:
                       Sequence[TaskEvaluation], *, family: str | None = None,
                       device: str | None = None) -> Path:
    """Write the evaluations of one model (module docstring); returns the ``tasks.json`` path.

    Args:
        out: the results folder; files go to ``out/<run_id>/``.
        run_id: the run the model belongs to (its record's), or a name for a model outside any.
        model: the model's label.
        evaluations: ``evaluate_task``'s results.
        family: the model's family, recorded.
        device: where it ran, recorded.
    """
    folder = contained(out, safe_name(run_id, "run id"))
    scores = []
    for evaluation in evaluations:
        name = examples_name(evaluation.score)
        write_text_atomic(contained(folder, EXAMPLES_FOLDER, name), jsonl_text(evaluation.examples))
        scores.append(replace(evaluation.score, examples_file=f"{EXAMPLES_FOLDER}/{name}"))
    env = environment()
    results = TaskResults(run_id=run_id, model=model, family=family, created=env["created"]
                          or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          git_commit=env["git_commit"], device=device, scores=tuple(scores))
    path = folder / TASKS_NAME
    if path.is_file():
        try:
            results = read_task_results(path).merged(results)
        except ValueError:
            pass  # an unreadable older file is replaced by the new results
    if (folder / RECORD_NAME).is_file():
        return write_sidecar(folder, "tasks", results.to_dict())
    write_json_atomic(path, results.to_dict())
    return path
