"""The ladder view: test quality against training budget, per model series, each point the
selected trial of a sweep (``baselines/ladder_*.toml``; issue 16's equal-budget ladders).

A ladder run file gives every family the same budgets ("rungs": ``train.max_seconds`` of 60,
300 and 1,200 s) and the same kind of sweep at each (``lmbench.runs.sweep``: selection on the
valid split only, test scored once, for the selected trial). The view reads a results folder:

- one point per record that scored the split and is not a sweep trial (a sweep's selected record,
  or a model without a sweep), at x = its rung (``train.max_seconds``), or at its measured
  training seconds (``training_seconds``) where it has no time budget (n-grams; step budgets),
  with the number of trials behind it (1 without a sweep);
- a point's series is its label with the rung suffix ``-<seconds>s`` removed (``gpt-300s`` ->
  ``gpt``), so a family's rungs join into one line (the ladder files' naming convention);
- y = test perplexity on the closed-vocabulary word track, bits per byte on the open track;
  pseudo-likelihood rows (``bert``) are listed apart and not drawn: they share no scale;
- the published figures (``lmbench.reports.published``) beside them: dashed lines on the plot
  (the best of each source), their own table;
- the ladder's cost: wall seconds of training and scoring summed over every record, trials
  included (what finishing the ladder took, across sittings), a selection's training counted
  once: with its trial, unless the selection fitted it again (``refitted``);
- what the records show of themselves: a corpus whose test split is its valid split (every
  record that scored both has the same figures on both, to the last bit: Tiny Shakespeare's
  nanoGPT split has no test part), where the test cells are the figures the sweep selected on;
  and a selection that was refitted, with its valid figure beside its trial's;
- the machine each timed rung ran on (``rung_machines``: its records' ``env.cpu``, with
  ``env.cpu_isa`` where recorded, since one CPU name can cover two generations): a rung's
  steps, and so its figure, depend on it, and a rung whose trials ran on different machines
  compared unequal steps (a ladder finished over several sittings can span machines);
- the runs that trained slower than their kind (``slowed_runs``: under 0.75x the median steps
  per second of runs of the same family, size and tokens per step on the same machine): load
  beside a run on a shared machine takes its steps, which the budget cannot show.

``refitted``: the runner marks a selection whose trial's model file was gone
(``SweepResult.refitted``). Records from before that mark are recognised by their figures: a
selection that loads its trial's model scores the trial's valid NLL exactly (every loaded
selection of the committed ladders does), so a different valid NLL means a refit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmbench.core.results import EvalResult, RunResult, describe_cpu, train_max_seconds
from lmbench.reports.plots import QUALITY, TRACK_LABELS, _pyplot, _reference_lines, _to_svg
from lmbench.reports.published import Reference
from lmbench.reports.tables import (
    OPEN,
    PUBLISHED_COLUMNS,
    PUBLISHED_FORMATS,
    WORD,
    _markdown,
    published_table,
    track_of,
)

RUNG_SUFFIX = re.compile(r"-\d+(?:\.\d+)?s$")  # "gpt-300s" -> series "gpt"


@dataclass(frozen=True)
class LadderPoint:
    """One selected model on the ladder."""

    corpus: str
    track: str  # tables.WORD | tables.OPEN
    series: str  # the label without its rung suffix
    family: str
    model: str  # the record's label
    budget_s: float | None  # train.max_seconds; None: no time budget
    train_s: float  # measured training seconds (training_seconds)
    value: float  # test perplexity (word track) or bits per byte (open track)
    pseudo: bool  # a pseudo-likelihood figure (bert): not comparable, not drawn
    n_trials: int  # trials of its sweep (1 without one)
    n_settings: int | None = None  # a sweep averaged over repeats: the settings it chose among
    params: dict[str, Any] = field(default_factory=dict)  # the selected trial's values
    undertrained: str | None = None

    @property
    def x_s(self) -> float:
        """Where the point sits on the time axis: its budget, else its measured seconds."""
        return self.budget_s if self.budget_s is not None else self.train_s


def series_of(label: str) -> str:
    """The series of a record label: the label without a trailing rung ``-<seconds>s``."""
    return RUNG_SUFFIX.sub("", label) or label


def ladder_points(records: list[RunResult], split: str = "test") -> list[LadderPoint]:
    """The ladder's points (module docstring), sorted by corpus, track, series and x."""
    points = []
    for record in records:
        metric = record.metrics.get(split)
        if metric is None or (record.sweep is not None and not record.sweep.selected):
            continue
        track = track_of(record)
        budget = budget_s(record)
        points.append(LadderPoint(
            corpus=record.corpus, track=track, series=series_of(record.model),
            family=str(record.config.get("family", "?")), model=record.model,
            budget_s=budget,
            train_s=training_seconds(record),
            value=_quality_of(metric, track),
            pseudo=not metric.exact_likelihood,
            n_trials=1 if record.sweep is None else record.sweep.n_trials,
            n_settings=None if record.sweep is None else record.sweep.n_settings,
            params={} if record.sweep is None else dict(record.sweep.params),
            undertrained=record.undertrained))
    return sorted(points, key=lambda p: (p.corpus, p.track, p.series, p.x_s))


