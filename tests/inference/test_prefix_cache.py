"""Prefix caching: logits continued from a cached prefix equal logits recomputed from scratch,
and the cached state is never modified."""

from __future__ import annotations

import copy

import pytest
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import SelectsStateRows
from lmbench.inference.prefix_cache import (
    cache_prefix,
    extend,
    extend_cache,
    sample_after,
    sample_batch_after,
    suffix_logprobs,
)
from lmbench.inference.sampling import SamplingConfig
from tests.model_factory import Unselecting


def _recomputed(model, prefix, suffix):
    ids = torch.tensor([[model.tokenizer.boundary_id, *prefix, *suffix]])
    logits, _ = model.logits(ids)
    return logits[:, len(prefix) + 1:]  # (1, T_suffix, V)


def _snapshot(state):
    return copy.deepcopy(state)


def _same_state(a, b) -> bool:
    if hasattr(a, "layers"):  # KVCache
        return torch.equal(a.tokens, b.tokens) and all(
            torch.equal(x, y) for pa, pb in zip(a.layers, b.layers, strict=True)
            for x, y in zip(pa, pb, strict=True))
    return (a == b).all()


@pytest.mark.parametrize("family", ["gpt", "ngram"])
def test_reused_prefix_equals_recomputation(family, gpt_target, ngram_draft):
    model = gpt_target if family == "gpt" else ngram_draft
    encode = model.tokenizer.encode
    prefix = encode("the cat sat on the mat .\na dog ")
    cache = cache_prefix(model, prefix)
    before = _snapshot(cache.state)
    for suffix in ("ate a fish", "walked to the river", "s"):  # one id, then several
        ids = encode(suffix)
        logits, _ = extend(model, cache, ids)
        assert torch.allclose(logits, _recomputed(model, prefix, ids), atol=1e-5)
        assert _same_state(cache.state, before)  # copy on extend: the prefix state is intact
    full, _ = model.logits(torch.tensor([[model.tokenizer.boundary_id, *prefix]]))
    assert torch.allclose(cache.next_logits, full[0, -1], atol=1e-5)


def test_suffix_logprobs_score_candidates_of_one_context(gpt_target):
    model = gpt_target
    prefix = model.tokenizer.encode("my friend looked at ")
    cache = cache_prefix(model, prefix)
    for candidate in ("the mat", "a bone"):
        ids = model.tokenizer.encode(candidate)
        stream = torch.tensor([[model.tokenizer.boundary_id, *prefix, *ids]])
        expected, _ = model.token_logprobs(stream[:, :-1], stream[:, 1:])
        got = suffix_logprobs(model, cache, ids)
        assert torch.allclose(got, expected[0, len(prefix):], atol=1e-5)


@pytest.mark.parametrize("family", ["gpt", "ngram"])
def test_batched_suffixes_after_one_cached_prefix_equal_one_at_a_time(family, gpt_target,
                                                                      ngram_draft):
    model = gpt_target if family == "gpt" else ngram_draft
    encode = model.tokenizer.encode
    cache = cache_prefix(model, encode("the cat sat on the mat .\n"))
    before = _snapshot(cache.state)
    suffixes = [encode(text) for text in ("a dog ", "the ca", "my fri")]
    assert len({len(s) for s in suffixes}) == 1
    seeds = [[0], [1, 2], [3]]  # the second suffix is continued twice (self-consistency)
    config = (SamplingConfig(temperature=0) if family == "gpt"  # float rounding: greedy only
              else SamplingConfig(temperature=0.9, top_k=20))
    batched = sample_batch_after(model, cache, suffixes, 12, seeds=seeds, sampler=config)
    alone = [[sample_after(model, extend_cache(model, cache, s), 12, seed=seed, sampler=config)
              for seed in row] for s, row in zip(suffixes, seeds)]
    assert [[d.ids for d in row] for row in batched] == [[d.ids for d in row] for row in alone]
    if family == "ngram":
        assert batched == alone  # ids, logprobs and texts, exactly
    else:
        for got, want in zip(sum(batched, []), sum(alone, [])):
            assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)
    assert _same_state(cache.state, before)  # the cached prefix is left as it was
    assert [len(row) for row in sample_batch_after(model, cache, [[], []], 3,
                                                   seeds=[[0], [1]])] == [1, 1]


def test_a_model_without_row_selection_answers_each_row_alone(ngram_draft):
    plain = Unselecting(ngram_draft)
    assert not isinstance(plain, SelectsStateRows)
    encode, config = ngram_draft.tokenizer.encode, SamplingConfig(temperature=0.9)
    suffixes, seeds = [encode("a dog "), encode("the ca")], [[5, 6], [7]]
    want = sample_batch_after(ngram_draft, cache_prefix(ngram_draft, encode("the cat ")),
                              suffixes, 10, seeds=seeds, sampler=config)
    got = sample_batch_after(plain, cache_prefix(plain, encode("the cat ")), suffixes, 10,
                             seeds=seeds, sampler=config)
    assert got == want


def test_batched_suffixes_need_one_length_and_a_seed_list_each(ngram_draft):
    cache = cache_prefix(ngram_draft, ngram_draft.tokenizer.encode("the cat "))
    with pytest.raises(LmbenchError, match=r"suffixes of one batch must have one length, got "
                                           r"lengths \[1, 2\]"):
        sample_batch_after(ngram_draft, cache, [[1], [1, 2]], 3, seeds=[[0], [1]])
    with pytest.raises(LmbenchError, match="one list of seeds per suffix: 1 lists for 2"):
        sample_batch_after(ngram_draft, cache, [[1], [2]], 3, seeds=[[0]])
    assert sample_batch_after(ngram_draft, cache, [], 3, seeds=[]) == []
    assert sample_batch_after(ngram_draft, cache, [[1], [2]], 3, seeds=[[], []]) == [[], []]
