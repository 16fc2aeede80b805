"""``lmbench.compare``: the paired bootstrap over test blocks, on real and synthetic runs."""

from __future__ import annotations

import dataclasses
import math

import pytest
from run_factory import GENERATION_KEYS, fake_generation_report, fake_run

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.results import GenerationResult, SettingsSource, SweepResult, ThroughputResult
from lmbench.evaluation.generation_results import run_sidecar
from lmbench.evaluation.scoring import EvalConfig
from lmbench.evaluation.significance import compare
from lmbench.storage.store import ResultStore, write_sidecar

EVAL = EvalConfig(block_len=8, progress=False)


@pytest.fixture(scope="module")
def tiny_runs(tiny_corpus, tmp_path_factory):
    """KN-3, an add-one unigram (same word tokenizer) and a char trigram, recorded."""
    out = tmp_path_factory.mktemp("runs")
    models = {
        "kn3": lmbench.build_model("ngram", order=3, smoothing="kneser-ney"),
        "unigram": lmbench.build_model("ngram", order=1, smoothing="add-k", k=1.0),
        "char3": lmbench.build_model("ngram", order=3, smoothing="kneser-ney", tokenizer="char"),
    }
    runs = {label: lmbench.record_run(model.fit(tiny_corpus), tiny_corpus, out, label=label,
                                      eval_config=EVAL, splits=("valid", "test"))
            for label, model in models.items()}
    return out, runs


def test_identical_runs_differ_by_zero(tiny_runs):
    _, runs = tiny_runs
    result = compare(runs["kn3"], runs["kn3"], n_bootstrap=500)
    assert result.paired and result.delta_perplexity == 0 and result.delta_bits_per_byte == 0
    low, high = result.delta_perplexity_ci95
    assert low <= 0 <= high
    low, high = result.delta_bits_per_byte_ci95
    assert low <= 0 <= high
    assert result.p_value == 1.0
    assert result.throughput_ratios["scoring_tokens_per_s"] == 1.0


def test_a_clearly_better_model_gets_an_interval_excluding_zero(tiny_runs):
    out, runs = tiny_runs
    result = compare(runs["kn3"], runs["unigram"], n_bootstrap=2000)
    assert result.delta_perplexity < 0 and result.delta_bits_per_byte < 0
    assert result.delta_perplexity_ci95[1] < 0 and result.delta_bits_per_byte_ci95[1] < 0
    assert result.p_value < 0.01
    kn3, unigram = runs["kn3"].metrics["test"], runs["unigram"].metrics["test"]
    assert result.delta_perplexity == pytest.approx(kn3.perplexity - unigram.perplexity)
    assert result.delta_bits_per_byte == pytest.approx(kn3.bits_per_byte - unigram.bits_per_byte)
    # swapping A and B flips every sign; paths and run ids name the same runs
    flipped = compare(out / runs["unigram"].run_id, runs["kn3"].run_id, n_bootstrap=2000,
                      results_dir=out)
    assert flipped.delta_perplexity == pytest.approx(-result.delta_perplexity)
    assert "A - B" in result.to_text() and "B is better" in flipped.to_text()
    assert compare(runs["kn3"], runs["unigram"], "valid", n_bootstrap=200).split == "valid"


def test_different_tokenizers_are_refused_unless_unpaired(tiny_runs):
    _, runs = tiny_runs
    with pytest.raises(LmbenchError, match="cannot pair the test blocks.*--unpaired"):
        compare(runs["kn3"], runs["char3"])
    result = compare(runs["kn3"], runs["char3"], n_bootstrap=500, unpaired=True)
    assert not result.paired and result.delta_perplexity is None
    assert result.delta_bits_per_byte == pytest.approx(
        runs["kn3"].metrics["test"].bits_per_byte - runs["char3"].metrics["test"].bits_per_byte)
    assert any("conservative" in note for note in result.notes)