def budget_s(record: RunResult) -> float | None:
    """A record's training clock, ``train.max_seconds``; None when it has none (n-grams, step
    budgets)."""
    return train_max_seconds(record.config)


def _quality_of(metric: EvalResult, track: str) -> float:
    """The ladder's figure of a split's result: perplexity on the word track, else bits/byte."""
    return metric.perplexity if track == WORD else metric.bits_per_byte


def trial_of(selection: RunResult, records: list[RunResult]) -> RunResult | None:
    """The trial record a sweep's selected record was chosen from (same corpus, seed, sweep
    and trial number), or None when it is not among ``records``."""
    chosen = selection.sweep
    for record in records:
        sweep = record.sweep
        if (sweep is not None and not sweep.selected and sweep.label == chosen.label
                and sweep.trial == chosen.trial and record.corpus == selection.corpus
                and record.seed == selection.seed):
            return record
    return None


def refitted(selection: RunResult, records: list[RunResult]) -> bool:
    """Whether a sweep's selected record holds a model fitted again rather than its trial's
    (module docstring): marked so, or its valid NLL is not its trial's."""
    if selection.sweep.refitted:
        return True
    trial = trial_of(selection, records)
    if trial is None or "valid" not in trial.metrics or "valid" not in selection.metrics:
        return False
    return selection.metrics["valid"].nll_nats != trial.metrics["valid"].nll_nats


def repeats_its_trial(record: RunResult, records: list[RunResult]) -> bool:
    """Whether ``record`` is a sweep's selection that loaded its trial's model, so that its
    training (seconds, steps) is the trial's, not a run of its own."""
    return (record.sweep is not None and record.sweep.selected
            and not refitted(record, records))


def valid_and_test_identical(records: list[RunResult], corpus: str) -> bool:
    """Whether ``corpus``'s test split is its valid split, as its records show: at least one
    record scored both, and every one that did has the same tokens, bytes and NLL on both."""
    both = [r.metrics for r in records if r.corpus == corpus
            and "valid" in r.metrics and "test" in r.metrics]
    return bool(both) and all(
        (m["valid"].n_tokens, m["valid"].n_bytes, m["valid"].nll_nats)
        == (m["test"].n_tokens, m["test"].n_bytes, m["test"].nll_nats) for m in both)


def training_seconds(record: RunResult) -> float:
    """A record's training seconds: its ``fit_s``, or its training log's cumulative seconds
    where those are more (a run resumed from a checkpoint times only its last sitting in
    ``fit_s``; the trainer's log counts the earlier ones too)."""
    logged = (record.train_log or {}).get("seconds")
    if isinstance(logged, (int, float)) and math.isfinite(logged):
        return max(record.fit_s, float(logged))
    return record.fit_s


