"""The alignment losses against values computed by hand from the papers' equations."""

from __future__ import annotations

import math

import pytest
import torch

from lmbench.alignment import losses
from lmbench.core.errors import LmbenchError


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_with_and_without_a_margin():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(math.log(_sigmoid(1.0)) + math.log(_sigmoid(-1.0))) / 2
    assert losses.bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected)
    with_margin = -(math.log(_sigmoid(0.5)) + math.log(_sigmoid(-1.5))) / 2
    assert losses.bradley_terry_loss(chosen, rejected, 0.5).item() == pytest.approx(with_margin)
    per_pair = torch.tensor([0.5, 0.0])
    mixed = -(math.log(_sigmoid(0.5)) + math.log(_sigmoid(-1.0))) / 2
    assert losses.bradley_terry_loss(chosen, rejected, per_pair).item() == pytest.approx(mixed)


def test_dpo_sigmoid_and_label_smoothing():
    chosen, rejected = torch.tensor([1.0, -0.5]), torch.tensor([-1.0, 0.5])  # h = 2, -1
    beta = 0.1
    expected = -(math.log(_sigmoid(0.2)) + math.log(_sigmoid(-0.1))) / 2
    assert losses.dpo_loss(chosen, rejected, beta).item() == pytest.approx(expected)
    eps = 0.2
    smoothed = sum(-(1 - eps) * math.log(_sigmoid(beta * h)) - eps * math.log(_sigmoid(-beta * h))
                   for h in (2.0, -1.0)) / 2
    assert losses.dpo_loss(chosen, rejected, beta, eps).item() == pytest.approx(smoothed)
    # at h = 0 the loss is log 2 whatever beta
    assert losses.dpo_loss(torch.zeros(3), torch.zeros(3), 5.0).item() == pytest.approx(
        math.log(2))


def test_ipo_is_the_squared_distance_to_one_over_two_beta():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])  # h = 1, 0
    beta = 0.25  # target h = 2
    expected = ((1 - 2) ** 2 + (0 - 2) ** 2) / 2
    assert losses.ipo_loss(chosen, rejected, beta).item() == pytest.approx(expected)


def test_ppo_clipped_surrogate_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    advantages = torch.tensor([[1.0, 1.0, -2.0]])
    mask = torch.tensor([[True, True, True]])
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-2.2, -2.2) = -2.2
    expected = -(1.2 + 0.5 - 2.2) / 3
    assert losses.ppo_policy_loss(new, old, advantages, mask, 0.2).item() == pytest.approx(
        expected)
    # masked positions do not count
    masked = torch.tensor([[True, False, False]])
    assert losses.ppo_policy_loss(new, old, advantages, masked, 0.2).item() == pytest.approx(-1.2)


def test_ppo_value_loss_takes_the_worse_of_clipped_and_unclipped():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # pos 0: unclipped (1-0)^2 = 1, clipped 0.2 -> 0.04: max 1; pos 1: both (0-1)^2 = 1
    assert losses.ppo_value_loss(values, old, returns, mask, 0.2).item() == pytest.approx(
        0.5 * (1 + 1) / 2)
    values = torch.tensor([[0.5, 0.0]])
    returns = torch.tensor([[1.0, 0.0]])
    # pos 0: unclipped 0.25, clipped (0.2 - 1)^2 = 0.64: max 0.64
    assert losses.ppo_value_loss(values, old, returns, mask, 0.2).item() == pytest.approx(
        0.5 * 0.64 / 2)


def test_gae_by_hand_and_its_limits():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[True, True, True, False]])  # the last position is padding
    gamma, lam = 0.9, 0.5
    d2 = 1.0 + 0 - 0.1
    d1 = 0.0 + gamma * 0.1 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    advantages, returns = losses.gae(rewards, values, mask, gamma, lam)
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert returns[0, :3].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])
    # lambda = 1, gamma = 1: the advantage is the return-to-go minus the value
    advantages, _ = losses.gae(rewards, values, mask, 1.0, 1.0)
    assert advantages[0, :3].tolist() == pytest.approx([1 - 0.5, 1 - 0.2, 1 - 0.1])