def test_a_constant_shift_per_token_is_recovered_exactly():
    a = fake_run("a", nats_per_token=2.0)
    m = a.metrics["test"]
    shifted = tuple(b + 0.1 * m.block_len for b in m.block_nll_nats)
    b = dataclasses.replace(a, run_id="b", metrics={"test": dataclasses.replace(
        m, nll_nats=m.nll_nats + 0.1 * m.n_tokens, block_nll_nats=shifted)})
    result = compare(a, b, n_bootstrap=300)
    assert result.delta_nats_per_token == pytest.approx(-0.1)
    assert result.delta_nats_per_token_ci95 == pytest.approx((-0.1, -0.1))
    expected_bpb = -0.1 * m.n_tokens / (math.log(2) * m.n_bytes)
    assert result.delta_bits_per_byte_ci95 == pytest.approx((expected_bpb, expected_bpb))


@pytest.mark.parametrize("change, message", [
    ({"corpus": "brown"}, "different texts"),
    ({"exact": False}, "pseudo-likelihood"),
    ({"sha": "another-vocabulary"}, "cannot pair"),
])
def test_incomparable_runs_are_refused(change, message):
    with pytest.raises(LmbenchError, match=message):
        compare(fake_run("a"), fake_run("b", **change))


def _figures(run, figures: dict) -> ThroughputResult:
    return ThroughputResult.from_figures(figures, run_id=run.run_id, model=run.model,
                                         family="ngram", config=run.config,
                                         n_params=run.n_params)


def test_generation_and_throughput_differences():
    a = fake_run("a", generation={"metrics": {"distinct_2": 0.6, "mauve": None}}, fit_s=2.0)
    b = fake_run("b", generation={"metrics": {"distinct_2": 0.4, "mauve": 0.5}}, fit_s=1.0)
    a = dataclasses.replace(a, throughput=_figures(a, {"decode_tokens_per_s": 300.0}))
    b = dataclasses.replace(b, throughput=_figures(b, {"decode_tokens_per_s": 100.0}))
    result = compare(a, b, n_bootstrap=100)
    assert result.generation_deltas == {"distinct_2": pytest.approx(0.2)}  # mauve: A has none
    with pytest.raises(ValueError, match=r"metrics\['note'\] is not a number"):
        GenerationResult.from_dict({"metrics": {"distinct_2": 0.6, "note": "text"}})
    assert result.throughput_ratios["decode_tokens_per_s"] == 3.0
    assert result.throughput_ratios["fit_s"] == 2.0
    assert result.to_dict()["run_a"] == "a"


def test_compare_says_where_each_runs_settings_came_from_and_on_which_machine():
    def timed(run, cpu, **fields):
        return dataclasses.replace(run, config={**run.config, "train": {"max_seconds": 60}},
                                   env={**run.env, "cpu": cpu, "threads": 2}, **fields)

    selected = SweepResult(label="gpt-60s", trial=2, n_trials=6,
                           params={"train.learning_rate": 3e-3}, selected=True)
    a = timed(fake_run("a"), "AMD EPYC", sweep=selected)
    b = timed(fake_run("b", seed=1), "AMD EPYC", settings_from=SettingsSource(
        "gpt-300s", "run-300", {"train.learning_rate": 1e-3}))
    notes = compare(a, b, n_bootstrap=10).notes
    assert notes[:2] == (
        "A is the selected trial of the sweep 'gpt-60s': the best of 6 trials on valid "
        "(trial 2; train.learning_rate = 0.003)",
        "B ran once with the settings of the selected trial of the sweep 'gpt-300s' "
        "(train.learning_rate = 0.001)")
    assert not any("different machines" in note for note in notes)
    trial = dataclasses.replace(selected, trial=4, selected=False)
    other = timed(fake_run("c", seed=2), "Intel Xeon", sweep=trial)
    notes = compare(a, other, n_bootstrap=10).notes
    assert ("B is trial 4 of 6 of the sweep 'gpt-60s' (train.learning_rate = 0.003), not its "
            "selected trial") in notes
    assert ("both trained for a wall-clock budget, on different machines (A: AMD EPYC, 2 "
            "threads; B: Intel Xeon, 2 threads), so the steps each bought differ") in notes
    # runs without a clock: their machines do not decide their steps
    assert compare(fake_run("a"), fake_run("b", seed=1), n_bootstrap=10).notes == ()