def total_seconds(records: list[RunResult]) -> float:
    """Wall seconds of training and scoring over every record (sweep trials included). A
    selection's training is its trial's (the record repeats the trial's seconds) and is
    counted once, with the trial, unless the selection was ``refitted``; its scoring is its
    own."""
    def trained_s(record: RunResult) -> float:
        return 0.0 if repeats_its_trial(record, records) else training_seconds(record)

    return float(sum(trained_s(r) + sum(m.wall_s for m in r.metrics.values())
                     for r in records))


def machine_of(record: RunResult) -> str:
    """The machine a record ran on, as its ``env`` names it: the CPU (with its family, model and
    matmul extensions where the record has them: records before ``cpu_isa`` was recorded name
    the CPU alone), its threads, and the GPU where it had one ("unrecorded" when the record
    names no CPU)."""
    if not record.env.get("cpu"):
        return "unrecorded"
    name = describe_cpu(record.env)
    return f"{name}, {record.env['gpu']}" if record.env.get("gpu") else name


def rung_machines(records: list[RunResult], corpus: str) -> dict[str, list[str]]:
    """For each timed rung of ``corpus`` (a record with ``train.max_seconds``; a sweep's trials
    and its selection are one rung, under the sweep's label), the machines its records ran on,
    sorted. A rung on more than one machine compared trials that had unequal steps."""
    machines: dict[str, set[str]] = {}
    for record in records:
        if record.corpus != corpus or budget_s(record) is None:
            continue
        rung = record.model if record.sweep is None else record.sweep.label
        machines.setdefault(rung, set()).add(machine_of(record))
    return {rung: sorted(names) for rung, names in sorted(machines.items())}


SLOW_PACE = 0.75  # a timed run below this share of its kind's median steps per second is slowed


def slowed_runs(records: list[RunResult], corpus: str) -> list[tuple[str, int, float]]:
    """Timed runs of ``corpus`` that trained at under ``SLOW_PACE`` of the median steps per
    second of the runs doing the same work per step on the same machine (same family, parameter
    count and tokens per step, batch x sequence length; a learning rate or a budget does not
    change what a step costs), as (label, steps, pace / median pace). On a shared machine a
    wall-clock run can lose half its steps to load beside it; such a run was compared with its
    rung's other trials on unequal terms. A selection counts only where it was refitted (else
    it repeats its trial's training)."""
    kinds: dict[tuple, list[tuple[str, int, float]]] = {}
    for record in records:
        if (record.corpus != corpus or budget_s(record) is None
                or repeats_its_trial(record, records)):
            continue
        train = record.config["train"]  # a dict: it holds the budget
        steps = (record.train_log or {}).get("steps")
        seconds = training_seconds(record)
        if not isinstance(steps, int) or steps <= 0 or seconds <= 0:
            continue
        kind = (machine_of(record), record.config.get("family"), record.n_params,
                train.get("batch_size"), train.get("seq_len"))
        kinds.setdefault(kind, []).append((record.model, steps, steps / seconds))
    slowed = []
    for runs in kinds.values():
        if len(runs) < 2:
            continue
        median = float(np.median([pace for _, _, pace in runs]))
        slowed += [(label, steps, pace / median) for label, steps, pace in runs
                   if pace < SLOW_PACE * median]
    return sorted(slowed)


def _pace_lines(records: list[RunResult], corpus: str) -> list[str]:
    """The report's line naming the runs ``slowed_runs`` finds, if any."""
    slowed = slowed_runs(records, corpus)
    if not slowed:
        return []
    runs = ", ".join(f"{label} ({steps:,} steps, {share:.2f}x)" for label, steps, share in slowed)
    return [f"Slowed runs: trained at under {SLOW_PACE:.2f}x the median steps per second of the "
            "runs with the same work per step on the same machine (same family, parameters and "
            f"tokens per step), so they had fewer steps than their budget bought the others: "
            f"{runs}.", ""]


