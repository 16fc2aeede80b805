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
