"""Stage metrics: Monte Carlo KL from lmbench's own log-probabilities, best-of-N's bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbench.alignment.task_eval import (
    best_of_n_kl,
    best_of_n_metrics,
    continuation_logprobs,
    policy_metrics,
    sample_continuations,
)


@pytest.fixture(scope="module")
def two_gpts(gpt_target, gpt_draft):
    """Two fitted gpts sharing one tokenizer (tests/conftest.py's session models)."""
    return gpt_target, gpt_draft


def test_rescored_logprobs_equal_the_sampled_ones(two_gpts):
    policy, _ = two_gpts
    drawn = sample_continuations(policy, ["the cat", "a dog", "the cow"], max_new_tokens=6,
                                 n_per_prompt=2, seed=3)
    assert len(drawn.texts) == 6 and drawn.prompts[:2] == ("the cat", "the cat")
    again = continuation_logprobs(policy, drawn.prompt_ids, drawn.ids)
    for sampled, rescored in zip(drawn.logprobs, again):
        np.testing.assert_allclose(sampled, rescored, atol=1e-4)


def test_kl_to_itself_is_zero_and_to_another_model_positive(two_gpts):
    policy, other = two_gpts
    prompts = ["the cat", "a dog"] * 8
    same, _ = policy_metrics(policy, policy, prompts, max_new_tokens=8)
    assert abs(same.kl_nats) < 1e-3 and same.n_samples == 16
    apart, _ = policy_metrics(policy, other, prompts, max_new_tokens=8)
    assert apart.kl_nats > 0.1 and apart.reference_perplexity > same.reference_perplexity


def test_best_of_n_picks_the_best_and_reports_the_analytic_kl(two_gpts):
    policy, _ = two_gpts
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    count_a = lambda prompts, texts: [t.count("a") for t in texts]  # noqa: E731
    (one, _), (eight, chosen) = best_of_n_metrics(policy, ["the"] * 8, [1, 8], count_a,
                                                  max_new_tokens=10)
    (alone, _), = best_of_n_metrics(policy, ["the"] * 8, 1, count_a, max_new_tokens=10)
    assert alone == one  # best-of-1 from the sweep's first draws equals best-of-1 alone
    assert eight.kl_nats == pytest.approx(best_of_n_kl(8))
    assert eight.proxy_reward_mean >= one.proxy_reward_mean
    assert len(chosen.texts) == 8