def _machines_lines(records: list[RunResult], corpus: str) -> list[str]:
    """The report's machine paragraph for ``corpus``: which rungs ran on which machine, and
    any rung whose records ran on more than one."""
    machines = rung_machines(records, corpus)
    if not machines:
        return []
    by_machine: dict[str, list[str]] = {}
    for rung, names in machines.items():
        for name in names:
            by_machine.setdefault(name, []).append(rung)
    lines = ["Machines: the rungs are wall-clock budgets, so the steps a rung bought, and its "
             "figure, depend on the machine it ran on (`env.cpu` of its records, with "
             "`env.cpu_isa` where recorded; the n-gram "
             "rows have no clock):", ""]
    lines += [f"- {name}: " + ", ".join(rungs) for name, rungs in sorted(by_machine.items())]
    mixed = [rung for rung, names in machines.items() if len(names) > 1]
    if mixed:
        lines += ["- on more than one machine, so their trials had unequal steps: "
                  + ", ".join(mixed)]
    if any(record.corpus == corpus and budget_s(record) is not None and record.env.get("cpu")
           and not record.env.get("cpu_isa") for record in records):
        lines += ["- a CPU named without its family, model and extensions was recorded before "
                  "lmbench kept them (`env.cpu_isa`): one such name can cover CPUs of different "
                  "speeds, which the pace check below shows only where runs of one kind ran on "
                  "both"]
    return lines + [""]


def ladder_table(points: list[LadderPoint]) -> pd.DataFrame:
    """One row per (corpus, track, series, pseudo): a column per time budget ("60 s", ...) and
    "no budget" (fitted without a clock: its training seconds shown), each cell the quality and
    the trials behind it ("146.74 (best of 6)")."""
    rows: dict[tuple, dict[str, Any]] = {}
    budgets = sorted({p.budget_s for p in points if p.budget_s is not None})
    for p in points:
        key = (p.corpus, p.track, p.series, p.pseudo)
        row = rows.setdefault(key, {"corpus": p.corpus, "track": p.track, "series": p.series,
                                    "family": p.family, "pseudo": p.pseudo, "_best": math.inf})
        if p.n_settings is not None:  # settings x the repeats each is the mean of
            behind = f" (best of {p.n_settings} x {p.n_trials // p.n_settings})"
        else:
            behind = f" (best of {p.n_trials})" if p.n_trials > 1 else ""
        cell = _format_value(p) + behind
        if p.undertrained:
            cell += " *"
        if p.budget_s is None:
            row["no budget"] = f"{cell}, {p.train_s:.1f} s"
        else:
            row[_budget_column(p.budget_s)] = cell
        row["_best"] = min(row["_best"], p.value)
    table = pd.DataFrame(list(rows.values()))
    if table.empty:
        return table
    columns = ["corpus", "track", "series", "family", "pseudo",
               *[_budget_column(b) for b in budgets]]
    if "no budget" in table.columns:
        columns.append("no budget")
    table = table.sort_values(["corpus", "track", "pseudo", "_best"], kind="stable")
    return table[columns].fillna("").reset_index(drop=True)


def _budget_column(seconds: float) -> str:
    return f"{seconds:g} s"


def _format_value(point: LadderPoint) -> str:
    return _format_quality(point.value, point.track)


def _format_quality(value: float, track: str) -> str:
    """A perplexity (word track) to 2 decimals, bits per byte to 4."""
    return f"{value:.2f}" if track == WORD else f"{value:.4f}"


def _quality_name(track: str, pseudo: bool) -> str:
    """What a figure is called in the report: perplexity (word track) or bits per byte, and
    their pseudo-likelihood kinds."""
    return {(WORD, False): "perplexity", (OPEN, False): "bits per byte",
            (WORD, True): "pseudo-perplexity", (OPEN, True): "pseudo bits per byte"}[track, pseudo]


