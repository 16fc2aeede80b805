"""GRPO on a toy verifier raises the mean reward; the loop's log, guard and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lmbench
from lmbench.alignment.grpo import GRPOConfig, train_grpo
from lmbench.alignment.loop import TrainingDiverged
from lmbench.alignment.reference import frozen_copy
from lmbench.alignment.rollout import rollout, verifier_reward
from lmbench.core.errors import LmbenchError

PROMPTS = ["the cat ", "a dog ", "she ", "my friend "]


def _share_of_a(prompt: str, text: str) -> float:
    """The toy verifier: the fraction of the completion's first 4 characters that are 'a'."""
    return text[:4].count("a") / 4


REWARD = verifier_reward(_share_of_a)


def _mean_reward(policy, seed: int) -> float:
    return float(rollout(policy, PROMPTS, REWARD, 8, 4, seed).rewards.mean())


def test_grpo_raises_the_mean_reward_of_a_verifier(policy):
    before = _mean_reward(policy, 10_000)
    config = GRPOConfig(steps=5, prompts_per_step=4, group_size=4, max_new_tokens=4,
                        learning_rate=2e-2, kl_coef=0.0, seed=1)
    log = train_grpo(policy, PROMPTS, REWARD, config)
    after = _mean_reward(policy, 10_000)
    assert after > before + 0.3, (before, after)  # about 0.1 -> 0.95
    assert log.steps == 5 and log.stopped_by == "max_steps"
    first = log.curve[0]["metrics"]
    assert first["kl_nats"] == pytest.approx(0.0, abs=1e-4)  # pi = pi_ref at step 0
    assert {"reward", "kl_nats", "entropy_nats", "advantage_abs",
            "zero_std_groups"} <= set(first)
    assert log.curve[-1]["metrics"]["kl_nats"] > 0.01


def test_grpo_with_the_kl_term_and_checkpoints(policy, tmp_path):
    config = GRPOConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=3,
                        learning_rate=1e-3, kl_coef=0.1, epochs=2, minibatch_size=2,
                        checkpoint_every=1)
    log = train_grpo(policy, PROMPTS, REWARD, config, checkpoint_dir=tmp_path / "run")
    assert log.steps == 2
    saved = lmbench.load_model(tmp_path / "run" / "policy.npz")
    assert saved.tokenizer.token_strings() == policy.tokenizer.token_strings()
    assert json.loads((tmp_path / "run" / "log.json").read_text())["steps"] == 2


def test_grpo_bad_input(policy, tiny_corpus):
    with pytest.raises(LmbenchError, match="group_size must be >= 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(LmbenchError, match="kl_coef must be >= 0"):
        GRPOConfig(kl_coef=-0.1)
    with pytest.raises(LmbenchError, match="kl_coef must be >= 0"):
        GRPOConfig(kl_coef=math.nan)
    unfrozen = frozen_copy(policy)
    unfrozen.network().requires_grad_(True)
    with pytest.raises(LmbenchError, match="not frozen"):
        train_grpo(policy, PROMPTS, REWARD, GRPOConfig(steps=1), reference=unfrozen)
    word = lmbench.build_model("ngram", order=2, tokenizer="word").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="tokenizer differs"):
        train_grpo(policy, PROMPTS, REWARD, GRPOConfig(steps=1), reference=word)
    with pytest.raises(LmbenchError, match="Trainable"):
        train_grpo(word, PROMPTS, REWARD, GRPOConfig(steps=1))
    with pytest.raises(LmbenchError, match="rewards must be finite"):
        train_grpo(policy, PROMPTS, lambda cs: [math.nan] * len(cs),
                   GRPOConfig(steps=1, prompts_per_step=1, group_size=2, max_new_tokens=2))
    with pytest.raises(LmbenchError, match="exceed the policy's window"):
        train_grpo(policy, PROMPTS, REWARD, GRPOConfig(steps=1, max_new_tokens=64))


def test_the_kl_guard_stops_and_keeps_the_last_good_weights(policy, tmp_path):
    """A reference far from the policy: the KL of the first rollout already exceeds the bound."""
    reference = frozen_copy(policy)
    with torch.no_grad():
        for p in reference.network().parameters():
            p.add_(torch.randn_like(p) * 2)
    before = {k: v.clone() for k, v in policy.network().state_dict().items()}
    config = GRPOConfig(steps=3, prompts_per_step=2, group_size=2, max_new_tokens=4,
                        learning_rate=1e-2, max_kl_nats=0.5)
    with pytest.raises(TrainingDiverged, match="grpo diverged at step 0: KL") as caught:
        train_grpo(policy, PROMPTS, REWARD, config, reference=reference,
                   checkpoint_dir=tmp_path / "run")
    assert caught.value.log.stopped_by == "diverged"
    after = policy.network().state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "run" / "policy.npz").is_file()


def test_a_nan_loss_stops_naming_the_step_and_restores_the_weights(policy):
    """A reward that turns the advantages into NaN on the second step (finite rewards, but a
    huge spread overflows float32 in the loss)."""
    calls = []

    def reward(completions):
        calls.append(1)
        if len(calls) < 2:
            return [_share_of_a(c.prompt, c.text) for c in completions]
        return [3e38 * (-1) ** i for i in range(len(completions))]

    config = GRPOConfig(steps=3, prompts_per_step=2, group_size=2, max_new_tokens=4,
                        learning_rate=1e-2, kl_coef=0.0, scale_rewards=False)
    with pytest.raises(TrainingDiverged, match="grpo diverged at step 1: the loss is") as caught:
        train_grpo(policy, PROMPTS, reward, config)
    assert caught.value.log.steps == 1
