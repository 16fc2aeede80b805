"""The n-gram counterpart of fine-tuning: count merging and interpolation with a domain model."""

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.data.corpora import _lines_split
from lmbench.models.ngram_adaptation import count_merge, interpolate_with_domain
from lmbench.models.ngram_estimate import count_ngrams, merge_counts

DOMAIN = "a cow ate the grass .\nthe grass is green .\na green cow sat .\n" * 3


@pytest.fixture(scope="module", params=["modified-kneser-ney", "kneser-ney", "witten-bell",
                                        "add-k"])
def setting(request, tiny_corpus):
    base = lmbench.build_model("ngram", order=3, smoothing=request.param).fit(tiny_corpus)
    tokenizer = base.tokenizer
    base_ids = tokenizer.encode_split(tiny_corpus.train)
    domain = _lines_split("train", DOMAIN)
    return base, base_ids, tokenizer.encode_split(domain)


def test_merged_counts_equal_counting_the_domain_beta_times(setting):
    base, base_ids, domain_ids = setting
    V, boundary = base.tokenizer.vocab_size, base.tokenizer.boundary_id
    merged = merge_counts(count_ngrams(base_ids, boundary, V, 3),
                          count_ngrams(domain_ids, boundary, V, 3), beta=3)
    direct = count_ngrams(np.concatenate([base_ids, domain_ids, domain_ids, domain_ids]),
                          boundary, V, 3)
    for m, d in zip(merged, direct, strict=True):
        for field in ("keys", "context", "suffix", "raw", "starts_with_bos"):
            np.testing.assert_array_equal(getattr(m, field), getattr(d, field))


def test_count_merged_distributions_sum_to_one(setting):
    base, base_ids, domain_ids = setting
    model = count_merge(base, base_ids, domain_ids, betas=(4,)).model
    histories = torch.from_numpy(domain_ids[:12])[None]  # (1, 12)
    logits, _ = model.logits(histories)  # (1, 12, V)
    np.testing.assert_allclose(logits.exp().sum(-1).numpy(), 1.0, atol=1e-9)


def test_beta_is_chosen_on_valid_and_moves_towards_the_domain(setting):
    base, base_ids, domain_ids = setting
    merged = count_merge(base, base_ids, domain_ids, betas=(1, 8, 64),
                         domain_valid_ids=domain_ids)
    best = min(merged.valid_perplexity_by_beta, key=merged.valid_perplexity_by_beta.get)
    assert merged.beta == best and set(merged.valid_perplexity_by_beta) == {1, 8, 64}
    # scored on the domain text itself, more domain weight can only help
    assert merged.valid_perplexity_by_beta[64] < merged.valid_perplexity_by_beta[1]


def test_interpolation_with_the_domain_sums_to_one_and_weights_the_domain(setting):
    base, _, domain_ids = setting
    mixture = interpolate_with_domain(base, domain_ids, domain_ids)
    assert mixture.weights_.sum() == pytest.approx(1.0) and mixture.weights_[1] > 0.5
    logits, _ = mixture.logits(torch.from_numpy(domain_ids[:8])[None])  # (1, 8, V)
    np.testing.assert_allclose(logits.double().exp().sum(-1).numpy(), 1.0, atol=1e-5)


def test_bad_beta_is_one_line_error(setting):
    base, base_ids, domain_ids = setting
    for betas in [(0,), (1.5,)]:
        with pytest.raises(LmbenchError, match="beta must be a whole number >= 1"):
            count_merge(base, base_ids, domain_ids, betas=betas)
    with pytest.raises(LmbenchError, match="need the domain's valid ids"):
        count_merge(base, base_ids, domain_ids, betas=(1, 2))