def _unswept_settings(records: list[RunResult], points: list[LadderPoint], corpus: str
                      ) -> dict[str, dict[str, Any]]:
    """For each point of ``corpus`` without a sweep in a series that has one (a 1,200 s rung
    run once, e.g. with ``settings_from``), its values of the keys that series swept, read
    from its record's config."""
    swept: dict[str, list[str]] = {}
    for p in points:
        if p.corpus == corpus:
            swept.setdefault(p.series, [])
            swept[p.series] += [key for key in p.params if key not in swept[p.series]]
    configs = {r.model: r.config for r in records if r.corpus == corpus and r.sweep is None}
    values = {}
    for p in points:
        if p.corpus == corpus and p.n_trials == 1 and swept.get(p.series) and p.model in configs:
            values[p.model] = {key: _dotted(configs[p.model], key) for key in swept[p.series]}
    return values


def _dotted(config: dict[str, Any], key: str) -> Any:
    """``config["train"]["learning_rate"]`` for ``"train.learning_rate"``; None when absent."""
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _chosen_among(point: LadderPoint) -> str:
    """What a selected point was chosen among: "of 6 trials", or, for a sweep averaged over
    repeats, "of 6 trials, 3 settings each the mean of its repeats"."""
    if point.n_settings is None:
        return f"of {point.n_trials} trials"
    return f"of {point.n_trials} trials, {point.n_settings} settings each the mean of its repeats"


def _refit_note(point: LadderPoint, records: list[RunResult]) -> str:
    """", refitted: ..." for a point whose selection fitted its trial's settings again, with
    the refit's valid figure beside the trial's; "" otherwise."""
    selection = next((r for r in records if r.corpus == point.corpus and r.model == point.model
                      and r.sweep is not None and r.sweep.selected), None)
    if selection is None or not refitted(selection, records):
        return ""
    note = "; refitted: its trial's model file was gone, so the settings were fitted again"
    trial = trial_of(selection, records)
    if trial is not None and "valid" in trial.metrics and "valid" in selection.metrics:
        def shown(metric: EvalResult) -> str:
            return _format_quality(_quality_of(metric, point.track), point.track)
        what = _quality_name(point.track, not selection.metrics["valid"].exact_likelihood)
        note += (f" (valid {what} {shown(selection.metrics['valid'])} against the trial's "
                 f"{shown(trial.metrics['valid'])}); its figures are the refit's")
    return note


def ladder_svg(points: list[LadderPoint], published: pd.DataFrame, corpus: str) -> str:
    """The corpus's ladder plot as SVG text ("" when nothing can be drawn): one panel per
    track, quality against training seconds (log x; log y for perplexity), one line per series
    through its budgets, each point labelled with its trials (x6), published figures dashed."""
    drawn = [p for p in points if p.corpus == corpus and not p.pseudo and p.value > 0
             and math.isfinite(p.value) and p.x_s > 0]
    tracks = [t for t in (WORD, OPEN) if any(p.track == t for p in drawn)]
    if not tracks:
        return ""
    refs = published[published["corpus"] == corpus] if not published.empty else published
    plt = _pyplot()
    with plt.rc_context({"svg.hashsalt": f"ladder-{corpus}", "font.size": 8}):
        fig, axes = plt.subplots(1, len(tracks), figsize=(7.2 * len(tracks), 4.8), squeeze=False)
        for ax, track in zip(axes[0], tracks, strict=True):
            y, ylabel = QUALITY[track]
            series = sorted({p.series for p in drawn if p.track == track})
            for number, name in enumerate(series):
                line = sorted((p for p in drawn if p.track == track and p.series == name),
                              key=lambda p: p.x_s)
                xs, ys = [p.x_s for p in line], [p.value for p in line]
                style = "-" if any(p.budget_s is not None for p in line) else "none"
                ax.plot(xs, ys, ls=style, marker="o", ms=4, lw=1.2, color=f"C{number % 10}",
                        label=name, zorder=3)
                for p in line:
                    ax.annotate(f"x{p.n_trials}", (p.x_s, p.value), textcoords="offset points",
                                xytext=(4, 3), fontsize=6, color=f"C{number % 10}")
            _reference_lines(ax, refs, track, y)
            ax.set_xscale("log")
            if track == WORD:
                ax.set_yscale("log")
            ax.set_xlabel("training seconds (the rung's budget; no budget: as measured)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{corpus}: {TRACK_LABELS[track]}; xN = best of N trials", fontsize=8)
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(fontsize=6.5, loc="upper right", ncol=2)
        return _to_svg(plt, fig)


