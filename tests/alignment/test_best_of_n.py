"""Best-of-N against a reward: the same draws as the decoder's best-of-N, and its analytic KL."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from lmbench.alignment.best_of_n import best_of_n
from lmbench.alignment.measure import measure
from lmbench.alignment.rollout import sample_completions, verifier_reward
from lmbench.core.errors import LmbenchError
from lmbench.inference.decoding import best_of_n_batch, text_scorer

PROMPTS = ["the cat ", "a dog "]


def _a_count(prompt: str, text: str) -> float:
    return float(text.count("a"))


def test_best_of_n_matches_the_decoders_best_of_n(gpt_target):
    result = best_of_n(gpt_target, PROMPTS, verifier_reward(_a_count), 4, max_new_tokens=6,
                       seed=3)
    assert result.rewards.shape == (2, 4)
    assert result.kl_nats == pytest.approx(math.log(4) - 3 / 4)
    tokenizer = gpt_target.tokenizer
    for j, prompt in enumerate(PROMPTS):
        decoded = best_of_n_batch(gpt_target, [tokenizer.encode(prompt)], 4,
                                  text_scorer(lambda text: text.count("a")), max_new_tokens=6,
                                  seeds=[3 + j * 4], stop_ids=[tokenizer.boundary_id])[0]
        assert list(result.best[j].ids) == decoded.ids
    # the best of the first n draws: n = 1 is the first draw, rewards never fall with n
    assert result.at(1) == tuple(row[0] for row in result.draws)
    rewards = [result.best_rewards(n) for n in (1, 2, 4)]
    assert np.all(rewards[0] <= rewards[1]) and np.all(rewards[1] <= rewards[2])
    assert result.best_rewards().tolist() == result.rewards.max(axis=1).tolist()


def test_best_of_n_bad_input(gpt_target):
    reward = verifier_reward(_a_count)
    with pytest.raises(LmbenchError, match="integer n >= 1"):
        best_of_n(gpt_target, PROMPTS, reward, 0, max_new_tokens=4)
    with pytest.raises(LmbenchError, match="at least one prompt"):
        best_of_n(gpt_target, [], reward, 2, max_new_tokens=4)
    with pytest.raises(LmbenchError, match="returned 1 rewards for 4"):
        best_of_n(gpt_target, PROMPTS, lambda cs: [0.0], 2, max_new_tokens=4)
    result = best_of_n(gpt_target, PROMPTS[:1], reward, 2, max_new_tokens=2)
    with pytest.raises(LmbenchError, match=r"n must be an integer in \[1, 2\]"):
        result.at(3)


def test_completions_are_grouped_by_prompt_and_seeded(gpt_target):
    completions = sample_completions(gpt_target, ["she ", "the cat ", "she "], 2, 5, seed=7)
    assert [c.prompt for c in completions] == ["she ", "she ", "the cat ", "the cat ", "she ",
                                               "she "]
    again = sample_completions(gpt_target, ["she "], 2, 5, seed=7)
    assert [c.ids for c in again] == [c.ids for c in completions[:2]]
    assert all(c.text == gpt_target.tokenizer.decode(list(c.ids)) for c in completions)
    boundary = gpt_target.tokenizer.boundary_id
    assert all(c.finished == (c.ids[-1] == boundary) for c in completions)


def test_measure_gives_zero_kl_for_the_reference_itself(gpt_target):
    other = copy.deepcopy(gpt_target)
    result = measure(gpt_target, PROMPTS, {"a": verifier_reward(_a_count)}, other,
                     group_size=3, max_new_tokens=5)
    assert result.kl_nats == pytest.approx(0.0, abs=1e-6)
    assert len(result.completions) == 6 and result.mean_length > 0
    assert result.rewards["a"] == pytest.approx(
        sum(c.text.count("a") for c in result.completions) / 6)
    with torch.no_grad():
        for p in other.network().parameters():
            p.mul_(0.5)
    assert measure(gpt_target, PROMPTS, {}, other, group_size=3,
                   max_new_tokens=5).kl_nats > 0.01