def test_kl_shaped_rewards_put_the_score_on_the_last_token():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    scores = torch.tensor([2.0, -1.0])
    rewards = losses.kl_shaped_rewards(scores, logprobs, ref, mask, 0.1)
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.1, 2.0])
    assert rewards[1].tolist() == pytest.approx([-0.1 - 1.0, 0.0, 0.0])
    with pytest.raises(LmbenchError, match="kl_coef must be >= 0"):
        losses.kl_shaped_rewards(scores, logprobs, ref, mask, -0.1)


def test_grpo_advantages_are_group_relative():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0])
    advantages = losses.grpo_advantages(rewards, 3)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # unbiased
    assert advantages[:3].tolist() == pytest.approx(
        [(2 / 3) / (std + 1e-4), -(1 / 3) / (std + 1e-4), -(1 / 3) / (std + 1e-4)])
    std = math.sqrt(((4 / 3) ** 2 + 2 * (2 / 3) ** 2) / 2)
    assert advantages[3:].tolist() == pytest.approx([-4 / 3 / (std + 1e-4),
                                                     2 / 3 / (std + 1e-4),
                                                     2 / 3 / (std + 1e-4)])
    unscaled = losses.grpo_advantages(rewards, 3, scale=False)
    assert unscaled.tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, -4 / 3, 2 / 3, 2 / 3])
    with pytest.raises(LmbenchError, match="group_size must be >= 2"):
        losses.grpo_advantages(rewards, 1)
    with pytest.raises(LmbenchError, match="do not split"):
        losses.grpo_advantages(rewards, 4)


def test_k3_and_grpo_loss_by_hand():
    logprobs = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    # k3 = r - log r - 1 with r = pi_ref / pi: 0.5 - ln 0.5 - 1, and 0
    k3 = losses.kl_k3(logprobs, ref)
    assert k3[0].tolist() == pytest.approx([0.5 - math.log(0.5) - 1, 0.0])
    mask = torch.tensor([[True, True]])
    advantages = torch.tensor([2.0])
    old = logprobs.clone()  # ratio 1: the surrogate is -A per token
    no_kl = losses.grpo_loss(logprobs, old, advantages, mask, 0.2)
    assert no_kl.item() == pytest.approx(-2.0)
    with_kl = losses.grpo_loss(logprobs, old, advantages, mask, 0.2, 0.5, ref)
    assert with_kl.item() == pytest.approx(-2.0 + 0.5 * (0.5 - math.log(0.5) - 1) / 2)
    # per-sequence mean, then mean over sequences: lengths do not weight the rows
    two = losses.grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1.0, -1.0]),
                           torch.tensor([[True, True, True], [True, False, False]]), 0.2)
    assert two.item() == pytest.approx(0.0)
    with pytest.raises(LmbenchError, match="kl_coef must be >= 0"):
        losses.grpo_loss(logprobs, old, advantages, mask, 0.2, -1.0, ref)
    with pytest.raises(LmbenchError, match="needs the reference"):
        losses.grpo_loss(logprobs, old, advantages, mask, 0.2, 0.1)


def test_monte_carlo_kl_best_of_n_kl_and_entropy():
    logprobs = torch.tensor([[-1.0, -2.0], [-1.0, -5.0]])
    ref = torch.tensor([[-2.0, -2.0], [-1.5, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert losses.monte_carlo_kl(logprobs, ref, mask).item() == pytest.approx((1.0 + 0.5) / 2)
    assert losses.monte_carlo_kl(ref, ref, mask).item() == 0.0
    assert losses.best_of_n_kl(1) == 0.0
    assert losses.best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    with pytest.raises(LmbenchError, match="integer n >= 1"):
        losses.best_of_n_kl(0)
    uniform = torch.zeros(1, 2, 4)
    assert losses.entropy(uniform, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(
        math.log(4))
    peaked = torch.tensor([[[0.0, -1e9], [0.0, 0.0]]])
    assert losses.entropy(peaked, torch.tensor([[True, False]])).item() == pytest.approx(0.0)
