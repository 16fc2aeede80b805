"""The leaderboard as one self-contained HTML page: inline CSS, inline JS, inline SVG plots.

Nothing is fetched when the page is opened (no fonts, scripts or images from elsewhere), so it
can be mailed, committed or opened offline. Per corpus it shows, for each track, the ranked
table (click a header to sort; blanks sort last), the published references in a separate table
marked "published", the plots of ``lmbench.reports.plots``, the ladder plot where the records
hold a ladder (``lmbench.reports.ladder``: some series selected at two or more wall-clock
budgets) and the generation samples of each run. Every piece of text that comes from a record,
a corpus or a generation is escaped (``html.escape``), so a sample containing ``<script>`` is
shown, never run.

It is laid out to be read in a 1,400 px window: the ``<title>`` and heading are the title's
first sentence (at most ``TITLE_CHARS`` characters), the whole title, the split and the command
sit in a closed "Provenance" ``<details>``; each table scrolls sideways inside its own box and
shows its main columns, the others (``_extra_column``) behind a "show more columns" checkbox
(CSS only, so it works without the script); every run's samples are a closed ``<details>``.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone

import pandas as pd

from lmbench.core.results import RunResult
from lmbench.reports.ladder import LadderPoint, ladder_points, ladder_svg
from lmbench.reports.plots import corpus_figures
from lmbench.reports.published import Reference
from lmbench.reports.tables import (
    FORMATS,
    MEASURED_COLUMNS,
    OPEN,
    PUBLISHED_COLUMNS,
    PUBLISHED_FORMATS,
    TRACK_ORDER,
    TRACK_TITLES,
    WORD,
    format_cells,
    leaderboard_table,
    published_table,
    shown_columns,
    table_notes,
)
from lmbench.reports.task_tables import tasks_html

MAX_SAMPLES = 6  # generation samples shown per run
TITLE_CHARS = 70  # the longest <title> / <h1>; a longer title is cut and shown whole below

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1280px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: right; vertical-align: top;
         white-space: nowrap; }
td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 8em; }
th { background: #f3f3f3; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
td.text, th.text { text-align: left; }
table.published { background: #fbf8ef; }
table.published caption, .badge { font-weight: 600; color: #8a6d00; text-align: left; }
.badge { border: 1px solid #d9c27a; border-radius: 3px; padding: 0 .3em; font-size: .8em; }
.note { color: #555; font-size: .9em; max-width: 60em; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #444; }
svg { max-width: 100%; height: auto; }
pre { white-space: pre-wrap; margin: 0; font-size: 12px; max-width: 40em; text-align: left; }
.problems li { font-family: monospace; font-size: 12px; }
td.id { font: 11.5px/1.45 ui-monospace, monospace; }
.scroll { overflow-x: auto; max-width: 100%; margin: .5em 0 1em; }
.scroll table { margin: 0; }
input.more:not(:checked) ~ .scroll .extra { display: none; }
label.more { font-size: .85em; color: #555; cursor: pointer; }
details { margin: .3em 0; } summary { cursor: pointer; }
details.provenance { color: #555; font-size: .9em; max-width: 60em; }
details.provenance p { margin: .3em 0 .3em 1.2em; }
table.samples { width: 100%; } table.samples th { cursor: default; width: 10em; }
table.samples td { white-space: normal; text-align: left; }
.sample { display: grid; grid-template-columns: repeat(auto-fit, minmax(16em, 1fr));
          gap: .2em 1em; border-top: 1px solid #eee; padding: .4em 0; }
.sample pre { max-width: none; }
"""

