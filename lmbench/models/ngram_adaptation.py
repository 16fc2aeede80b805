"""Adapting an n-gram model to a target domain: the statistical counterpart of fine-tuning.

Two classic ways to move a model trained on a large base corpus (Brown) towards a small target
domain, both tuned on the domain's valid split and never on its test split:

- **Interpolation** with a domain n-gram (Jelinek & Mercer 1980): fit an n-gram of the same
  order, smoothing and vocabulary on the domain's train split and mix the two,

      p(w | h) = λ p_base(w | h) + (1 - λ) p_domain(w | h),

  λ by EM on the domain's valid split (``lmbench.combinators.interpolation.em_weights``).
- **Count merging** (Bacchiani & Roark 2003, "Unsupervised language model adaptation",
  ICASSP; the MAP-adaptation view of Bacchiani, Roark & Saraclar 2004): one n-gram estimated
  with the same smoothing from merged counts

      c(h, w) = c_base(h, w) + β c_domain(h, w),

  the domain's counts weighted by a whole number β picked from a grid by the domain's valid
  perplexity (``lmbench.models.ngram_estimate.merge_counts``).

Both keep the base model's tokenizer, so the adapted model scores the domain on the base's
closed vocabulary, exactly as a fine-tuned neural model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmbench.combinators.interpolation import InterpolatedLM
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.models.ngram import NGramLM
from lmbench.models.ngram_estimate import count_ngrams, estimate, merge_counts

DEFAULT_BETAS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class CountMerged:
    """A count-merged n-gram, the β it was built with and the valid perplexity of every β."""

    model: NGramLM
    beta: int
    valid_perplexity_by_beta: dict[int, float]


def domain_ngram(base: NGramLM, domain_train_ids: np.ndarray) -> NGramLM:
    """An n-gram with ``base``'s config and tokenizer fitted on (N,) domain train ids."""
    return NGramLM(base.config_, base.tokenizer).fit_ids(domain_train_ids)


def interpolate_with_domain(base: NGramLM, domain_train_ids: np.ndarray,
                            domain_valid_ids: np.ndarray) -> InterpolatedLM:
    """``base`` mixed with a domain n-gram, weights by EM on (N,) domain valid ids."""
    mixture = InterpolatedLM.of([base, domain_ngram(base, domain_train_ids)])
    mixture.fit_weights(domain_valid_ids)
    return mixture


def count_merge(base: NGramLM, base_train_ids: np.ndarray, domain_train_ids: np.ndarray,
                betas: tuple[int, ...] = DEFAULT_BETAS,
                domain_valid_ids: np.ndarray | None = None) -> CountMerged:
    """Count merging (module docstring) with ``base``'s config and tokenizer.

    Args:
        base: a fitted n-gram (only its config and tokenizer are used; its counts are
            recomputed from ``base_train_ids``, the stream it was fitted on).
        base_train_ids: (N,) ids of the base train split.
        domain_train_ids: (M,) ids of the domain train split, same tokenizer.
        betas: whole numbers >= 1 to try; one value needs no valid split.
        domain_valid_ids: (K,) ids to pick β on (lowest perplexity); required for several β.

    Returns:
        The merged model with the chosen β and every β's valid perplexity (empty for one β).
    """
    if not betas:
        raise LmbenchError("count merging: betas must name at least one value")
    if len(betas) > 1 and domain_valid_ids is None:
        raise LmbenchError("count merging: several betas need the domain's valid ids to choose")
    config, tokenizer = base.config_, base.tokenizer
    V, boundary = tokenizer.vocab_size, tokenizer.boundary_id
    base_counts = count_ngrams(np.asarray(base_train_ids, np.int64), boundary, V, config.order)
    domain_counts = count_ngrams(np.asarray(domain_train_ids, np.int64), boundary, V,
                                 config.order)
    best: tuple[float, int, NGramLM] | None = None
    by_beta: dict[int, float] = {}
    for beta in betas:
        model = NGramLM(config, tokenizer)
        model.tables_, model.discounts_ = estimate(
            merge_counts(base_counts, domain_counts, beta), V, config.smoothing, config.k,
            config.discount, config.discount_fallback)
        if len(betas) == 1:
            return CountMerged(model, beta, {})
        nll = score_stream(model, domain_valid_ids, EvalConfig(progress=False))
        by_beta[beta] = math.exp(float(nll.mean()))
        if best is None or by_beta[beta] < best[0]:
            best = (by_beta[beta], beta, model)
    assert best is not None
    return CountMerged(best[2], best[1], by_beta)
