"""The n-gram scoring fast path (hash index, one lookup per order) against a per-token
backoff recursion over the sorted tables, on real Brown text for every smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmbench
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.models.ngram import NGramConfig, NGramLM
from lmbench.models.ngram_index import HashIndex

SMOOTHINGS = ["mle", "add-k", "witten-bell", "kneser-ney", "modified-kneser-ney"]
ORDER = 4
N_TOKENS = 2500  # test tokens scored token by token per smoothing


def _row_of(tables, width, gram: tuple[int, ...]) -> int:
    """Row of an n-gram of history tokens in its table by scalar ``searchsorted``, -1 if absent."""
    if len(gram) == 1:
        return gram[0]
    context = _row_of(tables, width, gram[:-1])
    if context < 0:
        return -1
    keys = tables[len(gram) - 1].keys
    key = context * width + gram[-1]
    where = int(np.searchsorted(keys, key))
    return where if where < len(keys) and keys[where] == key else -1


def per_token_logprobs(model: NGramLM, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ln p of each (T,) target given the (T,) inputs up to it, one token at a time: the ARPA
    backoff recursion of ``lmbench.models.ngram``'s docstring, summing backoffs from short to
    long histories as the vectorized code does."""
    tables = model.tables_
    V, boundary, order = model.tokenizer.vocab_size, model.tokenizer.boundary_id, len(tables)
    width = V + 1
    out = np.zeros(len(targets))
    context: list[int] = []
    for t, (token, target) in enumerate(zip(inputs.tolist(), targets.tolist())):
        context = [V] if token == boundary else [*context, token]  # </s> -> <s>, history cut
        if target < 0:
            continue
        matched, log_prob = 1, tables[0].log_prob[target]
        for n in range(order, 1, -1):  # the longest stored n-gram (history, target)
            if len(context) < n - 1:
                continue
            row = _row_of(tables, width, (*context[len(context) - (n - 1):], target))
            if row >= 0:
                matched, log_prob = n, tables[n - 1].log_prob[row]
                break
        backoff = 0.0
        for j in range(matched, order):  # histories longer than the match
            if len(context) >= j:
                row = _row_of(tables, width, tuple(context[len(context) - j:]))
                if row >= 0:
                    backoff += tables[j - 1].log_backoff[row]
        out[t] = log_prob + backoff
    return out


@pytest.fixture(scope="module")
def brown(data_dir):
    corpus = lmbench.load_corpus("brown", data_dir)
    tokenizer = lmbench.build_model("ngram").tokenizer
    tokenizer.fit(corpus.train)
    train = tokenizer.encode_split(corpus.train)
    test = tokenizer.encode_split(corpus.split("test"))[:N_TOKENS]
    return tokenizer, train, test


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_fast_scoring_equals_the_per_token_recursion_on_brown(brown, smoothing):
    tokenizer, train, test = brown
    model = NGramLM(NGramConfig(order=ORDER, smoothing=smoothing, k=0.5), tokenizer)
    model.fit_ids(train)
    inputs = np.concatenate(([tokenizer.boundary_id], test[:-1]))
    expected = per_token_logprobs(model, inputs, test)

    # the evaluator's windows (targets continue the inputs: one lookup per order)
    nll = score_stream(model, test, EvalConfig(window_len=300, batch_size=3, progress=False))
    np.testing.assert_array_equal(-nll, expected)

    # one window starting mid-sentence (no <s> before its first token), with unscored targets
    window = slice(1007, 1500)
    targets = test[window].copy()
    targets[:40] = -1
    scores, _ = model.token_logprobs(torch.from_numpy(inputs[None, window]),
                                     torch.from_numpy(targets[None]))
    np.testing.assert_array_equal(scores[0].numpy(), per_token_logprobs(
        model, inputs[window], targets))

    # targets that do not continue the inputs take the general path, with the same numbers
    other = np.random.default_rng(0).integers(0, tokenizer.vocab_size, N_TOKENS)
    scores, _ = model.token_logprobs(torch.from_numpy(inputs[None]), torch.from_numpy(other[None]))
    np.testing.assert_array_equal(scores[0].numpy(), per_token_logprobs(model, inputs, other))


def test_a_carried_state_gives_the_one_call_scores(brown):
    tokenizer, train, test = brown
    model = NGramLM(NGramConfig(order=ORDER), tokenizer).fit_ids(train)
    inputs = np.concatenate(([tokenizer.boundary_id], test[:-1]))[None]  # (1, N)
    whole, _ = model.token_logprobs(inputs, test[None])
    for targets in (test[None], np.roll(test, 1)[None]):  # the fast and the general path
        whole, _ = model.token_logprobs(inputs, targets)
        state, parts = None, []
        for start in range(0, N_TOKENS, 333):
            part, state = model.token_logprobs(inputs[:, start:start + 333],
                                               targets[:, start:start + 333], state)
            parts.append(part)
        np.testing.assert_array_equal(torch.cat(parts, dim=1).numpy(), whole.numpy())


def test_hash_index_finds_what_searchsorted_finds():
    rng = np.random.default_rng(1)
    keys = np.unique(rng.integers(0, 10**12, 50_000))
    index = HashIndex(keys)
    assert len(index.slot_keys) >= 2 * len(keys)  # load at most 1/2
    queries = np.concatenate([keys[rng.integers(0, len(keys), 20_000)],
                              rng.integers(0, 10**12, 20_000), [-1, -7, 0, 10**12]])
    rng.shuffle(queries)
    where = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    expected = np.where((keys[where] == queries) & (queries >= 0), where, -1)
    np.testing.assert_array_equal(index.find(queries.reshape(4, -1)).reshape(-1), expected)
    # keys that all hash near each other still resolve (long probe sequences)
    dense = np.arange(0, 4096, dtype=np.int64) << 40
    np.testing.assert_array_equal(HashIndex(dense).find(dense), np.arange(4096))
    assert (HashIndex(np.zeros(0, np.int64)).find(np.array([0, 5])) == -1).all()


def test_the_index_follows_new_tables(tiny_corpus):
    model = lmbench.build_model("ngram", order=3).fit(tiny_corpus)
    ids = model.tokenizer.encode_split(tiny_corpus.split("test"))
    first = score_stream(model, ids, EvalConfig(progress=False))
    model.config_ = NGramConfig(order=3, smoothing="witten-bell")
    model.fit(tiny_corpus)  # new tables: the cached index must not serve them
    refit = score_stream(model, ids, EvalConfig(progress=False))
    fresh = lmbench.build_model("ngram", order=3, smoothing="witten-bell").fit(tiny_corpus)
    np.testing.assert_array_equal(refit, score_stream(fresh, ids, EvalConfig(progress=False)))
    assert not np.array_equal(first, refit)
