"""The typed records of lmbench.core.results: files in the format written before they were
typed load and give back the same JSON, and a mistyped field is refused, naming it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from run_factory import fake_generation_report, fake_run, fake_throughput

from lmbench.core.results import (
    EvalResult,
    GenerationResult,
    RunResult,
    Spread,
    ThroughputResult,
    check_number,
    describe_cpu,
    environment,
)
from lmbench.evaluation.generation_results import run_sidecar

# Written by lmbench at 6311315 (dict-valued RunResult.throughput / .generation): ResultStore.put,
# write_sidecar(run_sidecar(...)) and write_throughput.
TODAY = Path(__file__).resolve().parents[1] / "storage" / "data" / "format_2026_12"


def _json(name: str) -> dict:
    return json.loads((TODAY / name).read_text())


def _as_json(data: dict) -> dict:
    """``data`` as a JSON file holds it (tuples become lists)."""
    return json.loads(json.dumps(data, allow_nan=True))


@pytest.mark.parametrize("name", ["tiny-a-1/result.json", "tiny-c-1/result.json"])
def test_records_of_the_previous_format_round_trip_unchanged(name):
    data = _json(name)
    record = RunResult.from_dict(data)
    assert _as_json(record.to_dict()) == data
    assert RunResult.from_dict(_as_json(record.to_dict())) == record


def test_a_records_own_generation_is_typed_and_keeps_its_keys():
    record = RunResult.from_dict(_json("tiny-a-1/result.json"))
    generation = record.generation
    assert isinstance(generation, GenerationResult) and generation.schema is None
    assert generation.metrics == {"distinct_2": 0.41}
    assert generation.samples == ({"prompt": "the king", "text": "said"},)
    assert generation.extra == {"note": "recorded with the run"}
    assert generation.to_dict() == _json("tiny-a-1/result.json")["generation"]


def test_sidecars_of_the_previous_format_round_trip_unchanged():
    generation = _json("tiny-a-1/generation.json")
    typed = GenerationResult.from_dict(generation)
    assert typed.to_dict() == generation
    assert typed.strategy == "top-p 0.95" and typed.config.n_prompts == 10
    assert typed.config.batch_size is None and typed.judge_file == "runs/judge.npz"
    assert typed.rows[0].label == "human" and typed.rows[0].metrics["mauve"].value is None
    assert typed.rows[-1].metrics["mauve"].ci95 == pytest.approx((0.72, 0.88))
    throughput = _json("tiny-a-1/throughput.json")
    measured = ThroughputResult.from_dict(throughput)
    assert measured.to_dict() == throughput
    assert measured.decode_tokens_per_s == Spread(**throughput["decode_tokens_per_s"])
    assert measured.device is None and measured.peak_rss_bytes == 10**8


def test_bare_throughput_figures_of_a_previous_record_load_as_one_measurement():
    record = RunResult.from_dict(_json("tiny-b-1/result.json"))
    throughput = record.throughput
    assert isinstance(throughput, ThroughputResult) and throughput.run_id == "tiny-b-1"
    assert throughput.decode_tokens_per_s == Spread(950.0, 950.0, 950.0)
    assert throughput.utilization == {"score": 0.25} and throughput.prefill_tokens_per_s is None
    assert throughput.figures() == {"decode_tokens_per_s": 950.0, "score_utilization": 0.25}
    again = RunResult.from_dict(_as_json(record.to_dict()))
    assert again == record  # written again: the typed form, read back the same


def test_a_records_own_values_win_over_a_sidecars():
    own = GenerationResult.from_dict({"metrics": {"distinct_2": 0.5}, "note": "mine"})
    side = GenerationResult.from_dict(run_sidecar(fake_generation_report({"m": 0.8}), "m", "r"))
    merged = own.filled_from(side)
    assert merged.metrics["distinct_2"] == 0.5 and merged.metrics["mauve"] == 0.8
    assert merged.schema == 1 and merged.rows == side.rows and merged.extra == {"note": "mine"}
    figures = ThroughputResult.from_figures({"decode_tokens_per_s": 1.0}, run_id="r", model="m",
                                            family="ngram", config={}, n_params=1)
    full = ThroughputResult.from_dict(fake_throughput("r", 800.0))
    both = figures.filled_from(full)
    assert both.decode_tokens_per_s.median == 1.0 and both.prefill_tokens_per_s.median == 3000.0


def test_one_check_decides_what_a_number_is():
    assert check_number(3, "x") == 3 and check_number(None, "x") is None
    assert check_number(math.inf, "x", finite=False) == math.inf
    for bad, message in [("3", "x is not a number \\(str\\)"), (True, "x is not a number"),
                         (math.nan, "x is not a finite number")]:
        with pytest.raises(ValueError, match=message):
            check_number(bad, "x")
    with pytest.raises(ValueError, match="x is not a number \\(null\\)"):
        check_number(None, "x", optional=False)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["metrics"]["test"].update(perplexity_ci95="oops"),
     r"metrics\['test'\]\.perplexity_ci95 is not a \[low, high\] pair"),
    (lambda d: d["metrics"]["test"].update(perplexity_ci95=["a", "b"]),
     r"metrics\['test'\]\.perplexity_ci95 is not a number \(str\)"),
    (lambda d: d["metrics"]["test"].update(n_unk=-1), r"metrics\['test'\]\.n_unk must be"),
    (lambda d: d["metrics"]["test"].update(exact_likelihood="yes"), "exact_likelihood"),
    (lambda d: d["metrics"]["test"].update(wall_s=None), r"wall_s is not a number \(null\)"),
    (lambda d: d["metrics"]["test"].pop("block_len"), r"metrics\['test'\] has no 'block_len'"),
    (lambda d: d.update(metrics={}), "'metrics' is empty"),
    (lambda d: d.update(fit_s="1"), "'fit_s' has the wrong type"),
    (lambda d: d.update(generation={"metrics": {"mauve": "high"}}),
     r"generation\.metrics\['mauve'\] is not a number"),
    (lambda d: d.update(generation={"samples": [{"prompt": 1}]}), "samples is not a list"),
    (lambda d: d.update(generation={"rows": [{"label": "x", "metrics": {"m": {"value": "v"}}}]}),
     r"generation\.rows\[0\]\.metrics\['m'\]\.value is not a number"),
    (lambda d: d.update(throughput={"run_id": "r", **{
        k: v for k, v in fake_throughput("r").items() if k != "model"}}), "no 'model' key"),
    (lambda d: d.update(throughput={**fake_throughput("r"), "decode_tokens_per_s": 3.0}),
     r"throughput\.decode_tokens_per_s is not an object"),
    (lambda d: d.update(throughput={"decode_tokens_per_s": "fast"}),
     r"throughput\['decode_tokens_per_s'\] is not a number"),
])
def test_a_mistyped_field_is_refused_by_name(change, message):
    data = fake_run("tiny-a-1").to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        RunResult.from_dict(data)


def test_eval_result_round_trips_through_its_checks():
    metrics = fake_run("tiny-a-1").metrics["test"]
    assert EvalResult.from_dict(_as_json(metrics.to_dict())) == metrics


def test_figures_recorded_with_a_run_need_one_number():
    common = {"run_id": "r", "model": "m", "family": "ngram", "config": {}, "n_params": 1}
    for figures in ({}, {"flops_per_token": None}):
        with pytest.raises(ValueError, match="no throughput figure"):
            ThroughputResult.from_figures(figures, **common)
    with pytest.raises(ValueError, match="'decode_tok_s'] is not a throughput figure"):
        ThroughputResult.from_figures({"decode_tok_s": 1.0}, **common)
    only = ThroughputResult.from_figures({"decode_utilization": 0.5}, **common)
    assert ThroughputResult.from_dict(json.loads(json.dumps(only.to_dict()))) == only
    data = fake_run("tiny-a-1").to_dict()
    data["throughput"] = {"written_by_a_newer_version": 1.0}  # nothing known: no throughput
    assert RunResult.from_dict(data).throughput is None


def test_a_record_names_its_cpu_with_what_tells_two_of_one_name_apart():
    env = environment()
    assert {"cpu", "cpu_isa", "threads"} <= set(env)
    assert describe_cpu(env).startswith(env["cpu"])
    zen3 = {"cpu": "AMD EPYC", "cpu_isa": "family 25 model 1: avx2", "threads": 2}
    assert describe_cpu(zen3) == "AMD EPYC (family 25 model 1: avx2), 2 threads"
    assert describe_cpu({"cpu": "AMD EPYC", "threads": 2}) == "AMD EPYC, 2 threads"  # older
    assert describe_cpu({}) == "unrecorded"