# Sort a table by the clicked column: numbers numerically, text alphabetically, blanks last.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.getAttribute("data-type") === "num";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-v"), y = b.cells[column].getAttribute("data-v");
        if (x === y) { return 0; }
        if (x === "") { return 1; }
        if (y === "") { return -1; }
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.body.setAttribute("data-ready", "1");
"""

_WRAPPED = {"model", "source", "notes"}  # long text: the only cells that wrap (never run ids)
_TEXT_COLUMNS = {"model", "tokenizer", "ppl 95% CI", "bpb 95% CI", "source", "notes", "split",
                 "run id"}
# Behind "show more columns": a track's second quality figure and its interval, the decode
# speed, and every generation column but MAUVE.
_SECOND_QUALITY = {WORD: ("bits/byte", "bpb 95% CI", "pseudo bits/byte")}
_MAIN_GENERATION = "gen MAUVE"
_HTML_FORMATS = {**FORMATS, "scored bytes/s": "{:,.0f}"}


def _extra_column(column: str, track: str) -> bool:
    """Whether ``column`` of a ``track`` table starts hidden behind "show more columns"."""
    return (column in _SECOND_QUALITY.get(track, ()) or column == "decode tok/s"
            or (column.startswith("gen ") and column != _MAIN_GENERATION))


def short_title(title: str) -> str:
    """The page's ``<title>``: ``title``'s first sentence, cut at a word to ``TITLE_CHARS``."""
    first = title.strip().split(". ", 1)[0].strip()
    if len(first) <= TITLE_CHARS:
        return first
    return first[: TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "\u2026"


def render_html(records: list[RunResult], references: list[Reference], problems: list[str],
                split: str = "test", title: str = "lmbench leaderboard",
                command: str | None = None) -> str:
    """The whole page as a string (see the module docstring)."""
    table = leaderboard_table(records, split)
    corpora = sorted(set(table["corpus"])) if not table.empty else []
    published = published_table(references, corpora)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    short = short_title(title)
    whole = f"<p>{_e(title)}</p>" if short != title.strip() else ""
    parts = [f"<h1>{_e(short)}</h1>",
             f"<p class='note'>Split <code>{_e(split)}</code>, {len(table)} measured runs. Rows "
             "marked <span class='badge'>published</span> are figures from papers and other "
             "tools, listed apart and never ranked with measured runs.</p>",
             f"<details class='provenance'><summary>Provenance</summary>{whole}"
             f"<p>Generated {_e(created)}"
             + (f" by <code>{_e(command)}</code>" if command else "")
             + f" from {len(records)} records (split <code>{_e(split)}</code>).</p></details>"]
    if not corpora:
        parts.append("<p>No measured runs for this split.</p>")
    points = ladder_points(records, split)  # once: every corpus's ladder figure reads them
    for corpus in corpora:
        parts.append(_corpus_section(corpus, table, published, records, split, points))
    if tasks_html(records):
        parts.append(tasks_html(records))
    if problems:
        parts.append("<h2>Skipped files</h2><ul class='problems'>"
                     + "".join(f"<li>{_e(p)}</li>" for p in problems) + "</ul>")
    parts.append(_definitions())
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_e(short)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{_JS}</script>\n</body>\n</html>\n")


def _corpus_section(corpus: str, table: pd.DataFrame, published: pd.DataFrame,
                    records: list[RunResult], split: str, points: list[LadderPoint]) -> str:
    parts = [f"<section id='{_e(_anchor(corpus))}'><h2>{_e(corpus)}</h2>"]
    rows_of_corpus = table[table["corpus"] == corpus]
    for track in sorted(set(rows_of_corpus["track"]), key=TRACK_ORDER.get):
        rows = rows_of_corpus[rows_of_corpus["track"] == track]
        parts.append(f"<h3>{_e(TRACK_TITLES[track])}</h3>")
        columns = shown_columns(rows, MEASURED_COLUMNS + ["run id"], track)
        if track == OPEN and "score tok/s" in columns:  # the open track's Pareto axis
            columns.insert(columns.index("score tok/s") + 1, "scored bytes/s")
        parts.append(_table(rows, columns, "sortable measured", _HTML_FORMATS,
                            extra={c for c in columns if _extra_column(c, track)},
                            toggle_id=f"more-{_anchor(corpus)}-{_anchor(track)}"))
        parts += [f"<p class='note'>{_e(note)}</p>" for note in table_notes(rows)]
        if not published.empty:
            refs = published[(published["corpus"] == corpus) & (published["track"] == track)]
            if not refs.empty:
                parts.append(_table(refs, shown_columns(refs, PUBLISHED_COLUMNS, track),
                                    "sortable published", PUBLISHED_FORMATS,
                                    caption="Published references (not measured by lmbench "
                                            "run; not ranked)"))
    for caption, svg in corpus_figures(table, published, records, corpus) + _ladder_figure(
            points, published, corpus, split):
        parts.append(f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>")
    parts.append(_samples([r for r in records if r.corpus == corpus and split in r.metrics]))
    parts.append("</section>")
    return "\n".join(parts)


def _ladder_figure(points: list[LadderPoint], published: pd.DataFrame, corpus: str,
                   split: str) -> list[tuple[str, str]]:
    """The corpus's ladder plot as a (caption, svg) pair, where some series of its points
    (``ladder_points``) was selected at two or more wall-clock budgets; else nothing."""
    points = [p for p in points if p.corpus == corpus]
    budgets: dict[str, set[float]] = {}
    for point in points:
        if point.budget_s is not None:
            budgets.setdefault(point.series, set()).add(point.budget_s)
    if not any(len(b) > 1 for b in budgets.values()):
        return []
    svg = ladder_svg(points, published, corpus)
    caption = (f"{corpus}: the ladder, {split} quality against the training budget per series "
               "(log time), each point its sweep's selected trial (xN: the trials behind it), "
               "published figures dashed")
    return [(caption, svg)] if svg else []


def _table(rows: pd.DataFrame, columns: list[str], classes: str,
           formats: dict[str, str] | None = None, caption: str = "",
           extra: frozenset[str] | set[str] = frozenset(), toggle_id: str = "") -> str:
    """A sortable table in a sideways-scrolling box; the ``extra`` columns start hidden behind
    a checkbox (``toggle_id``) when there are any."""
    shown = format_cells(rows[columns], formats) if formats else format_cells(rows[columns])
    hidden = [c for c in columns if c in extra]

    def kind(column: str) -> str:
        return ("text" if column in _TEXT_COLUMNS else "num") + (
            " extra" if column in extra else "")

    head = "".join(
        f"<th class='{kind(c)}' "
        f"data-type='{'text' if c in _TEXT_COLUMNS else 'num'}'>{_e(c)}</th>" for c in columns)
    body = []
    for (_, raw), (_, text) in zip(rows[columns].iterrows(), shown.iterrows(), strict=True):
        cells = []
        for column in columns:
            value = raw[column]
            sort_value = "" if _blank(value) else (str(value) if column in _TEXT_COLUMNS
                                                   else repr(float(value)))
            cls = ("text wrap" if column in _WRAPPED else "text id" if column == "run id"
                   else "text" if column in _TEXT_COLUMNS else "num") + (
                       " extra" if column in extra else "")
            cells.append(f"<td class='{cls}' data-v='{_e(sort_value)}'>{_e(text[column])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption_html = f"<caption>{_e(caption)}</caption>" if caption else ""
    table = (f"<div class='scroll'><table class='{classes}'>{caption_html}<thead><tr>{head}"
             f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    if not hidden:
        return table
    return (f"<div class='columns'><input type='checkbox' class='more' id='{_e(toggle_id)}'> "
            f"<label class='more' for='{_e(toggle_id)}'>show {len(hidden)} more columns: "
            f"{_e(', '.join(hidden))}</label>{table}</div>")


def _samples(records: list[RunResult]) -> str:
    """Generation samples: one row per run, its samples in a closed ``<details>``."""
    runs = [r for r in records if r.generation is not None and r.generation.samples]
    if not runs:
        return ""
    body = []
    for r in runs:
        samples = list(r.generation.samples)[:MAX_SAMPLES]
        shown = []
        for i, entry in enumerate(samples):
            shown.append(f"<div class='sample'>{_sample_cell(entry, f'#{i + 1}')}</div>")
        body.append(f"<tr><th class='text'>{_e(r.model)}</th><td><details><summary>"
                    f"{len(samples)} sample{'s' if len(samples) != 1 else ''} "
                    f"<span class='note'>({_e(r.run_id)})</span></summary>{''.join(shown)}"
                    "</details></td></tr>")
    return ("<h3>Generation samples</h3><p class='note'>One row per run; open it to read its "
            "samples. Prompts in bold. Runs measured by the generation benchmark show the human "
            "continuation, then each decoding's, for the benchmark's first prompts (the same "
            "prompts for runs that share a tokenizer and the benchmark's settings).</p>"
            "<table class='samples'><tbody>" + "".join(body) + "</tbody></table>")


def _sample_cell(entry: dict, number: str) -> str:
    """The prompt in bold, then the continuation; a sample with several continuations (the
    generation benchmark's {"prompt", "human", <strategy>: text}) shows each under its name;
    ``number`` heads the prompt."""
    prompt = entry.get("prompt")
    parts = [f"<div><div class='note'>{_e(number)} prompt</div>"
             + (f"<pre><b>{_e(prompt)}</b></pre>" if prompt else "") + "</div>"]
    others = [k for k in entry if k != "prompt"]
    if others == ["text"]:
        return "".join(parts) + f"<div><pre>{_e(entry['text'])}</pre></div>"
    for key in others:
        parts.append(f"<div><div class='note'>{_e(key)}</div><pre>{_e(entry[key])}</pre></div>")
    return "".join(parts)


def _definitions() -> str:
    return ("<h2>How to read this</h2><p class='note'>Perplexity = exp(Σ NLL / tokens) over the "
            "whole split; bits per byte = Σ NLL / (ln 2 · UTF-8 bytes of the raw text), which "
            "compares across tokenizers. Word-track perplexities hide the words mapped to "
            "&lt;unk&gt; (rate shown). 95% intervals: block bootstrap over the split. Train s: "
            "fitting time; score tok/s: tokens scored per second; decode tok/s: tokens "
            "generated per second by <code>lmbench bench</code>. Columns named gen come from "
            "the generation benchmark (the note under each table names the decoding, prompts "
            "and judge). Plots draw published references as dashed lines.</p>")


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


def _e(text) -> str:
    return html.escape(str(text), quote=True)
