"""Leaderboards from result records: rank per corpus and track, render Markdown and CSV.

Records come from a results folder through ``lmbench.storage.store`` (its SQLite index); a file
that is not a readable record is reported by name and skipped, never breaking a report.

Two tracks, never ranked together:

- the closed-vocabulary word track (word tokenizer), ranked by perplexity, with the ``<unk>``
  rate beside it (a model that maps more words to ``<unk>`` looks better than it is);
- the open-vocabulary track (char, byte, BPE, any lossless tokenizer), ranked by bits per byte,
  which compares across tokenizers (Σ nats / (ln 2 · UTF-8 bytes)).

Rows whose likelihood is not exact (a masked LM's pseudo-log-likelihood) show a
*pseudo*-perplexity in a column of its own and are listed unranked after the ranked rows.
Published reference figures (``lmbench.reports.published``) go in tables of their own, marked
"published", and are never ranked with measured rows. The HTML page is ``lmbench.reports.html``.

Beside the likelihood columns: parameters, training time, scoring tokens/s, the decode tokens/s
of ``lmbench bench`` (``throughput.json`` beside the record) and a few generation metrics
(``GENERATION_COLUMNS``) of the generation benchmark's headline decoding, top-p 0.95
(``generation.json`` beside the record; ``lmbench.storage.store`` merges both sidecars). A note
under each table says which decoding, prompts and judge each model's generation columns come
from; the CSV keeps every generation metric and those settings.

Sweeps (``lmbench.runs.sweep``): a sweep is one row, its selected trial (the record with
``sweep.selected``, the only one scored on test), labelled "<label> (best of N trials)"; the
trials' own records are not ranked (``trials_table`` lists them, ``lmbench trials``).

Text from records (labels, corpus names, generation settings, file names) is escaped where the
cells are made, one function per format, as the HTML page escapes it: ``markdown_text`` (pipes,
``<``, ``>``, ``&`` and backslashes escaped, line breaks made spaces, so a label cannot break a
table or inject HTML) and ``csv_cell`` (text starting with ``=``, ``+``, ``-`` or ``@`` is
prefixed with ``'``, so a spreadsheet does not run it as a formula; OWASP, "CSV Injection").
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lmbench.core.results import GenerationResult, GenerationSettings, RunResult, ThroughputResult
from lmbench.models.catalog import notes_for
from lmbench.reports.published import Reference

WORD, OPEN = "word (closed vocab)", "open vocab"
TRACK_ORDER = {WORD: 0, OPEN: 1}
TRACK_TITLES = {WORD: "word track (closed vocabulary), ranked by perplexity",
                OPEN: "open-vocabulary track, ranked by bits per byte"}
PSEUDO_NOTE = ("Pseudo-perplexity comes from a masked LM's pseudo-log-likelihood (each token "
               "scored with context on both sides): it is not a perplexity, so those rows are "
               "listed unranked.")
FORMATS = {"perplexity": "{:.2f}", "pseudo-perplexity": "{:.2f}", "bits/byte": "{:.4f}",
           "pseudo bits/byte": "{:.4f}", "<unk> rate": "{:.2%}", "params": "{:,.0f}",
           "train s": "{:.1f}", "score tok/s": "{:,.0f}", "valid perplexity": "{:.2f}",
           "rank": "{:.0f}", "decode tok/s": "{:,.0f}", "gen MAUVE": "{:.3f}",
           "gen judge PPL": "{:.2f}", "gen distinct-2": "{:.3f}", "gen seq-rep-4": "{:.3f}",
           "gen decode tok/s": "{:,.0f}"}
# The generation metrics the tables show, by their key in ``RunResult.generation.metrics``
# (the headline decoding row of the generation benchmark's sidecar; every other generation
# metric is a ``gen <key>`` column of the CSV only).
GENERATION_COLUMNS = {"mauve": "gen MAUVE", "judge_perplexity": "gen judge PPL",
                      "distinct_2": "gen distinct-2", "seq_rep_4": "gen seq-rep-4",
                      "decode_tokens_per_s": "gen decode tok/s"}
GENERATION_NOTE = (
    "Generation columns: the generation benchmark's headline decoding row "
    "(benchmarks/generation_report.py --attach-to-runs writes it beside the record as "
    "generation.json), or the generation metrics recorded with the run. MAUVE: closeness to the "
    "human continuations (higher is closer); judge PPL: the judge model's perplexity of the "
    "continuations (comparable only under one judge); distinct-2 and seq-rep-4: diversity and "
    "repetition (closest to the human row is best); decode tok/s: tokens that decoding "
    "generated per second of wall time (a throughput over batched prompts where a batch size is "
    "named; lmbench bench's decode tok/s is one stream).")
UNDERTRAINED_MARK = "⚠ undertrained"  # appended to the label of a run that stopped too early
UNDERTRAINED_NOTE = (f"{UNDERTRAINED_MARK}: training stopped before its warm-up ended or far "
                     "short of its own step budget (lmbench.core.results.undertrained_reason), so "
                     "its figures say little about the model:")
SWEEP_NOTE = ("best of N trials: the trial of a hyper-parameter sweep with the lowest "
              "selection metric on the valid split (lmbench.runs.sweep; best of N settings: "
              "the setting with the lowest mean over its repeats, average_over); only it was "
              "scored on the test split. lmbench trials DIR lists every trial.")
# Published figures as their sources print them (252, 146.74), not padded to two decimals.
PUBLISHED_FORMATS = {**FORMATS, "perplexity": "{:.5g}", "valid perplexity": "{:.5g}"}


def collect_results(folder: str | Path) -> tuple[list[RunResult], list[str]]:
    """All records under ``folder`` and one line per file that could not be read."""
    from lmbench.storage.store import ResultStore

    store = ResultStore(folder)
    return store.records(), store.problems()


def track_of(record: RunResult) -> str:
    return WORD if record.config.get("tokenizer") == "word" else OPEN


def leaderboard_table(records: list[RunResult], split: str = "test") -> pd.DataFrame:
    """One row per record that scored ``split``: ranked rows best first within each corpus and
    track, then unranked pseudo-likelihood rows. Numbers stay numbers (formatting is render's)."""
    rows = []
    for record in records:
        m = record.metrics.get(split)
        if m is None or (record.sweep is not None and not record.sweep.selected):
            continue
        exact = m.exact_likelihood
        row = {
            "corpus": record.corpus, "track": track_of(record), "rank": None,
            "model": record.model if record.sweep is None else
            f"{record.model} ({record.sweep.choice_text()})",
            "trials": None if record.sweep is None else record.sweep.n_trials,
            "tokenizer": record.config.get("tokenizer", "?"),
            "perplexity": m.perplexity if exact else None,
            "ppl 95% CI": "{:.1f}-{:.1f}".format(*m.perplexity_ci95) if exact else "",
            "pseudo-perplexity": None if exact else m.perplexity,
            "bits/byte": m.bits_per_byte if exact else None,
            "bpb 95% CI": "{:.3f}-{:.3f}".format(*m.bits_per_byte_ci95) if exact else "",
            "pseudo bits/byte": None if exact else m.bits_per_byte,
            # the intervals as numbers, for the CSV (the tables show the text cells above)
            "ppl_ci_low": m.perplexity_ci95[0] if exact else None,
            "ppl_ci_high": m.perplexity_ci95[1] if exact else None,
            "bpb_ci_low": m.bits_per_byte_ci95[0] if exact else None,
            "bpb_ci_high": m.bits_per_byte_ci95[1] if exact else None,
            "<unk> rate": m.unk_rate,
            "params": record.n_params if record.n_params > 0 else None,
            "train s": record.fit_s,
            "score tok/s": m.tokens_per_s if math.isfinite(m.tokens_per_s) else None,
            "scored bytes/s": (m.tokens_per_s * m.n_bytes / m.n_tokens
                               if math.isfinite(m.tokens_per_s) else None),
            "decode tok/s": _decode_tokens_per_s(record.throughput),
            "run id": record.run_id,
            "undertrained": record.undertrained,
            "method note": " ".join(notes_for(record.config)) or None,
        }
        if record.generation is not None:
            row.update(_generation_cells(record.generation))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["model"] = _labels(table)
    key = table["perplexity"].where(table["track"] == WORD, table["bits/byte"])
    pseudo_key = table["pseudo-perplexity"].where(table["track"] == WORD, table["pseudo bits/byte"])
    table["_pseudo"] = key.isna()
    table["_key"] = key.fillna(pseudo_key)
    table = table.sort_values(["corpus", "track", "_pseudo", "_key", "model"], kind="stable")
    ranked = ~table["_pseudo"]
    table.loc[ranked, "rank"] = table[ranked].groupby(["corpus", "track"]).cumcount() + 1
    return table.drop(columns=["_pseudo", "_key"]).reset_index(drop=True)


def _decode_tokens_per_s(throughput: ThroughputResult | None) -> float | None:
    """``lmbench bench``'s median decode tokens/s, if measured."""
    if throughput is None or throughput.decode_tokens_per_s is None:
        return None
    return throughput.decode_tokens_per_s.median


def _labels(table: pd.DataFrame) -> list[str]:
    """Row labels: a label that several runs of one corpus share gets its run id's random suffix
    (``kn5 [e723f9]``), and an undertrained run ``UNDERTRAINED_MARK``."""
    shared = table.groupby(["corpus", "model"])["model"].transform("size") > 1
    labels = []
    for (_, row), repeated in zip(table.iterrows(), shared, strict=True):
        label = f"{row['model']} [{row['run id'].rsplit('-', 1)[-1]}]" if repeated else row["model"]
        labels.append(label if _missing(row["undertrained"]) else f"{label} {UNDERTRAINED_MARK}")
    return labels


def undertrained_note(rows: pd.DataFrame) -> str:
    """``UNDERTRAINED_NOTE`` with each undertrained row's reason, or "" when there is none."""
    if "undertrained" not in rows.columns:
        return ""
    reasons = [f"{row['model'].removesuffix(' ' + UNDERTRAINED_MARK)}: {row['undertrained']}"
               for _, row in rows.iterrows() if not _missing(row["undertrained"])]
    return f"{UNDERTRAINED_NOTE} {'; '.join(reasons)}." if reasons else ""


def _generation_cells(generation: GenerationResult) -> dict:
    """The ``gen`` columns of one record: its generation metrics (``GENERATION_COLUMNS`` under
    their display names, the others as ``gen <key>``) and, from a benchmark sidecar, the
    decoding, judge and prompt count they were measured with."""
    cells = {GENERATION_COLUMNS.get(name, f"gen {name}"): float(value)
             for name, value in generation.metrics.items() if value is not None}
    if not cells:
        return {}
    config = generation.config or GenerationSettings()
    judge, judge_file = generation.judge, generation.judge_file
    if judge is not None and judge_file is not None:
        judge = f"{_file_label(judge_file)} ({judge})"
    elif judge is not None and generation.strategy is not None:
        judge = f"itself ({judge})"
    return {**cells, "gen decoding": generation.strategy, "gen judge": judge,
            "gen prompts": None if config.n_prompts is None else float(config.n_prompts),
            "gen batch size": None if config.batch_size is None else float(config.batch_size)}


def _file_label(path: str) -> str:
    """A model file as the generation benchmark labels it: a run folder's name, else the file."""
    parts = path.replace("\\", "/").split("/")
    return parts[-2] if parts[-1] == "model.npz" and len(parts) > 1 else parts[-1]


def generation_note(rows: pd.DataFrame) -> str:
    """``GENERATION_NOTE`` and the settings behind the ``gen`` columns of ``rows`` (decoding,
    prompts, judge, with the models measured so), or "" when no row has a ``gen`` column."""
    shown = [c for c in GENERATION_COLUMNS.values() if c in rows.columns]
    if not shown:
        return ""
    groups: dict[str, list[str]] = {}
    for _, row in rows.iterrows():
        if all(_missing(row[c]) for c in shown):
            continue
        decoding = row.get("gen decoding")
        if _missing(decoding):
            setting = "as recorded with the run"
        else:
            prompts, batch = row.get("gen prompts"), row.get("gen batch size")
            setting = (f"{decoding}, " + ("" if _missing(prompts) else f"{prompts:.0f} prompts, ")
                       + ("" if _missing(batch) else f"batches of {batch:.0f}, ")
                       + f"judge {'?' if _missing(row.get('gen judge')) else row['gen judge']}")
        groups.setdefault(setting, []).append(str(row["model"]))
    if not groups:
        return ""
    return GENERATION_NOTE + " Measured with: " + "; ".join(
        f"{setting}: {', '.join(models)}" for setting, models in groups.items()) + "."


def published_table(references: list[Reference], corpora: list[str] | None = None
                    ) -> pd.DataFrame:
    """The published figures (for ``corpora`` only, if given), best first per corpus and track."""
    rows = [{
        "corpus": r.corpus, "track": WORD if r.track == "word" else OPEN, "model": r.model,
        "split": r.split, "perplexity": r.perplexity, "valid perplexity": r.valid_perplexity,
        "bits/byte": r.bits_per_byte, "params": r.n_params, "source": r.source, "notes": r.notes,
    } for r in references if corpora is None or r.corpus in corpora]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_key"] = table["perplexity"].where(table["track"] == WORD, table["bits/byte"])
    table = table.sort_values(["corpus", "track", "_key"], kind="stable")
    return table.drop(columns="_key").reset_index(drop=True)


# Columns shown in the per-track tables (CSV keeps every column).
MEASURED_COLUMNS = ["rank", "model", "tokenizer", "perplexity", "ppl 95% CI", "<unk> rate",
                    "pseudo-perplexity", "bits/byte", "bpb 95% CI", "pseudo bits/byte", "params",
                    "train s", "score tok/s", "decode tok/s", *GENERATION_COLUMNS.values()]
PUBLISHED_COLUMNS = ["model", "split", "perplexity", "valid perplexity", "bits/byte", "params",
                     "source", "notes"]


def shown_columns(table: pd.DataFrame, columns: list[str], track: str) -> list[str]:
    """The columns worth showing for one track: present and not all empty; ``<unk>`` rate
    always on the word track, on the open track only where some tokenizer has an ``<unk>``;
    per-token perplexity not on the open track (tokens differ across tokenizers there)."""
    shown = []
    for column in columns:
        if column not in table.columns:
            continue
        if track == OPEN and column in ("perplexity", "ppl 95% CI", "pseudo-perplexity"):
            continue
        values = table[column]
        if column == "<unk> rate" and track == OPEN and not (values.fillna(0) > 0).any():
            continue
        if column == "<unk> rate" and track == WORD:
            shown.append(column)
        elif values.notna().any() and not (values.astype(str) == "").all():
            shown.append(column)
    return shown


def format_cells(table: pd.DataFrame, formats: dict[str, str] = FORMATS) -> pd.DataFrame:
    """Numbers as display strings (blank where missing; text as it is)."""
    shown = table.copy().astype(object)
    for column in shown.columns:
        fmt = formats.get(column, "{:.4g}" if column.startswith("gen ") else None)
        shown[column] = [_cell(v, fmt) for v in shown[column]]
    return shown


def _cell(value, fmt: str | None) -> str:
    if _missing(value):
        return ""
    if fmt is None:
        return str(value)
    try:
        return fmt.format(value)
    except (TypeError, ValueError):  # text in a numeric column (a gen setting)
        return str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def to_markdown(table: pd.DataFrame) -> str:
    """One measured table as Markdown (all columns given; used by ``lmbench run``'s summary)."""
    if table.empty:
        return "(no results)"
    columns = [c for c in MEASURED_COLUMNS if c in table.columns]
    keep = [c for c in columns if table[c].notna().any() and not (table[c].astype(str) == "").all()]
    return _markdown(table[["corpus", "track", *keep]])


def markdown_text(value) -> str:
    """``value`` as Markdown text that stays one table cell and shows as written: backslashes,
    ``|``, ``<``, ``>`` and ``&`` escaped, line breaks turned into spaces."""
    text = str(value)
    for raw, escaped in _MARKDOWN_ESCAPES:
        text = text.replace(raw, escaped)
    return " ".join(text.splitlines())


_MARKDOWN_ESCAPES = (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"),
                     ("|", "\\|"))
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run


def csv_cell(value):
    """``value`` for a CSV cell: text that a spreadsheet would read as a formula (starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) prefixed with ``'``; numbers, and
    text that is a plain number ("-3.5"), as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def _markdown(table: pd.DataFrame, formats: dict[str, str] = FORMATS) -> str:
    """Formatted cells as a Markdown table: numbers right-aligned, kept as formatted, every
    cell escaped (``markdown_text``)."""
    align = ["right" if c in formats or c.startswith("gen ") else "left" for c in table.columns]
    cells = format_cells(table, formats).map(markdown_text)
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)


def table_notes(rows: pd.DataFrame) -> list[str]:
    """The notes under a table of measured ``rows``, in order: pseudo-likelihood rows, undertrained
    rows, the families' notes that explain some row (each once), and the generation settings.
    Markdown and HTML print the same list."""
    notes = [PSEUDO_NOTE] if rows["rank"].isna().any() else []
    notes += [undertrained_note(rows)] if undertrained_note(rows) else []
    notes += [f"Note: {note}" for note in dict.fromkeys(rows["method note"].dropna())]
    notes += [generation_note(rows)] if generation_note(rows) else []
    if "trials" in rows.columns and rows["trials"].notna().any():
        notes.append(SWEEP_NOTE)
    return notes


def markdown_report(table: pd.DataFrame, published: pd.DataFrame, problems: list[str],
                    split: str, title: str = "lmbench leaderboard") -> str:
    """The full leaderboard as Markdown: per corpus and track, the ranked table, then the
    published references for it, then the files that were skipped."""
    lines = [f"# {title}", "", f"Split: `{split}`. {len(table)} measured runs. Published "
             "figures are listed separately and never ranked with measured ones.", ""]
    for corpus, track in _groups(table, published):
        lines += [f"## {markdown_text(corpus)}: {TRACK_TITLES[track]}", ""]
        rows = _select(table, corpus, track)
        if not rows.empty:
            columns = shown_columns(rows, MEASURED_COLUMNS, track)
            lines += [_markdown(rows[columns]), ""]
            for note in table_notes(rows):
                lines += [markdown_text(note), ""]
        refs = _select(published, corpus, track)
        if not refs.empty:
            columns = shown_columns(refs, PUBLISHED_COLUMNS, track)
            lines += ["Published references (not measured by lmbench run; not ranked):", "",
                      _markdown(refs[columns], PUBLISHED_FORMATS), ""]
    if problems:
        lines += ["## Skipped files", ""] + [f"- {markdown_text(p)}" for p in problems] + [""]
    return "\n".join(lines)


def csv_report(table: pd.DataFrame, published: pd.DataFrame) -> str:
    """Measured and published rows in one CSV, told apart by the ``kind`` column (published
    rows have no rank). Intervals are two numeric columns each (``ppl_ci_low``, ``ppl_ci_high``,
    ``bpb_ci_low``, ``bpb_ci_high``), not the tables' text cells."""
    measured = table.drop(columns=["ppl 95% CI", "bpb 95% CI"]).assign(kind="measured")
    refs = published.assign(kind="published") if not published.empty else published
    both = pd.concat([t for t in (measured, refs) if not t.empty], ignore_index=True)
    if both.empty:
        return ""
    first = ["kind", "corpus", "track", "rank", "model"]
    both = both[[c for c in first if c in both] + [c for c in both if c not in first]]
    return both.map(csv_cell).to_csv(index=False)


def _groups(table: pd.DataFrame, published: pd.DataFrame) -> list[tuple[str, str]]:
    """(corpus, track) pairs that have measured rows (published-only ones are left out)."""
    if table.empty:
        return []
    return sorted(set(zip(table["corpus"], table["track"], strict=True)),
                  key=lambda group: (group[0], TRACK_ORDER[group[1]]))


def _select(table: pd.DataFrame, corpus: str, track: str) -> pd.DataFrame:
    if table.empty:
        return table
    return table[(table["corpus"] == corpus) & (table["track"] == track)]


# ------------------------------------------------------------------------------------ sweeps

TRIAL_FORMATS = {**FORMATS, "trial": "{:.0f}", "valid": "{:.4f}", "train s": "{:.1f}"}


def trials_table(records: list[RunResult]) -> pd.DataFrame:
    """One row per sweep trial (``RunResult.sweep``, not the selection's own record), by corpus,
    sweep and trial: its values, its valid-split selection metric, and whether the sweep
    selected it (a selection record of the same sweep, corpus and seed names its trial)."""
    chosen = {(r.corpus, r.seed, r.sweep.label): r.sweep.trial for r in records
              if r.sweep is not None and r.sweep.selected}
    rows = []
    for record in records:
        sweep = record.sweep
        if sweep is None or sweep.selected or "valid" not in record.metrics:
            continue
        valid = record.metrics["valid"]
        rows.append({
            "corpus": record.corpus, "sweep": sweep.label, "trial": sweep.trial,
            "of": sweep.n_trials, "params": ", ".join(f"{k}={v!r}" for k, v in
                                                     sweep.params.items()),
            "metric": sweep.metric,
            "valid": valid.perplexity if sweep.metric == "valid_ppl" else valid.bits_per_byte,
            "selected": "yes" if chosen.get((record.corpus, record.seed, sweep.label))
            == sweep.trial else "",
            "train s": record.fit_s, "run id": record.run_id})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["corpus", "sweep", "trial"], kind="stable").reset_index(drop=True)


def sweep_markdown(table: pd.DataFrame) -> str:
    """``trials_table`` as Markdown."""
    return _markdown(table, TRIAL_FORMATS)
