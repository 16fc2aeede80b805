"""The leaderboard's tasks section: one row per model, one column per task evaluation.

Each cell is the headline metric of one ``TaskScore`` (``exact_match`` of a generate task,
``acc`` of a multiple-choice task, ``perplexity`` of a rolling one) with its 95% interval,
from the ``tasks.json`` sidecars ``lmbench eval-tasks`` writes beside the records. Columns are
``<task> <k>-shot <mode>``; a model not evaluated that way has an empty cell. Rows are sorted
by corpus and model label; nothing is ranked (tasks differ in difficulty and metric).
"""

from __future__ import annotations

import pandas as pd

from lmbench.core.results import RunResult, TaskScore
from lmbench.reports.tables import markdown_text

TASKS_NOTE = ("Task cells: the headline metric (exact_match: strict answer extraction; acc: "
              "multiple choice by log-likelihood; perplexity: rolling log-likelihood) with its "
              "95% interval (Wilson for accuracies, a bootstrap over documents for perplexity), "
              "from tasks.json beside each record (lmbench eval-tasks); n = questions asked.")


def _cell(score: TaskScore) -> str:
    value = score.metrics[score.metric]
    low, high = score.ci95.get(score.metric, (value, value))
    if score.metric == "perplexity":
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"
    return f"{value:.3f} [{low:.3f}, {high:.3f}] n={score.n_examples}"


def tasks_table(records: list[RunResult]) -> pd.DataFrame:
    """model, corpus and one column per task evaluation any record has (module docstring)."""
    rows, columns = [], []
    for record in records:
        if record.tasks is None or not record.tasks.scores:
            continue
        row = {"model": record.model, "corpus": record.corpus}
        for score in record.tasks.scores:
            row[score.key] = _cell(score)
            if score.key not in columns:
                columns.append(score.key)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows, columns=["model", "corpus", *sorted(columns)])
    return table.sort_values(["corpus", "model"], kind="stable").reset_index(drop=True)


def tasks_markdown(records: list[RunResult]) -> str:
    """The tasks section as Markdown, or "" when no record has task results."""
    table = tasks_table(records)
    if table.empty:
        return ""
    cells = table.fillna("").map(lambda v: markdown_text(str(v)))
    return "\n".join(["## Tasks", "", cells.to_markdown(index=False, disable_numparse=True), "",
                      markdown_text(TASKS_NOTE), ""])
