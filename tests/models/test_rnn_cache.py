"""The continuous cache of the RNN family (Grave et al. 2017) against direct computation."""

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError


@pytest.fixture(scope="module")
def lstm(tiny_corpus):
    return lmbench.build_model("lstm", embed_dim=16, hidden_dim=16, n_layer=1,
                               train={"max_steps": 30, "batch_size": 4, "seq_len": 8,
                                      "progress": False}).fit(tiny_corpus, valid=False)


def _stream(model, corpus, n=40):
    ids = model.tokenizer.encode_split(corpus.split("test"))[:n]
    inputs = np.concatenate(([model.tokenizer.boundary_id], ids[:-1]))
    return torch.from_numpy(inputs)[None], torch.from_numpy(ids)[None]


def test_zero_lambda_is_the_plain_model(lstm, tiny_corpus):
    inputs, targets = _stream(lstm, tiny_corpus)
    plain, _ = lstm.token_logprobs(inputs, targets)
    cached, _ = lstm.with_cache(50, 0.3, 0.0).token_logprobs(inputs, targets)
    assert torch.allclose(plain, cached, atol=1e-6)


def test_flat_cache_is_the_frequency_of_the_word_among_the_last_pairs(lstm, tiny_corpus):
    """theta = 0 makes every visible pair equally likely: p_cache(w) = count(w) / n_visible."""
    inputs, targets = _stream(lstm, tiny_corpus)
    size, lam = 5, 0.25
    plain, _ = lstm.token_logprobs(inputs, targets)
    mixed, _ = lstm.with_cache(size, 0.0, lam).token_logprobs(inputs, targets)
    x = inputs[0].tolist()
    for t in range(inputs.shape[1]):
        # pairs (h_i, x_{i+1}) with i + 1 <= t, the last `size` of them
        words = x[1 : t + 1][-size:]
        p_vocab = float(plain[0, t].exp())
        if words:
            expected = (1 - lam) * p_vocab + lam * words.count(int(targets[0, t])) / len(words)
        else:
            expected = p_vocab
        assert float(mixed[0, t].exp()) == pytest.approx(expected, rel=1e-6)


def test_cache_carries_across_calls_and_sums_to_one(lstm, tiny_corpus):
    model = lstm.with_cache(7, 0.8, 0.3)
    inputs, targets = _stream(model, tiny_corpus)
    whole, _ = model.token_logprobs(inputs, targets)
    first, state = model.token_logprobs(inputs[:, :13], targets[:, :13])
    second, _ = model.token_logprobs(inputs[:, 13:], targets[:, 13:], state)
    assert torch.allclose(whole, torch.cat([first, second], 1), atol=1e-9)
    logits, _ = model.logits(inputs)
    sums = torch.logsumexp(logits.double(), -1)  # (1, 40)
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-5)


def test_cache_helps_on_repeated_text(lstm, tiny_corpus):
    inputs, targets = _stream(lstm, tiny_corpus, 20)
    twice_in, twice_t = torch.cat([inputs, targets], 1), torch.cat([targets, targets], 1)
    plain, _ = lstm.token_logprobs(twice_in, twice_t)
    cached, _ = lstm.with_cache(100, 1.0, 0.3).token_logprobs(twice_in, twice_t)
    assert cached[0, 20:].sum() > plain[0, 20:].sum()  # the second copy is in the cache


@pytest.mark.parametrize("field,value", [("cache_size", -1), ("cache_theta", -0.1),
                                         ("cache_lambda", 1.0)])
def test_bad_cache_options_are_rejected(field, value):
    with pytest.raises(LmbenchError, match=field):
        lmbench.build_model("lstm", **{field: value})
