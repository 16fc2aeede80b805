"""Prefix caching: logits continued from a cached prefix equal logits recomputed from scratch,
and the cached state is never modified."""

from __future__ import annotations

import copy

import pytest
import torch

from lmbench.inference.prefix_cache import cache_prefix, extend, suffix_logprobs


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
