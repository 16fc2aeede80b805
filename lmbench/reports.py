"""Leaderboards from result records: read ``*/result.json`` under a folder, rank, render.

The closed-vocabulary word track (word tokenizer) is ranked by perplexity with its ``<unk>`` rate
beside it; every row also shows bits per byte, the tokenizer-independent figure. Rows whose
likelihood is not exact (pseudo-likelihood) show their perplexity in a separate column and are
never ranked with exact ones. A file that is not a readable record is reported by name and
skipped; it never breaks a report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lmbench.results import RunResult


def collect_results(folder: str | Path) -> tuple[list[RunResult], list[str]]:
    """All records under ``folder`` and one line per file that could not be read."""
    records, problems = [], []
    for path in sorted(Path(folder).glob("**/result.json")):
        try:
            records.append(RunResult.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{path}: skipped, not a readable result record ({error})")
    return records, problems


def leaderboard_table(records: list[RunResult], split: str = "test") -> pd.DataFrame:
    """One row per record that scored ``split``, best first within each corpus and track."""
    rows = []
    for record in records:
        metrics = record.metrics.get(split)
        if metrics is None:
            continue
        tokenizer = record.config.get("tokenizer", "?")
        exact = metrics.exact_likelihood
        rows.append({
            "corpus": record.corpus,
            "track": "word (closed vocab)" if tokenizer == "word" else "open vocab",
            "model": record.model,
            "tokenizer": tokenizer,
            "perplexity": metrics.perplexity if exact else None,
            "ppl 95% CI": "{:.1f}-{:.1f}".format(*metrics.perplexity_ci95) if exact else "",
            "pseudo-perplexity": None if exact else metrics.perplexity,
            "bits/byte": metrics.bits_per_byte,
            "<unk> rate": metrics.unk_rate,
            "params": record.n_params,
            "fit s": record.fit_s,
            "score tok/s": metrics.tokens_per_s,
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_rank_key"] = table["perplexity"].fillna(float("inf"))
    table.loc[table["track"] == "open vocab", "_rank_key"] = table["bits/byte"]
    table = table.sort_values(["corpus", "track", "_rank_key"]).drop(columns="_rank_key")
    return table.reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no results)"
    formats = {"perplexity": "{:.2f}", "pseudo-perplexity": "{:.2f}", "bits/byte": "{:.4f}",
               "<unk> rate": "{:.2%}", "params": "{:,}", "fit s": "{:.1f}",
               "score tok/s": "{:,.0f}"}
    shown = table.copy()
    for column, fmt in formats.items():
        shown[column] = [fmt.format(v) if pd.notna(v) else "" for v in shown[column]]
    return shown.to_markdown(index=False)
