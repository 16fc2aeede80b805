"""PPO runs on a verifier: KL 0 at step 0, a value head trained, the reward rises."""

from __future__ import annotations

import pytest

from lmbench.alignment.ppo import PPOConfig, train_ppo
from lmbench.alignment.rollout import verifier_reward
from lmbench.core.errors import LmbenchError

PROMPTS = ["the cat ", "a dog ", "she ", "my friend "]
REWARD = verifier_reward(lambda prompt, text: text[:4].count("a") / 4)


def test_ppo_runs_and_kl_is_zero_at_step_0(policy, tmp_path):
    config = PPOConfig(steps=4, prompts_per_step=4, group_size=2, max_new_tokens=4, epochs=2,
                       minibatch_size=4, learning_rate=1e-2, kl_coef=0.05, seed=1)
    log = train_ppo(policy, PROMPTS, REWARD, config, checkpoint_dir=tmp_path / "run")
    assert log.steps == 4
    first, last = log.curve[0]["metrics"], log.curve[-1]["metrics"]
    assert first["kl_nats"] == pytest.approx(0.0, abs=1e-4)
    assert {"reward", "kl_nats", "entropy_nats", "policy_loss", "value_loss", "clip_fraction",
            "approx_kl"} <= set(first)
    assert last["kl_nats"] > 0.0
    assert last["reward"] > first["reward"]
    assert (tmp_path / "run" / "heads.npz").is_file()


def test_ppo_bad_input():
    with pytest.raises(LmbenchError, match="kl_coef must be >= 0"):
        PPOConfig(kl_coef=-1.0)
    with pytest.raises(LmbenchError, match="lam must be in"):
        PPOConfig(lam=1.5)
    with pytest.raises(LmbenchError, match="steps must be an integer >= 1"):
        PPOConfig(steps=0)