def test_missing_runs_and_splits(tmp_path):
    with pytest.raises(LmbenchError, match="no such result.json"):
        compare(tmp_path / "nope", fake_run("b"))
    with pytest.raises(LmbenchError, match="no 'valid' split"):
        compare(fake_run("a"), fake_run("b"), split="valid")


def test_compare_shows_the_generation_benchmark_differences(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a", seed=1))
    store.put(fake_run("tiny-b", seed=2, nats_per_token=2.2))
    report = fake_generation_report({"tiny-a": 0.9, "tiny-b": 0.6})
    for run_id in ("tiny-a", "tiny-b"):
        write_sidecar(tmp_path / run_id, "generation",
                      run_sidecar(report, run_id, run_id, "runs/judge.npz"))
    result = compare("tiny-a", "tiny-b", n_bootstrap=200, results_dir=tmp_path)
    assert result.generation_strategy == "top-p 0.95"
    assert set(result.generation_deltas) == set(GENERATION_KEYS) | {"decode_tokens_per_s"}
    differences = {d.metric: d for d in result.generation}
    mauve = differences["mauve"]
    assert (mauve.a, mauve.b) == (0.9, 0.6) and mauve.delta == pytest.approx(0.3)
    assert mauve.a_ci95 == pytest.approx((0.81, 0.99)) and mauve.b_ci95 == pytest.approx(
        (0.54, 0.66))
    assert result.generation_deltas["judge_perplexity"] == pytest.approx(32.0 - 38.0)
    assert differences["decode_tokens_per_s"].a_ci95 is None  # the speed has no interval
    assert result.notes == ()
    text = result.to_text()
    assert "generation, top-p 0.95 (value [" in text
    (line,) = [line for line in text.splitlines() if line.startswith("mauve ")]
    assert "0.9 [0.81, 0.99]" in line and "0.6 [0.54, 0.66]" in line and "+0.3" in line
    by_path = compare(tmp_path / "tiny-a", tmp_path / "tiny-b" / "result.json", n_bootstrap=200)
    assert by_path.generation == result.generation

    # B measured otherwise: its own model as judge, longer continuations, no top-p row
    other = fake_generation_report({"tiny-b": 0.6})
    other["config"]["continuation_len"] = 48
    other["models"][0]["rows"] = other["models"][0]["rows"][:2]  # human, greedy
    write_sidecar(tmp_path / "tiny-b", "generation", run_sidecar(other, "tiny-b", "tiny-b"))
    result = compare("tiny-a", "tiny-b", n_bootstrap=200, results_dir=tmp_path)
    notes = "\n".join(result.notes)
    assert result.generation_strategy is None and "mauve" in result.generation_deltas
    assert "different decodings (A: top-p 0.95, B: greedy)" in notes
    assert "continuation_len 24 vs 48" in notes
    assert "judge PPL comes from different judges (A: runs/judge.npz, B: its own model" in notes

    (tmp_path / "tiny-b" / "generation.json").write_text("[]")  # corrupt: noted, skipped
    result = compare("tiny-a", "tiny-b", n_bootstrap=200, results_dir=tmp_path)
    assert result.generation == () and result.generation_deltas == {}
    assert any("tiny-b/generation.json: skipped" in note and "JSON list" in note
               for note in result.notes)


def test_throughput_ratios_name_each_quantity_once(tmp_path):
    from run_factory import fake_throughput

    store = ResultStore(tmp_path)
    for run_id, decode in (("tiny-a", 800.0), ("tiny-b", 400.0)):
        store.put(fake_run(run_id))
        write_sidecar(tmp_path / run_id, "throughput", fake_throughput(run_id, decode))
    ratios = compare("tiny-a", "tiny-b", results_dir=tmp_path, n_bootstrap=100).throughput_ratios
    assert ratios["decode_tokens_per_s"] == 2.0 and ratios["scoring_tokens_per_s"] == 1.0
    assert "score_tokens_per_s" not in ratios and "score_bytes_per_s" not in ratios
