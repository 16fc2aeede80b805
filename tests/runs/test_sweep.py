"""Sweeps: a [models.sweep] table becomes trials (grid and random), each an ordinary record;
the best on the valid split alone is scored on test and is the sweep's one leaderboard row."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from run_factory import fake_run

from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.core.results import RunResult, SettingsSource, SweepResult
from lmbench.reports.tables import leaderboard_table, trials_table
from lmbench.runs.config import parse_config
from lmbench.runs.runner import JobContext, _selection, run, run_job
from lmbench.runs.sweep import apply_params, parse_sweep, trials
from lmbench.storage.store import ResultStore


def _config(corpus, sweep, splits=("valid", "test"), **options):
    return parse_config({"corpus": str(corpus), "splits": list(splits), "models": [
        {"label": "bigram", "family": "ngram", "order": 2, "smoothing": "add-k",
         "sweep": sweep, **options}]})


GRID = {"method": "grid", "space": {"k": [1.0, 0.01, 0.1]}}


def test_grid_is_the_product_in_written_order_and_random_is_seeded():
    grid = parse_sweep({"space": {"train.learning_rate": [1e-3, 3e-3], "n_embd": [8, 16]}}, "f")
    assert trials(grid) == [{"train.learning_rate": 1e-3, "n_embd": 8},
                            {"train.learning_rate": 1e-3, "n_embd": 16},
                            {"train.learning_rate": 3e-3, "n_embd": 8},
                            {"train.learning_rate": 3e-3, "n_embd": 16}]
    table = {"method": "random", "n_trials": 5, "seed": 3, "space": {
        "lr": {"log_uniform": [1e-4, 1e-2]}, "p": {"uniform": [0.0, 0.3]},
        "n": {"choice": [1, 2]}, "m": [7, 8]}}
    drawn = trials(parse_sweep(table, "f"))
    assert drawn == trials(parse_sweep(table, "f")) and len(drawn) == 5
    assert all(1e-4 <= t["lr"] <= 1e-2 and 0 <= t["p"] <= 0.3 and t["n"] in (1, 2)
               and t["m"] in (7, 8) for t in drawn)
    assert drawn != trials(parse_sweep({**table, "seed": 4}, "f"))
    assert apply_params({"train": {"seed": 1}}, {"train.learning_rate": 0.1, "n": 2}) == {
        "train": {"seed": 1, "learning_rate": 0.1}, "n": 2}


@pytest.mark.parametrize(("sweep", "message"), [
    ({"method": "grid", "n_trials": 3, "space": {"k": [1.0]}}, "n_trials is for method"),
    ({"method": "random", "space": {"k": [1.0]}}, "needs n_trials >= 1"),
    ({"method": "bayes", "space": {"k": [1.0]}}, "method must be one of grid, random"),
    ({"space": {"k": {"uniform": [1.0]}}}, "must be a list of values for a grid"),
    ({"method": "random", "n_trials": 2, "space": {"k": {"log_uniform": [0.0, 1.0]}}},
     "log_uniform needs lo > 0"),
    ({"space": {"k": []}}, "empty list"),
    ({"space": {"family": ["gpt"]}}, "cannot be swept"),
    ({"space": {"k": [1.0]}, "metric": "test_ppl"}, "metric must be one of"),
    ({"space": {"k": [1.0]}, "budget": 3}, "unknown key 'budget'"),
    ({"method": "random", "n_trials": 2, "space": {"k": [1.0], "order": [2, 3]},
      "average_over": ["order"]}, "average_over is for method"),
    ({"space": {"k": [1.0]}, "average_over": ["order"]}, "average_over must list keys"),
    ({"space": {"k": [1.0]}, "average_over": ["k"]}, "leaves no key"),
    ({"space": {"k": ["high"]}}, "trial 0"),  # each trial's options are checked too
])
def test_bad_sweep_tables_are_one_line_errors(tmp_path, sweep, message):
    with pytest.raises(LmbenchError, match=message) as error:
        _config(tmp_path, sweep)
    assert "\n" not in str(error.value)


def test_a_sweep_needs_the_valid_split(tmp_path):
    with pytest.raises(LmbenchError, match="'splits' must include \"valid\""):
        _config(tmp_path, GRID, splits=("test",))


def test_a_sweep_records_every_trial_and_scores_test_for_the_selected_one(corpus_dir, tmp_path,
                                                                           capsys):
    out = tmp_path / "out"
    config = _config(corpus_dir, GRID)
    records = run(config, out, log=lambda _: None)
    trial_records, [selected] = records[:3], records[3:]
    assert [r.model for r in trial_records] == [f"bigram-trial-{i}" for i in range(3)]
    for number, record in enumerate(trial_records):
        assert set(record.metrics) == {"valid"}  # test is never scored for a trial
        assert record.sweep.trial == number and record.sweep.n_trials == 3
        assert not record.sweep.selected and record.config["k"] == record.sweep.params["k"]
    best = min(trial_records, key=lambda r: r.metrics["valid"].perplexity)
    # the trial models are kept until the selection, then only the selected trial's
    assert [(out / r.run_id / "model.npz").exists() for r in trial_records] == [
        r is best for r in trial_records]
    assert selected.model == "bigram" and selected.sweep.selected
    assert selected.sweep.trial == best.sweep.trial and set(selected.metrics) == {"valid", "test"}
    assert selected.metrics["valid"].nll_nats == best.metrics["valid"].nll_nats
    assert selected.config == best.config
    # the record round-trips through the store with its typed sweep field
    stored = {r.model: r for r in ResultStore(out).records()}
    assert stored["bigram"].sweep == selected.sweep
    # the leaderboard has one row for the sweep, its selected trial
    table = leaderboard_table(ResultStore(out).records(), "test")
    assert list(table["model"]) == ["bigram (best of 3 trials)"]
    listed = trials_table(ResultStore(out).records())
    assert list(listed["trial"]) == [0, 1, 2]
    assert list(listed["selected"]) == ["yes" if i == best.sweep.trial else "" for i in range(3)]
    # a rerun skips every trial and the selection
    lines = []
    again = run(config, out, log=lines.append)
    assert [r.run_id for r in again] == [r.run_id for r in records]
    assert len(lines) == 4 and all("skipped" in line for line in lines)
    # the CLI lists the trials, and refuses an unknown label in one line
    assert main(["trials", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "bigram" in shown and "k=0.01" in shown and shown.count("yes") == 1
    assert main(["trials", str(out), "--label", "nope"]) == 2
    assert "--label 'nope': no sweep" in capsys.readouterr().err


def test_a_sweep_can_choose_by_the_mean_over_repeats(corpus_dir, tmp_path):
    # average_over: "order" stands in for a seed here (an n-gram fit is deterministic); each k
    # is a setting, chosen by the mean valid perplexity of its two trials
    sweep = {"method": "grid", "space": {"k": [1.0, 0.01, 0.1], "order": [2, 3]},
             "average_over": ["order"]}
    out = tmp_path / "out"
    records = run(_config(corpus_dir, sweep), out, log=lambda _: None)
    trial_records, [selected] = records[:6], records[6:]
    means = {}
    for record in trial_records:
        means.setdefault(record.sweep.params["k"], []).append(record.metrics["valid"].perplexity)
    best_k = min(means, key=lambda k: sum(means[k]) / 2)
    assert selected.sweep.params == {"k": best_k, "order": 2}  # the setting's first trial
    assert selected.sweep.n_settings == 3 and selected.sweep.n_trials == 6
    assert selected.sweep.choice_text() == "best of 3 settings, each the mean of 2 trials"
    assert {r.model: r for r in ResultStore(out).records()}["bigram"].sweep == selected.sweep
    table = leaderboard_table(ResultStore(out).records(), "test")
    assert list(table["model"]) == ["bigram (best of 3 settings, each the mean of 2 trials)"]
    # a plain sweep's record keeps no n_settings (records before it read back unchanged)
    assert "n_settings" not in dataclasses.replace(selected.sweep, n_settings=None).to_dict()
    with pytest.raises(ValueError, match="n_settings must divide n_trials"):
        SweepResult.from_dict({**selected.sweep.to_dict(), "n_settings": 4})


def test_a_widened_grid_whose_best_trial_stays_loads_its_model_again(corpus_dir, tmp_path):
    out = tmp_path / "out"
    first = run(_config(corpus_dir, GRID), out, log=lambda _: None)
    trial_records, selected = first[:3], first[3]
    # a value appended to the grid, and the old selection removed so that the sweep selects
    # again over 4 trials
    shutil.rmtree(out / selected.run_id)
    widened = {"method": "grid", "space": {"k": [1.0, 0.01, 0.1, 5.0]}}
    lines = []
    again = run(_config(corpus_dir, widened), out, log=lines.append)
    new_trial, reselected = again[3], again[4]
    assert new_trial.model == "bigram-trial-3" and reselected.sweep.n_trials == 4
    assert reselected.sweep.trial == selected.sweep.trial and not reselected.sweep.refitted
    assert not any("is gone" in line for line in lines)
    assert reselected.metrics["valid"].nll_nats == selected.metrics["valid"].nll_nats
    assert reselected.metrics["test"].nll_nats == selected.metrics["test"].nll_nats
    kept = [r for r in [*trial_records, new_trial] if (out / r.run_id / "model.npz").exists()]
    assert [r.sweep.trial for r in kept] == [selected.sweep.trial]


def test_finishing_a_timed_sweep_on_another_machine_is_warned_of(corpus_dir, tmp_path):
    # a wall-clock rung (train.max_seconds) compares the steps its trials bought, so trials
    # from two machines are unequal; steps bind first here, the clock is what makes it timed
    config = parse_config({"corpus": str(corpus_dir), "splits": ["valid", "test"], "models": [
        {"label": "gpt", "family": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16,
         "block_size": 16, "train": {"max_steps": 2, "max_seconds": 60, "batch_size": 2,
                                     "seq_len": 16, "progress": False},
         "sweep": {"method": "grid", "space": {"train.learning_rate": [1e-3, 3e-3]}}}]})
    out, lines = tmp_path / "out", []
    first = run(config, out, log=lines.append)
    assert not any(line.startswith("warning") for line in lines)
    for record in first:  # the trials and the selection came from another machine
        path = out / record.run_id / "result.json"
        data = json.loads(path.read_text())
        data["env"] = {**data["env"], "cpu": "Other CPU", "cpu_isa": "family 6 model 1: avx2"}
        path.write_text(json.dumps(data))
    shutil.rmtree(out / first[1].run_id)  # trial 1 runs again, here
    shutil.rmtree(out / first[2].run_id)
    lines = []
    run(config, out, log=lines.append)
    [warning] = [line for line in lines if line.startswith("warning")]
    assert warning.startswith("warning: gpt: its recorded trials ran on Other CPU (family 6 "
                              "model 1: avx2)") and "unequal steps" in warning
    # every trial recorded: nothing runs, nothing to warn of
    lines = []
    run(config, out, log=lines.append)
    assert not any(line.startswith("warning") for line in lines)


def test_a_selection_whose_trial_model_is_gone_is_refitted_and_says_so(corpus_dir, tmp_path):
    config = _config(corpus_dir, GRID)
    trial_records = run(config, tmp_path / "trials", log=lambda _: None)[:3]
    # the selection job looks for the best trial's model.npz under another folder: it is gone
    selection = _selection(config.models[0], trial_records, tmp_path / "elsewhere",
                           config.splits)
    lines = []
    record = run_job(JobContext(config, str(tmp_path / "elsewhere")), selection, lines.append)
    assert record.sweep.refitted and record.sweep.selected
    assert any("is gone: fitting the selected trial's settings again" in line for line in lines)
    best = min(trial_records, key=lambda r: r.metrics["valid"].perplexity)
    # add-k fits deterministically: the refit scores the trial's valid NLL again
    assert record.metrics["valid"].nll_nats == best.metrics["valid"].nll_nats
    assert record.fit_s != best.fit_s  # its own training seconds, not the trial's
    # a selection counts the sweep's trials as they are now, not as its trial's record says
    # (a trial recorded before the grid was widened)
    older = [dataclasses.replace(r, sweep=dataclasses.replace(r.sweep, n_trials=2))
             if r.sweep.trial < 2 else r for r in trial_records]
    assert best.sweep.trial < 2  # (k = 0.01: the selection's trial is one of the older two)
    widened = _selection(config.models[0], older, tmp_path / "elsewhere", config.splits)
    assert widened.sweep.n_trials == 3
    stored = ResultStore(tmp_path / "elsewhere").records()[0]
    assert stored.sweep == record.sweep and stored.to_dict()["sweep"]["refitted"] is True
    # a record without the mark writes none; a refitted trial's record is refused
    assert "refitted" not in best.to_dict()["sweep"]
    data = best.to_dict()
    data["sweep"]["refitted"] = True
    with pytest.raises(ValueError, match="sweep.refitted is for a selected trial's record"):
        RunResult.from_dict(data)


def test_records_without_a_sweep_write_back_unchanged():
    data = fake_run("tiny-m-1").to_dict()
    assert "sweep" not in data
    assert json.dumps(RunResult.from_dict(data).to_dict()) == json.dumps(data)
    with pytest.raises(ValueError, match="sweep.trial must be < n_trials"):
        RunResult.from_dict({**data, "sweep": {"label": "m", "trial": 3, "n_trials": 3,
                                               "params": {}, "selected": False}})


@pytest.mark.parametrize(("resources", "message"), [
    ({"cpus": 0}, "resources.cpus must be > 0"),
    ({"gpus": -1}, "resources.gpus must be >= 0"),
    ({"memory_gb": 0}, "resources.memory_gb must be > 0"),
    ({"cpu": 1}, "unknown key 'cpu'"),
    ({"cpus": "two"}, "'cpus' must be float"),
    (3, "'resources' must be a table"),
])
def test_bad_resources_are_one_line_errors_naming_the_model(tmp_path, resources, message):
    with pytest.raises(LmbenchError, match=message) as error:
        parse_config({"corpus": str(tmp_path), "models": [
            {"label": "kn", "family": "ngram", "resources": resources}]})
    assert "'kn'" in str(error.value) and "\n" not in str(error.value)


def test_declared_cpus_are_the_torch_threads_of_a_local_run(corpus_dir, tmp_path, monkeypatch):
    import torch

    from lmbench.models.ngram import NGramLM

    seen, fit = [], NGramLM.fit

    def counting_fit(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(NGramLM, "fit", counting_fit)
    before = torch.get_num_threads()
    config = parse_config({"corpus": str(corpus_dir), "splits": ["test"], "models": [
        {"label": "one", "family": "ngram", "order": 1, "resources": {"cpus": 1}},
        {"label": "as-is", "family": "ngram", "order": 2}]})
    run(config, tmp_path / "out", log=lambda _: None)
    assert seen == [1, before] and torch.get_num_threads() == before


def _inheriting(corpus, **table):
    """The add-k sweep, then a trigram that takes its selected k (``settings_from``)."""
    return parse_config({"corpus": str(corpus), "models": [
        {"label": "bigram", "family": "ngram", "order": 2, "smoothing": "add-k", "sweep": GRID},
        {"label": "trigram", "family": "ngram", "order": 3, "smoothing": "add-k", "k": 1.0,
         "settings_from": "bigram", **table}]})


def test_settings_from_runs_with_the_sweeps_selected_values(corpus_dir, tmp_path):
    out, lines = tmp_path / "out", []
    config = _inheriting(corpus_dir)
    records = run(config, out, log=lines.append)
    by_label = {record.model: record for record in records}
    assert list(by_label) == [*(f"bigram-trial-{i}" for i in range(3)), "bigram", "trigram"]
    chosen = by_label["bigram"].sweep.params["k"]
    assert chosen != 1.0  # the file's own k is replaced, the order is the table's
    assert by_label["trigram"].config["k"] == chosen and by_label["trigram"].config["order"] == 3
    assert by_label["trigram"].sweep is None and set(by_label["trigram"].metrics) == {"valid",
                                                                                      "test"}
    assert any(line.startswith("trigram: the settings of the selected trial of 'bigram'")
               for line in lines)
    # its record says where its settings came from, and reads back the same
    assert by_label["trigram"].settings_from == SettingsSource(
        "bigram", by_label["bigram"].run_id, {"k": chosen})
    [stored] = [r for r in ResultStore(out).records() if r.model == "trigram"]
    assert stored.settings_from == by_label["trigram"].settings_from
    assert all(r.settings_from is None for r in records if r.model != "trigram")
    assert "settings_from" not in json.loads((out / by_label["bigram"].run_id /
                                              "result.json").read_text())
    # resumes: nothing runs again, and --only (the sweep left out) finds the stored selection
    again = run(config, out, log=lambda _: None)
    assert [r.run_id for r in again] == [r.run_id for r in records]
    alone = dataclasses.replace(config, models=config.models[1:])
    [inherited] = run(alone, out, log=lambda _: None)
    assert inherited.run_id == by_label["trigram"].run_id
    # without a recorded selection it is refused in one line, nothing written
    with pytest.raises(LmbenchError, match="trigram .its settings come from the sweep 'bigram', "
                                           "which has no selected trial") as error:
        run(alone, tmp_path / "empty", log=lambda _: None)
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "empty").rglob("result.json"))


TRIGRAM = {"label": "trigram", "family": "ngram", "order": 3, "smoothing": "add-k"}


@pytest.mark.parametrize(("table", "message"), [
    ({**TRIGRAM, "settings_from": 3}, "'settings_from' must be a string"),
    ({**TRIGRAM, "settings_from": "nope"}, "settings_from 'nope' is not the label of a sweep "
                                           "earlier in the file; sweeps before it: bigram"),
    ({"label": "trigram", "family": "lstm", "settings_from": "bigram"},
     "settings_from 'bigram' is a sweep of family 'ngram'; this table's family is 'lstm'"),
    ({**TRIGRAM, "settings_from": "bigram", "sweep": GRID},
     "cannot be combined with a \\[sweep\\] table"),
])
def test_bad_settings_from_is_a_one_line_error(tmp_path, table, message):
    sweep = {"label": "bigram", "family": "ngram", "order": 2, "smoothing": "add-k",
             "sweep": GRID}
    with pytest.raises(LmbenchError, match=message) as error:
        parse_config({"corpus": str(tmp_path), "models": [sweep, table]}, "run.toml")
    assert "\n" not in str(error.value) and "run.toml [[models]] 'trigram'" in str(error.value)
