"""The generation benchmark: prompts, rows and columns, intervals, MAUVE's calibration, and the
degeneration of greedy and beam search on a trained model (Holtzman et al. 2019)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.generation_bench import (
    DEFAULT_STRATEGIES,
    GenerationBenchConfig,
    Strategy,
    cut_prompts,
    quick_config,
    run_generation_bench,
    text_words,
)
from lmbench.evaluation.generation_results import metric_infos
from lmbench.evaluation.mauve_features import TfidfSvd, compute_mauve, embed_features, has_embed
from lmbench.inference.sampling import SamplingConfig, generate

pytest.importorskip("mauve")
ROWS = ["human", "greedy", "beam", "pure sampling", "temperature 0.7", "top-k 40", "top-p 0.95",
        "best-of-N"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models decode fastest on one thread; with more, idle workers spin against any
    other process on the machine (a 2 s test became 0.2 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def kn3(tiny_corpus):
    return lmbench.build_model("ngram", order=3).fit(tiny_corpus)


@pytest.fixture(scope="module")
def report(kn3, tiny_corpus):
    return run_generation_bench({"kn3": kn3}, tiny_corpus, quick_config())


def test_default_rows_are_holtzmans():
    assert ["human", *(s.label for s in DEFAULT_STRATEGIES)] == ROWS
    assert quick_config().strategies[1].beam_width == 2


def test_prompts_are_non_overlapping_slots_fixed_by_the_seed(kn3, tiny_corpus):
    config = GenerationBenchConfig(n_prompts=5, prompt_len=4, continuation_len=6, seed=1)
    starts = cut_prompts(100, config)
    assert len(starts) == 5 and list(starts) == sorted(starts)
    assert all(s % 10 == 0 for s in starts) and np.all(np.diff(starts) >= 10)
    assert np.array_equal(starts, cut_prompts(100, config))
    assert not np.array_equal(starts, cut_prompts(100, dataclasses.replace(config, seed=2)))
    assert len(cut_prompts(40, config)) == 4  # fewer slots than prompts: all of them
    with pytest.raises(LmbenchError, match="fewer than 2 slots"):
        cut_prompts(15, config)


def test_the_human_row_is_the_text_that_followed(report, kn3, tiny_corpus):
    model = report.models[0]
    c = report.config
    stream = kn3.tokenizer.encode_split(tiny_corpus.split("test"))
    for i, start in enumerate(model.starts):
        P, C = c.prompt_len, c.continuation_len
        assert model.texts["prompt"][i] == kn3.tokenizer.decode(stream[start : start + P])
        assert model.texts["human"][i] == kn3.tokenizer.decode(stream[start + P : start + P + C])


def test_output_has_the_expected_rows_and_columns(report):
    model = report.models[0]
    keys = [info.key for info in metric_infos(report.config)]
    assert [r.label for r in model.rows] == ROWS
    assert all(list(r.metrics) == keys for r in model.rows)
    assert {"distinct_1", "distinct_2", "distinct_3", "self_bleu_4", "seq_rep_4",
            "repetition_rate_128", "zipf_coefficient", "judge_perplexity", "mauve",
            "copy_rate_8", "longest_copy", "bleu_4"} == set(keys)
    human = model.rows[0].metrics
    assert math.isnan(human["mauve"].value) and math.isnan(human["bleu_4"].value)
    assert model.rows[0].wall_s is None and all(r.tokens_per_s > 0 for r in model.rows[1:])
    assert model.decode_tokens_per_s == model.rows[3].tokens_per_s  # the pure-sampling row

    markdown = report.to_markdown().splitlines()
    header = next(line for line in markdown if line.startswith("| decoding"))
    for column in ("judge PPL", "Self-BLEU-4", "Zipf", "rep/128", "distinct-1", "distinct-3",
                   "seq-rep-4", "MAUVE", "copied 8-grams", "longest copy", "BLEU-4",
                   "decode tok/s"):
        assert f"| {column} |" in header
    table = markdown[markdown.index(header) + 2 : markdown.index(header) + 2 + len(ROWS)]
    assert [line.split(" | ")[0][2:] for line in table] == ROWS
    assert any("prompt at token" in line for line in markdown)  # the samples side by side

    record = json.loads(json.dumps(report.to_dict()))  # JSON-serialisable as it is
    rows = record["models"][0]["rows"]
    assert [r["label"] for r in rows] == ROWS
    assert set(rows[1]["metrics"]["mauve"]) == {"value", "ci95", "method"}
    assert record["config"]["strategies"][1]["beam_width"] == 2
    assert len(report.generations()) == len(model.starts)


def test_intervals_contain_the_point_estimate(report):
    for row in report.models[0].rows:
        for key, estimate in row.metrics.items():
            if math.isfinite(estimate.value):
                assert estimate.method in ("bootstrap", "jackknife"), (row.label, key)
                assert estimate.low <= estimate.value <= estimate.high, (row.label, key)


def test_the_report_is_reproducible(report, kn3, tiny_corpus):
    again = run_generation_bench({"kn3": kn3}, tiny_corpus, quick_config())
    assert again.models[0].texts == report.models[0].texts
    assert [r.metrics for r in again.models[0].rows] == [r.metrics for r in report.models[0].rows]


def test_the_judge_must_share_the_tokenizer(kn3, tiny_corpus):
    char_judge = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    config = quick_config(judge=char_judge, strategies=DEFAULT_STRATEGIES[:1])
    with pytest.raises(LmbenchError, match="share the tokenizer"):
        run_generation_bench({"kn3": kn3}, tiny_corpus, config)


@pytest.mark.parametrize("bad, message", [
    (dict(strategies=(Strategy("human"),)), "not 'human'"),
    (dict(strategies=(Strategy("a"), Strategy("a"))), "unique"),
    (dict(features="gpt2"), "features"),
    (dict(metric_unit="bytes"), "metric_unit"),
    (dict(continuation_len=0), "continuation_len"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_configs_are_one_line_errors(bad, message):
    with pytest.raises(LmbenchError, match=message):
        GenerationBenchConfig(**bad)
    with pytest.raises(LmbenchError, match="not both"):
        Strategy("x", beam_width=2, best_of=2)


def test_results_do_not_depend_on_the_batch_size(report, kn3, tiny_corpus):
    labels = ("beam", "top-p 0.95", "best-of-N")
    strategies = tuple(s for s in quick_config().strategies if s.label in labels)
    config = quick_config(strategies=strategies, batch_size=4)  # 9 prompts: 4, 4 and 1
    again = run_generation_bench({"kn3": kn3}, tiny_corpus, config)
    assert all(again.models[0].texts[label] == report.models[0].texts[label]
               for label in labels)
    assert all(row.tokens_per_s > 0 for row in again.models[0].rows[1:])
    assert len(again.models[0].starts) == 9
    assert "prompts decoded 4 at a time" in again.to_markdown()


def test_text_words_keep_word_tokens_whole():
    assert text_words("don't stop , <unk> now\nyes!") == ["don't", "stop", ",", "<unk>", "now",
                                                          "\n", "yes", "!"]


# ------------------------------------------------------------------------ the embed hook


@pytest.fixture(scope="module")
def tiny_gpt(tiny_corpus):
    model = lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=16)
    model.tokenizer.fit(tiny_corpus.train)
    torch.manual_seed(0)
    model.net = model.build_network(model.tokenizer.vocab_size)  # untrained is enough here
    return model


def test_gpt_embed_mean_pools_the_final_layer_norm(tiny_gpt):
    ids = torch.randint(0, tiny_gpt.tokenizer.vocab_size, (3, 40),
                        generator=torch.Generator().manual_seed(0))
    vectors = tiny_gpt.embed(ids)
    assert vectors.shape == (3, 16) and torch.isfinite(vectors).all()
    assert torch.allclose(tiny_gpt.embed(ids[1:2]), vectors[1:2], atol=1e-5)  # rows independent
    # 40 tokens past a block of 16: chunks [0, 16), [16, 32), [32, 40) weighted by their length
    chunks = [tiny_gpt.embed(ids[:, s : s + 16]) * len(range(s, min(s + 16, 40)))
              for s in (0, 16, 32)]
    assert torch.allclose(sum(chunks) / 40, vectors, atol=1e-5)
    assert has_embed(tiny_gpt)
    assert embed_features(tiny_gpt, [[1, 2, 3], [4, 5], [6, 7, 8]]).shape == (3, 16)


def test_judge_features_fall_back_to_tfidf_without_an_embed_hook(tiny_gpt, kn3, tiny_corpus):
    strategies = (Strategy("greedy", SamplingConfig(temperature=0)), Strategy("pure sampling"))
    config = quick_config(features="judge", strategies=strategies, n_prompts=4,
                          continuation_len=12)
    with_hook = run_generation_bench({"gpt": tiny_gpt}, tiny_corpus, config)
    assert with_hook.models[0].features == "judge"
    assert math.isfinite(with_hook.models[0].rows[2].metrics["mauve"].value)
    assert not has_embed(kn3)
    without = run_generation_bench({"kn3": kn3}, tiny_corpus, config)
    assert without.models[0].features.startswith("tfidf (the ngram judge has no embed hook")


# ------------------------------------------------------------------- on real text (slower)


@pytest.fixture(scope="module")
def shakespeare(data_dir):
    return lmbench.load_corpus("tinyshakespeare", data_dir)


def test_mauve_of_human_halves_is_near_one_and_of_unigram_samples_clearly_lower(shakespeare):
    unigram = lmbench.build_model("ngram", order=1, tokenizer="word").fit(shakespeare)
    ids = unigram.tokenizer.encode_split(shakespeare.train)
    L, n = 48, 100
    human = [unigram.tokenizer.decode(ids[i * L : (i + 1) * L]) for i in range(2 * n)]
    # features fitted on other training text, as the benchmark fits them on the train split
    fit_on = [unigram.tokenizer.decode(ids[i : i + L]) for i in range(2 * n * L, len(ids), 4 * L)]
    featurize = TfidfSvd(64).fit(fit_on[:2000])
    first_half, second_half = featurize(human[0::2]), featurize(human[1::2])
    samples = featurize([unigram.tokenizer.decode(generate(unigram, [], L, seed=s))
                         for s in range(n)])
    same = compute_mauve(first_half, second_half)
    unigram_mauve = compute_mauve(first_half, samples)
    assert same > 0.95
    assert unigram_mauve < 0.8 and same - unigram_mauve > 0.2


def test_greedy_and_beam_repeat_more_than_top_p_on_a_trained_model(shakespeare):
    model = lmbench.build_model("ngram", order=3, tokenizer="word").fit(shakespeare)
    strategies = (Strategy("greedy", SamplingConfig(temperature=0)), Strategy("beam", beam_width=3),
                  Strategy("top-p 0.95", SamplingConfig(top_p=0.95)))
    config = GenerationBenchConfig(n_prompts=16, prompt_len=16, continuation_len=64,
                                   strategies=strategies, n_bootstrap=200, n_groups=4,
                                   feature_dim=32, feature_docs=300)
    rows = {r.label: r.metrics for r in run_generation_bench({"kn3": model}, shakespeare,
                                                             config).models[0].rows}
    for metric in ("seq_rep_4", "repetition_rate_128"):
        top_p = rows["top-p 0.95"][metric]
        for label in ("greedy", "beam"):
            assert rows[label][metric].low > top_p.high, (label, metric)  # intervals apart
        assert rows["human"][metric].value < rows["greedy"][metric].value