def ladder_markdown(records: list[RunResult], references: list[Reference], split: str = "test",
                    title: str = "lmbench ladder", plot_names: dict[str, str] | None = None,
                    command: str | None = None) -> str:
    """The ladder report: per corpus the budget table, the plot (``plot_names``: corpus -> the
    SVG file's name beside the report, when written), the selected settings, the published
    figures, and the ladder's total seconds."""
    points = ladder_points(records, split)
    n_trials = sum(1 for r in records if r.sweep is not None and not r.sweep.selected)
    total = total_seconds(records)
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Split: `{split}`. {len(points)} ladder points from {len(records)} records "
              f"({n_trials} sweep trials). Total wall time of training and scoring, every "
              f"trial included: {total:,.0f} s ({total / 3600:.2f} h).", "",
              "Each cell is the selected trial of its rung's sweep (chosen on the valid split "
              "alone; only it was scored on test), with the trials behind it; `*` marks an "
              "undertrained run. Columns are training budgets (`train.max_seconds`); "
              "\"no budget\" rows were fitted without a clock (their seconds shown).", ""]
    corpora = sorted({p.corpus for p in points})
    same = [c for c in corpora if split == "test" and valid_and_test_identical(records, c)]
    if same:
        lines[-2] += (" Except on " + ", ".join(same) + ": there the test split is the valid "
                      "split (below).")
    table = ladder_table(points)
    published = published_table(references, corpora)
    for corpus in corpora:
        rows = table[table["corpus"] == corpus]
        for track in (WORD, OPEN):
            for pseudo in (False, True):
                part = rows[(rows["track"] == track) & (rows["pseudo"] == pseudo)]
                if part.empty:
                    continue
                what = f"{split} {_quality_name(track, pseudo)}"
                if pseudo:
                    what += " (pseudo-likelihood: not comparable with the rows above)"
                lines += [f"## {corpus}: {TRACK_LABELS[track]}, {what}", "",
                          _markdown(part.drop(columns=["corpus", "track", "pseudo"])), ""]
        if corpus in same:
            lines += [f"On {corpus} the test split is the valid split (every record that scored "
                      "both has the same figures on both), so each cell above is the figure its "
                      "sweep selected on: optimistic by the luck of the selection, not a "
                      "held-out figure.", ""]
        if plot_names and corpus in plot_names:
            lines += [f"![{corpus} ladder]({plot_names[corpus]})", ""]
        chosen = [p for p in points if p.corpus == corpus and p.params]
        if chosen:
            lines += ["Selected settings:", ""]
            lines += [f"- {p.model}: " + ", ".join(f"{k} = {v!r}" for k, v in p.params.items())
                      + f" ({_chosen_among(p)})" + _refit_note(p, records) for p in chosen]
            sources = {r.model: r.settings_from for r in records
                       if r.corpus == corpus and r.settings_from is not None}
            lines += [f"- {model}: " + ", ".join(f"{k} = {v!r}" for k, v in values.items())
                      + (" (one run; the keys its series swept)" if model not in sources else
                         f" (one run, with the settings of {sources[model].sweep}'s selected "
                         f"trial, {sources[model].run_id})")
                      for model, values in _unswept_settings(records, points, corpus).items()]
            lines.append("")
        lines += _machines_lines(records, corpus)
        lines += _pace_lines(records, corpus)
        refs = published[published["corpus"] == corpus] if not published.empty else published
        if not refs.empty:
            shown = [c for c in PUBLISHED_COLUMNS if c in refs.columns and
                     refs[c].notna().any() and (refs[c] != "").any()]
            lines += ["Published references (not measured by lmbench run; not ranked):", "",
                      _markdown(refs[shown], PUBLISHED_FORMATS), ""]
    return "\n".join(lines).rstrip() + "\n"
