"""``lmbench bench``: the throughput record of tiny models, its JSON round trip, and the command
(which must finish well inside a minute for CI)."""

from __future__ import annotations

import argparse
import json
import time

import pytest
import torch

import lmbench
from lmbench.cli.bench import add_commands
from lmbench.evaluation.resources import TensorMemoryTracker, flops_per_token, nbytes_of
from lmbench.evaluation.throughput import (
    BenchConfig,
    ThroughputResult,
    measure_throughput,
    read_throughput,
    write_throughput,
)

TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32,
            "train": {"max_steps": 5, "batch_size": 4, "seq_len": 32, "progress": False}}


@pytest.fixture(scope="module")
def tiny_gpt(tiny_corpus):
    return lmbench.build_model("gpt", **TINY_GPT).fit(tiny_corpus, valid=False)


@pytest.fixture
def corpus_dir(write_corpus_dir):
    return write_corpus_dir("tiny")


def test_measure_a_tiny_gpt(tiny_gpt, tiny_corpus, tmp_path):
    result = measure_throughput(tiny_gpt, tiny_corpus, BenchConfig.quick(), label="tiny")
    for spread in (result.score_tokens_per_s, result.score_bytes_per_s,
                   result.prefill_tokens_per_s, result.decode_tokens_per_s,
                   result.train_tokens_per_s):
        assert 0 < spread.low <= spread.median <= spread.high
    assert 0 < result.token_latency_p50_s <= result.token_latency_p95_s
    assert result.n_params == tiny_gpt.n_params()
    assert result.weight_bytes == 4 * tiny_gpt.n_params()  # fp32, the tied matrix once
    assert result.peak_tensor_bytes > result.weight_bytes and result.cache_bytes > 0
    assert result.peak_rss_bytes > 10 * 2**20
    assert set(result.matmul_peak_flops_per_s) == {"fp32", "bf16"}
    assert all(0 < u < 1 for u in result.utilization.values())
    assert {"cpu", "threads", "torch", "backend", "device"} <= set(result.hardware)
    assert result.settings["prompt_tokens_used"] == 16
    path = write_throughput(result, tmp_path)
    assert path == tmp_path / result.run_id / "throughput.json"
    assert read_throughput(path) == result


@pytest.mark.parametrize("native_bf16", [True, False])
def test_training_utilization_is_against_the_precision_training_runs_in(
        tiny_gpt, tiny_corpus, monkeypatch, native_bf16):
    # bf16 autocast is on only where the device runs bf16 natively; elsewhere training runs in
    # fp32, and its peak (an emulated bf16 matmul runs at ~1% of fp32's) must be fp32's
    monkeypatch.setattr("lmbench.evaluation.throughput.supports_bf16", lambda device: native_bf16)
    result = measure_throughput(tiny_gpt, tiny_corpus, BenchConfig.quick())
    assert tiny_gpt.train_config().bf16  # the family asks for bf16 autocast
    seq_len = tiny_gpt.train_config().seq_len
    achieved = result.train_tokens_per_s.median * 3 * flops_per_token(tiny_gpt, seq_len / 2)
    peak = result.matmul_peak_flops_per_s["bf16" if native_bf16 else "fp32"]
    assert result.utilization["train"] == pytest.approx(achieved / peak)


def test_measure_an_ngram_on_ids(tiny_corpus):
    model = lmbench.build_model("ngram", order=3, tokenizer="char").fit(tiny_corpus)
    ids = model.tokenizer.encode_split(tiny_corpus.split("valid"))
    result = measure_throughput(model, ids, BenchConfig.quick())
    assert result.train_tokens_per_s is None  # ids alone: nothing to train on
    assert result.score_bytes_per_s.median == pytest.approx(result.score_tokens_per_s.median)
    assert result.flops_per_token is None  # lookups, not multiply-adds
    assert set(result.utilization.values()) == {None}
    assert result.weight_bytes > 0 and result.cache_bytes == 8 * 2  # (1, n-1) int64 history


def test_gpt_flops_per_token_by_hand(tiny_gpt):
    C, L, V, T = 32, 1, tiny_gpt.tokenizer.vocab_size, 32
    per_layer = 3 * C * C + C * C + 2 * 4 * C * C + 2 * C  # qkv, proj, mlp, two LayerNorms
    expected = 2 * (L * per_layer + C) + 2 * V * C + 4 * L * C * 10  # + final LayerNorm
    assert flops_per_token(tiny_gpt, 10) == expected
    assert flops_per_token(tiny_gpt, 1000) == flops_per_token(tiny_gpt, T)  # capped at block


def test_moe_counts_only_the_routed_experts(tiny_corpus):
    options = {**TINY_GPT, "n_expert": 4, "top_k": 1}
    moe = lmbench.build_model("moe", **options).fit(tiny_corpus, valid=False)
    dense = lmbench.build_model("gpt", **TINY_GPT).fit(tiny_corpus, valid=False)
    router = 32 * 4
    assert flops_per_token(moe, 8) == flops_per_token(dense, 8) + 2 * router


def test_memory_tracker_sees_allocations_not_views():
    weight = torch.randn(256, 256)
    with TensorMemoryTracker() as tracker:
        view = weight.t()  # a view of memory that existed before: not counted
        product = weight @ weight  # 256 KiB
        del product
        small = torch.ones(16)
    assert tracker.peak == 256 * 256 * 4
    assert tracker.current == 16 * 4
    assert nbytes_of([view, weight, small]) == 256 * 256 * 4 + 16 * 4  # shared storage once


def _bench(argv):
    parser = argparse.ArgumentParser(prog="lmbench")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    args.handler(args)


def test_bench_command_of_a_family_finishes_fast(corpus_dir, tmp_path, capsys):
    started = time.perf_counter()
    _bench(["gpt", "--corpus", str(corpus_dir), "--quick", "--fit-steps", "5",
            "-o", "n_layer=1", "-o", "n_embd=32", "-o", "block_size=32",
            "-o", "train.batch_size=4", "-o", "train.seq_len=32", "-o", "train.progress=false",
            "--out", str(tmp_path / "runs")])
    assert time.perf_counter() - started < 60
    records = list((tmp_path / "runs").glob("*/throughput.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["model"] == "gpt" and record["config"]["n_embd"] == 32
    assert ThroughputResult.from_dict(record).decode_tokens_per_s.median > 0
    assert "decode" in capsys.readouterr().out


def test_bench_of_a_saved_model_writes_beside_its_run_record(tiny_gpt, corpus_dir, tmp_path):
    run = tmp_path / "runs" / "tiny-gpt-20250101-000000-abcdef"
    tiny_gpt.save(run / "model.npz")
    from run_factory import fake_run  # a run folder's record (its corpus names the text)

    record = fake_run(run.name, corpus=str(corpus_dir))
    (run / "result.json").write_text(json.dumps(record.to_dict()))
    _bench([str(run / "model.npz"), "--quick", "--train-steps", "0", "--json"])
    result = read_throughput(run / "throughput.json")
    assert result.run_id == run.name and result.train_tokens_per_s is None
    assert result.utilization["train"] is None


def test_bench_needs_a_corpus_for_a_family():
    with pytest.raises(lmbench.LmbenchError, match="--corpus"):
        _bench(["gpt"])
    with pytest.raises(lmbench.LmbenchError, match="did you mean"):
        _bench(["gtp", "--corpus", "x"])
