"""The ladder view (lmbench.reports.ladder, ``lmbench ladder``) on synthetic sweep records."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from lmbench.cli.main import main
from lmbench.core.results import SettingsSource, SweepResult
from lmbench.reports.html import render_html
from lmbench.reports.ladder import (
    ladder_markdown,
    ladder_points,
    ladder_svg,
    ladder_table,
    refitted,
    rung_machines,
    series_of,
    slowed_runs,
    total_seconds,
    trial_of,
    valid_and_test_identical,
)
from lmbench.reports.published import Reference
from lmbench.reports.tables import published_table
from lmbench.storage.store import ResultStore
from tests.run_factory import fake_run


def _record(run_id, label, family, nats, *, seconds=None, fit_s=1.0, trial=None, n_trials=1,
            selected=True, exact=True, tokenizer="word", corpus="brown", params=None):
    record = fake_run(run_id, model=label, corpus=corpus, nats_per_token=nats, fit_s=fit_s,
                      exact=exact, tokenizer=tokenizer)
    config = {"family": family, "tokenizer": tokenizer}
    if seconds is not None:
        config["train"] = {"max_seconds": seconds, "max_steps": 100000, "warmup_steps": 0}
    sweep = None
    if trial is not None:
        sweep = SweepResult(label=label.split("-trial-")[0], trial=trial, n_trials=n_trials,
                            params=params or {"train.learning_rate": 1e-3}, selected=selected)
    return replace(record, config=config, sweep=sweep)


@pytest.fixture
def records():
    """gpt at 60 s (6 trials; the best, trial 2, selected) and 300 s (3 trials), an lstm at
    60 s, an n-gram without a budget, a bert (pseudo-likelihood) at 60 s."""
    out = [_record(f"g60-{t}", f"gpt-60s-trial-{t}", "gpt", 5.6 - 0.1 * (t == 2), seconds=60,
                   fit_s=61, trial=t, n_trials=6, selected=False) for t in range(6)]
    out.append(_record("g60", "gpt-60s", "gpt", 5.5, seconds=60, fit_s=61, trial=2, n_trials=6,
                       params={"train.learning_rate": 3e-3, "n_embd": 128}))
    out += [_record(f"g300-{t}", f"gpt-300s-trial-{t}", "gpt", 5.2, seconds=300, fit_s=301,
                    trial=t, n_trials=3, selected=False) for t in range(3)]
    out.append(_record("g300", "gpt-300s", "gpt", 5.1, seconds=300, fit_s=301, trial=0,
                       n_trials=3))
    out.append(_record("l60", "lstm-60s", "lstm", 5.3, seconds=60, fit_s=62))
    out.append(_record("kn5", "kn5", "ngram", 5.0, fit_s=1.5))
    out.append(_record("b60", "bert-60s", "bert", 3.0, seconds=60, fit_s=60, exact=False))
    return out


def test_series_drop_the_rung_suffix():
    assert series_of("gpt-300s") == series_of("gpt-1200s") == "gpt"
    assert series_of("lstm-2x512-60.5s") == "lstm-2x512"
    assert series_of("kn5") == "kn5" and series_of("ngram-mkn") == "ngram-mkn"


def test_points_are_selected_trials_at_their_budgets(records):
    points = {p.model: p for p in ladder_points(records)}
    assert set(points) == {"gpt-60s", "gpt-300s", "lstm-60s", "kn5", "bert-60s"}
    gpt = points["gpt-60s"]
    assert (gpt.series, gpt.budget_s, gpt.x_s, gpt.n_trials) == ("gpt", 60.0, 60.0, 6)
    assert gpt.value == pytest.approx(records[6].metrics["test"].perplexity)
    assert gpt.params == {"train.learning_rate": 3e-3, "n_embd": 128}
    assert points["kn5"].budget_s is None and points["kn5"].x_s == 1.5
    assert points["lstm-60s"].n_trials == 1 and points["bert-60s"].pseudo


def test_total_seconds_count_every_trial_and_each_selection_once(records):
    # fit_s plus 0.5 s of scoring per record (fake_run's wall_s); a selection repeats its
    # trial's fit_s (it loaded the trial's model): its scoring counts, its training does not
    expected = (sum(r.fit_s for r in records if r.sweep is None or not r.sweep.selected)
                + 0.5 * len(records))
    assert total_seconds(records) == pytest.approx(expected)
    # a selection that fitted its trial's settings again trained once more
    selection = records[6]
    marked = replace(selection, sweep=replace(selection.sweep, refitted=True))
    assert total_seconds([*records[:6], marked]) == pytest.approx(
        7 * 61 + 0.5 * 7)


def _with_valid(record, valid_nats=None, test=None):
    """``record`` with a valid split: its test metrics again (or at ``valid_nats`` per token)."""
    metric = record.metrics["test"]
    valid = metric if valid_nats is None else replace(
        metric, nll_nats=valid_nats * metric.n_tokens)
    return replace(record, metrics={"valid": replace(valid, split="valid"),
                                    **({} if test is False else {"test": metric})})


def test_a_refit_is_known_by_its_mark_or_by_a_valid_nll_not_its_trials(records):
    trials = [_with_valid(r, test=False) for r in records[:6]]
    loaded = _with_valid(records[6], valid_nats=None)
    loaded = replace(loaded, metrics={**loaded.metrics,
                                      "valid": trials[2].metrics["valid"]})
    assert trial_of(loaded, trials) is trials[2]
    assert not refitted(loaded, trials)
    marked = replace(loaded, sweep=replace(loaded.sweep, refitted=True))
    assert refitted(marked, trials)  # the runner's mark
    unmarked_refit = _with_valid(records[6], valid_nats=5.45)  # a record from before the mark
    assert refitted(unmarked_refit, trials)
    assert not refitted(unmarked_refit, trials[:2])  # no trial to compare with: trusted
    text = ladder_markdown([*trials, unmarked_refit], [])
    line = next(x for x in text.splitlines() if x.startswith("- gpt-60s:"))
    shown = f"{math.exp(5.45):.2f}", f"{trials[2].metrics['valid'].perplexity:.2f}"
    assert line.endswith(
        "(of 6 trials); refitted: its trial's model file was gone, so the settings were fitted "
        f"again (valid perplexity {shown[0]} against the trial's {shown[1]}); its figures are "
        "the refit's")
    assert "refitted" not in ladder_markdown([*trials, loaded], [])
    # a pseudo-likelihood refit on the open track is named as its heading names it
    chars = [replace(r, config={**r.config, "family": "bert", "tokenizer": "char"})
             for r in trials]
    chars = [replace(r, metrics={s: replace(m, exact_likelihood=False)
                                 for s, m in r.metrics.items()}) for r in chars]
    refit = replace(unmarked_refit, config={**unmarked_refit.config, "family": "bert",
                                            "tokenizer": "char"})
    refit = replace(refit, metrics={s: replace(m, exact_likelihood=False)
                                    for s, m in refit.metrics.items()})
    text = ladder_markdown([*chars, refit], [])
    assert "test pseudo bits per byte (pseudo-likelihood" in text
    assert "again (valid pseudo bits per byte " in text and "pseudo-bits" not in text


def test_a_corpus_whose_test_is_its_valid_is_said_so(records):
    same = [_with_valid(r) for r in records if r.sweep is None or r.sweep.selected]
    text = ladder_markdown(same, [])
    assert "only it was scored on test), with the trials" in text
    assert "Except on brown: there the test split is the valid split (below)." in text
    assert ("On brown the test split is the valid split (every record that scored both has "
            "the same figures on both)") in text
    assert valid_and_test_identical(same, "brown")
    # one record scoring a different valid text, or none scoring both: not said
    differ = [*same[:-1], _with_valid(same[-1], valid_nats=1.0)]
    assert not valid_and_test_identical(differ, "brown")
    assert "Except on" not in ladder_markdown(differ, [])
    assert not valid_and_test_identical(records, "brown")
    assert "Except on" not in ladder_markdown(same, [], split="valid")


def test_each_timed_rung_names_its_machines_and_a_mixed_rung_is_said_so(records):
    def on(record, cpu):
        return replace(record, env={**record.env, "cpu": cpu, "threads": 2})

    amd, intel = "AMD EPYC", "Intel(R) Xeon(R) Processor"
    placed = [on(r, intel if r.model.startswith("gpt-60s") else amd) for r in records]
    # gpt-60s: its 6 trials and selection on one machine; everything else on the other
    assert rung_machines(placed, "brown") == {
        "bert-60s": [f"{amd}, 2 threads"], "gpt-300s": [f"{amd}, 2 threads"],
        "gpt-60s": [f"{intel}, 2 threads"], "lstm-60s": [f"{amd}, 2 threads"]}  # no kn5: no clock
    text = ladder_markdown(placed, [])
    assert f"- {intel}, 2 threads: gpt-60s" in text
    assert f"- {amd}, 2 threads: bert-60s, gpt-300s, lstm-60s" in text
    assert "more than one machine" not in text
    # one gpt-300s trial from another machine: the rung is mixed, and the report says so
    mixed = [on(r, intel) if r.model == "gpt-300s-trial-1" else r for r in placed]
    assert rung_machines(mixed, "brown")["gpt-300s"] == [f"{amd}, 2 threads",
                                                        f"{intel}, 2 threads"]
    assert ("- on more than one machine, so their trials had unequal steps: gpt-300s"
            in ladder_markdown(mixed, []))
    # a record without env.cpu is unrecorded rather than dropped
    assert rung_machines(records, "brown")["lstm-60s"] == ["unrecorded"]
    # one CPU name, two generations: the records' cpu_isa keeps them apart
    zen = [replace(r, env={**r.env, "cpu_isa": "family 25 model 17: avx2 avx512f avx512_bf16"
                           if r.model == "gpt-300s-trial-1" else "family 25 model 1: avx2"})
           for r in placed]
    old_names = "a CPU named without its family, model and extensions"
    assert old_names in ladder_markdown(placed, []) and old_names not in ladder_markdown(
        [replace(r, env={**r.env, "cpu_isa": "family 6 model 143: avx2"}) for r in placed], [])
    assert sorted(rung_machines(zen, "brown")["gpt-300s"]) == sorted([
        f"{amd} (family 25 model 1: avx2), 2 threads",
        f"{amd} (family 25 model 17: avx2 avx512f avx512_bf16), 2 threads"])


def test_a_run_slower_than_its_kind_is_named(records):
    def paced(record, steps, n_params=1000, batch_size=32):
        train = {**record.config["train"], "batch_size": batch_size, "seq_len": 64}
        return replace(record, env={**record.env, "cpu": "Intel", "threads": 2},
                       n_params=n_params, config={**record.config, "train": train},
                       train_log={"steps": steps, "seconds": record.fit_s})

    # gpt-300s trials at 900, 1,000 and 430 steps in the same seconds: the last is at 0.48x
    # the median pace
    timed = [paced(r, {"gpt-300s-trial-2": 430}.get(r.model, 900 + 100 * (r.sweep.trial == 1)))
             for r in records if r.model.startswith("gpt-300s-trial")]
    assert slowed_runs(timed, "brown") == [("gpt-300s-trial-2", 430, pytest.approx(430 / 900))]
    # another size, another batch, another machine, or a lone run: nothing to compare with
    for alone in (paced(timed[2], 430, n_params=2000),
                  paced(timed[2], 430, batch_size=16),
                  replace(timed[2], env={**timed[2].env, "cpu": "AMD"})):
        assert slowed_runs([*timed[:2], alone], "brown") == []
    assert slowed_runs(timed[2:], "brown") == []
    # an unrefitted selection repeats its trial's log: not counted twice
    selection = replace(timed[2], model="gpt-300s",
                        sweep=replace(timed[2].sweep, selected=True))
    assert [label for label, _, _ in slowed_runs([*timed, selection], "brown")] == [
        "gpt-300s-trial-2"]
    others = [r for r in records if not r.model.startswith("gpt-300s-trial")]
    text = ladder_markdown([*others, *timed], [])
    assert "Slowed runs: trained at under 0.75x" in text
    assert "gpt-300s-trial-2 (430 steps, 0.48x)" in text
    assert "Slowed runs" not in ladder_markdown(records, [])


def test_a_resumed_run_counts_its_logged_training_seconds(records):
    resumed = replace(records[0], fit_s=0.4, train_log={"seconds": 62.9, "steps": 35})
    assert total_seconds([resumed]) == pytest.approx(62.9 + 0.5)
    assert total_seconds([replace(resumed, train_log={"seconds": 0.1})]) == pytest.approx(0.9)


def test_table_has_a_column_per_budget_with_the_trials(records):
    table = ladder_table(ladder_points(records))
    assert list(table.columns) == ["corpus", "track", "series", "family", "pseudo", "60 s",
                                   "300 s", "no budget"]
    gpt = table[table["series"] == "gpt"].iloc[0]
    assert gpt["60 s"] == f"{math.exp(records[6].metrics['test'].nll_nats / 4096):.2f} (best of 6)"
    assert gpt["300 s"].endswith("(best of 3)")
    assert table[table["series"] == "kn5"].iloc[0]["no budget"].endswith(", 1.5 s")
    assert table[table["series"] == "lstm"].iloc[0]["300 s"] == ""
    assert list(table["pseudo"]) == [False, False, False, True]  # bert last, apart


def test_plot_draws_series_trials_and_references(records):
    references = [Reference(corpus="brown", track="word", model="word_language_model LSTM",
                            source="pytorch examples", perplexity=101.8)]
    svg = ladder_svg(ladder_points(records), published_table(references), "brown")
    assert svg.startswith("<svg")
    for text in ("gpt", "lstm", "kn5", "x6", "x3", "published: word_language_model LSTM"):
        assert text in svg
    assert "bert" not in svg  # pseudo-likelihood is not drawn
    assert ladder_svg(ladder_points(records), published_table([]), "other") == ""


def test_the_html_leaderboard_shows_the_ladder_where_its_records_hold_one(records):
    caption = "brown: the ladder, test quality against the training budget"
    page = render_html(records, [], [])  # gpt selected at 60 s and at 300 s: a ladder
    assert caption in page
    figure = page.split(caption)[0].rsplit("<figure>", 1)[1]
    assert figure.startswith("<svg") and "x6" in figure and "x3" in figure
    one_budget = [r for r in records if not r.model.startswith("gpt-300s")]
    assert caption not in render_html(one_budget, [], [])  # no series at two budgets


def test_a_sweep_averaged_over_repeats_shows_its_settings(records):
    averaged = [replace(r, sweep=replace(r.sweep, n_settings=3))
                if r.model == "gpt-60s" else r for r in records]
    text = ladder_markdown(averaged, [])
    assert "(best of 3 x 2)" in text and "(best of 6)" not in text
    assert ("- gpt-60s: train.learning_rate = 0.003, n_embd = 128 (of 6 trials, 3 settings each "
            "the mean of its repeats)") in text


def test_markdown_report_and_command(records, tmp_path, capsys):
    text = ladder_markdown(records, [], plot_names={"brown": "ladder.svg"})
    assert "(6 sweep trials)" not in text and "(9 sweep trials)" in text
    assert "![brown ladder](ladder.svg)" in text
    assert "- gpt-60s: train.learning_rate = 0.003, n_embd = 128 (of 6 trials)" in text
    assert "test pseudo-perplexity (pseudo-likelihood" in text
    # a rung run once (settings_from) shows its values of the keys its series swept
    once = _record("g1200", "gpt-1200s", "gpt", 4.9, seconds=1200, fit_s=1201)
    once = replace(once, config={**once.config, "train": {**once.config["train"],
                                                          "learning_rate": 3e-3}})
    text = ladder_markdown([*records, once], [])
    assert ("- gpt-1200s: train.learning_rate = 0.003, n_embd = None (one run; the keys its "
            "series swept)") in text
    assert "- lstm-60s" not in text and "- kn5" not in text  # series without a sweep
    # and, when its record says so, whose selected trial they came from
    told = replace(once, settings_from=SettingsSource("gpt-300s", "g300-run",
                                                      {"train.learning_rate": 3e-3}))
    assert ("- gpt-1200s: train.learning_rate = 0.003, n_embd = None (one run, with the "
            "settings of gpt-300s's selected trial, g300-run)") in ladder_markdown(
                [*records, told], [])

    store = ResultStore(tmp_path / "runs")
    for record in records:
        store.put(record)
    out = tmp_path / "reports" / "ladder_brown.md"
    out.parent.mkdir()
    assert main(["ladder", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = out.read_text()
    assert "![brown ladder](ladder_brown.svg)" in report
    assert (out.parent / "ladder_brown.svg").read_text().startswith("<svg")
    assert "Published references" in report  # the repository's published.toml, Brown rows
    assert "Command: `lmbench " in report  # (sys.argv, as the leaderboard writes it)

    (tmp_path / "empty").mkdir()
    assert main(["ladder", str(tmp_path / "empty")]) == 2
    assert "no record scored the 'test' split" in capsys.readouterr().err
