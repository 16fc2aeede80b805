"""The evaluator: windows score each token once, sums before dividing, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lmbench
from lmbench.core.interface import Capabilities
from lmbench.evaluation.scoring import EvalConfig, evaluate, plan_windows, score_stream


@pytest.mark.parametrize("n_tokens", [1, 7, 64, 65, 1000])
@pytest.mark.parametrize("capabilities", [
    Capabilities(max_context=4), Capabilities(max_context=64, max_window=64),
    Capabilities(max_window=16), Capabilities(carries_state=True),
    Capabilities(max_context=1000, max_window=10),
])
def test_each_token_is_scored_exactly_once(n_tokens, capabilities):
    scored = np.zeros(n_tokens, int)
    for window in plan_windows(n_tokens, capabilities, window_len=32):
        assert 0 <= window.start <= window.score_from < window.end <= n_tokens
        length = capabilities.max_window or 32
        assert window.end - window.start <= length
        scored[window.score_from : window.end] += 1
        if not capabilities.carries_state and window.start > 0:
            context = window.score_from - window.start  # tokens of context before scoring
            assert context >= min(capabilities.max_context or length // 2, length // 2)
    assert (scored == 1).all()


def test_documented_example_windows():
    windows = plan_windows(14, Capabilities(max_context=4, max_window=8), window_len=99)
    assert [(w.start, w.end, w.score_from) for w in windows] == [(0, 8, 0), (4, 12, 8), (8, 14, 12)]


def test_windowed_ngram_scores_equal_one_pass(tiny_corpus):
    model = lmbench.build_model("ngram", order=4, tokenizer="char").fit(tiny_corpus)
    ids = model.tokenizer.encode_split(tiny_corpus.split("test"))
    one_pass = score_stream(model, ids, EvalConfig(window_len=len(ids) + 1, progress=False))
    windowed = score_stream(model, ids, EvalConfig(window_len=50, batch_size=3, progress=False))
    np.testing.assert_allclose(windowed, one_pass, rtol=0, atol=1e-12)


def test_metrics_are_sums_divided_once(tiny_corpus):
    model = lmbench.build_model("ngram", order=3, tokenizer="char").fit(tiny_corpus)
    result = evaluate(model, tiny_corpus, "test", EvalConfig(progress=False, block_len=16))
    split = tiny_corpus.split("test")
    ids = model.tokenizer.encode_split(split)
    nll = score_stream(model, ids, EvalConfig(progress=False))
    assert result.nll_nats == pytest.approx(nll.sum())
    assert result.n_tokens == len(ids) == len(split.text)
    assert result.n_bytes == len(split.text.encode("utf-8"))
    assert result.perplexity == pytest.approx(math.exp(nll.mean()))
    assert result.bits_per_byte == pytest.approx(nll.sum() / (math.log(2) * result.n_bytes))
    assert result.word_perplexity == pytest.approx(math.exp(nll.sum() / split.n_words))
    assert sum(result.block_nll_nats) == pytest.approx(result.nll_nats)
    low, high = result.perplexity_ci95
    assert low < result.perplexity < high
    low, high = result.bits_per_byte_ci95
    assert low < result.bits_per_byte < high


def test_word_track_counts_end_of_sentence_and_unk(tiny_corpus):
    model = lmbench.build_model("ngram", order=2).fit(tiny_corpus)  # unk_max_count = 3
    result = evaluate(model, tiny_corpus, "test", EvalConfig(progress=False))
    split = tiny_corpus.split("test")
    assert result.n_tokens == sum(len(s) + 1 for s in split.sentences) == split.n_words
    assert result.word_perplexity == pytest.approx(result.perplexity)
    assert result.n_unk >= 1  # "cow" and "chair" never occur in train
    assert result.unk_rate == result.n_unk / result.n_tokens


def test_bootstrap_is_seeded(tiny_corpus):
    model = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    config = EvalConfig(progress=False, block_len=8, seed=5)
    first = evaluate(model, tiny_corpus, "test", config)
    assert evaluate(model, tiny_corpus, "test", config).perplexity_ci95 == first.perplexity_ci95


def test_result_round_trips_through_json(tiny_corpus):
    model = lmbench.build_model("ngram", order=2).fit(tiny_corpus)
    result = evaluate(model, tiny_corpus, "test", EvalConfig(progress=False))
    same = lmbench.EvalResult.from_dict(result.to_dict())
    assert same == result and same.perplexity == result.perplexity


def test_unknown_split_is_a_clear_error(tiny_corpus):
    model = lmbench.build_model("ngram", order=2).fit(tiny_corpus)
    corpus = lmbench.Corpus("x", {"train": tiny_corpus.train})
    with pytest.raises(lmbench.LmbenchError, match="has no 'test' split"):
        evaluate(model, corpus, "test")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_model_returning_nan_or_inf_is_a_one_line_error_naming_it(tiny_corpus, bad):
    import torch

    from lmbench.adapters import FunctionLM
    from lmbench.core.errors import LmbenchError

    def broken(ids):
        return torch.full((*ids.shape, 257), bad)

    model = FunctionLM(broken, tokenizer="byte", name="broken-fn").fit(tiny_corpus)
    with pytest.raises(LmbenchError) as error:
        evaluate(model, tiny_corpus, "test", EvalConfig(progress=False))
    assert "model 'broken-fn' returned NaN or +inf" in str(error.value)
    assert "\n" not in str(error.value)


def test_zero_probabilities_are_not_an_error(tiny_corpus):
    mle = lmbench.build_model("ngram", order=2, smoothing="mle").fit(tiny_corpus)
    ids = np.array([mle.tokenizer.unk_id] * 3)  # <unk> never follows <unk> in train
    nll = score_stream(mle, ids, EvalConfig(progress=False))
    assert np.isinf(nll).any()


def test_eval_bootstrap_count_has_a_documented_limit():
    from lmbench.core.errors import LmbenchError
    from lmbench.core.limits import MAX_EVAL_BOOTSTRAP

    EvalConfig(n_bootstrap=MAX_EVAL_BOOTSTRAP)
    with pytest.raises(LmbenchError, match="eval.n_bootstrap must be <= 100,000"):
        EvalConfig(n_bootstrap=MAX_EVAL_BOOTSTRAP + 1)
    with pytest.raises(LmbenchError, match="eval.seed must be >= 0"):
        EvalConfig(seed=-1)


def test_logits_per_call_stay_under_the_memory_budget(tiny_corpus):
    import torch

    from lmbench.adapters.function import FunctionLM
    from lmbench.evaluation.scoring import fit_to_budget

    table = torch.log_softmax(torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0)),
                              dim=-1)
    calls = []

    def unigram(ids):  # (B, T) -> (B, T, V): a large vocabulary, context ignored
        calls.append(tuple(ids.shape))
        return table[..., :vocab_size].expand(*ids.shape, vocab_size)

    model = FunctionLM(unigram, "char", max_context=1).fit(tiny_corpus)
    vocab_size = model.tokenizer.vocab_size
    budget = 4 * vocab_size * 100  # the logits of 100 tokens
    unbounded = EvalConfig(window_len=64, batch_size=8, n_bootstrap=10)
    expected = evaluate(model, tiny_corpus, "test", unbounded)
    assert max(b * t for b, t in calls) == 8 * 64  # over the budget below
    for window_len in (64, 256):  # fewer windows per call; then shorter windows too
        calls.clear()
        budgeted = EvalConfig(window_len=window_len, batch_size=8, n_bootstrap=10,
                              memory_budget_bytes=budget)
        result = evaluate(model, tiny_corpus, "test", budgeted)
        assert calls and max(b * t * vocab_size * 4 for b, t in calls) <= budget
        assert result.nll_nats == pytest.approx(expected.nll_nats, rel=1e-12)
        assert result.perplexity_ci95 == pytest.approx(expected.perplexity_ci95)
    # Brown's word vocabulary under the defaults: 2 windows of 8,192 a call instead of 8
    assert fit_to_budget(Capabilities(), 14_116, EvalConfig()) == (8192, 2)
    assert fit_to_budget(Capabilities(max_context=4), 10**7, EvalConfig()) == (26, 1)
    assert fit_to_budget(Capabilities(max_context=64, max_window=64), 50_257, EvalConfig()) \
        == (64, 8)  # fits: unchanged


def test_scoring_prints_progress_lines_when_not_on_a_terminal(tiny_corpus, capsys):
    model = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    evaluate(model, tiny_corpus, "test", EvalConfig(window_len=16, batch_size=1, n_bootstrap=10))
    lines = capsys.readouterr().err.strip().splitlines()
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("scoring tiny test: ")
    total = model.tokenizer.encode_split(tiny_corpus.split("test")).size
    assert f"{total:,} / {total:,} tokens (100%)" in lines[-1] and "tokens/s" in lines[-1]
