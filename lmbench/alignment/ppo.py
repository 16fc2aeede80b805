"""Proximal policy optimisation (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms") as used for language models by Ziegler et al. 2019 ("Fine-Tuning Language Models
from Human Preferences") and Ouyang et al. 2022 (InstructGPT).

Per rollout (``lmbench.alignment.loop``): the reward of completion y of prompt x becomes a
per-token reward with a KL penalty to the frozen reference, r_t = -kl_coef (log pi(y_t) -
log pi_ref(y_t)) plus the score r(x, y) at the last token (``losses.kl_shaped_rewards``); a
value head V (a linear layer on the policy's final hidden state, ``ComputesHidden``, trained
with the policy) estimates the return; GAE (Schulman et al. 2016) gives the advantages,
whitened over the rollout's tokens; then ``epochs`` passes of minibatch steps on

    L = L^CLIP(ratio, A) + vf_coef * L^V(V, R)      (eq. 7 and the clipped value loss)

with the ratio to the policy that sampled the rollout. The network stays in eval mode (no
dropout), so the first minibatch's ratio is exactly 1. Metrics per step (besides the loop's):
``policy_loss``, ``value_loss``, ``clip_fraction`` (tokens whose ratio left [1 - eps, 1 + eps])
and ``approx_kl`` (mean (ratio - 1) - log ratio over the last epoch, against the sampler).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from lmbench.alignment.loop import (
    Optimise,
    PolicyOptimisationConfig,
    RolloutScores,
    minibatches,
    resolve_reference,
    run,
)
from lmbench.alignment.losses import gae, kl_shaped_rewards, ppo_policy_loss, ppo_value_loss
from lmbench.alignment.rollout import RewardFunction, target_logprobs
from lmbench.core.device import autocast
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import ComputesHidden, LanguageModel
from lmbench.training.batching import ExampleBatch
from lmbench.training.trainer import TrainLog


@dataclass(frozen=True)
class PPOConfig(PolicyOptimisationConfig):
    epochs: int = 4  # PPO epochs over each rollout
    kl_coef: float = 0.05  # beta of the per-token KL penalty (Ziegler et al. adapt it; fixed here)
    vf_coef: float = 0.1  # weight of the value loss
    clip_range_value: float = 0.2  # the value's clip around its rollout-time estimate
    gamma: float = 1.0  # discount (1: the episode is one short completion)
    lam: float = 0.95  # GAE's lambda
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.vf_coef < float("inf"):
            raise LmbenchError(f"PPOConfig.vf_coef must be >= 0, got {self.vf_coef!r}")
        if not self.clip_range_value > 0:
            raise LmbenchError(f"PPOConfig.clip_range_value must be > 0, got "
                               f"{self.clip_range_value!r}")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise LmbenchError(f"PPOConfig.{name} must be in [0, 1], got "
                                   f"{getattr(self, name)!r}")


def _whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(values - mean) / std over the mask's positions (0 elsewhere)."""
    m = mask.to(values.dtype)
    mean = (values * m).sum() / m.sum().clamp(min=1)
    var = (((values - mean) * m) ** 2).sum() / m.sum().clamp(min=1)
    return (values - mean) * torch.rsqrt(var + 1e-8) * m


def train_ppo(policy: LanguageModel, prompts: Sequence[str], reward: RewardFunction,
              config: PPOConfig = PPOConfig(), *, reference: LanguageModel | None = None,
              checkpoint_dir=None) -> TrainLog:
    """Train ``policy`` (a fitted ``Trainable`` and ``ComputesHidden``, in place) by PPO.

    Args:
        policy: the model to optimise (a PEFT-adapted one trains its adapter and the value head).
        prompts: prompt texts, read in order and cycled, ``config.prompts_per_step`` a step.
        reward: ``Sequence[Completion] -> Sequence[float]`` (a reward model's
            ``reward_function(policy)`` or a verifier).
        config: the settings (``PPOConfig``).
        reference: the frozen pi_ref of the KL penalty; None: a frozen copy of ``policy`` now.
        checkpoint_dir: where ``policy.npz``, ``heads.npz`` (the value head) and ``log.json``
            are written.

    Returns:
        The log (module docstring's metrics, the loop's reward, kl_nats and entropy_nats).
    """
    reference = resolve_reference(policy, reference)
    if not isinstance(policy, ComputesHidden):
        raise LmbenchError(f"ppo's value head reads hidden states; the {policy.name!r} policy "
                           "has none (ComputesHidden); use grpo, which needs no value head")
    device = next(policy.network().parameters()).device
    value_head = nn.Linear(policy.hidden_size, 1).to(device)
    nn.init.zeros_(value_head.weight)
    nn.init.zeros_(value_head.bias)

    def forward(batch: ExampleBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) log pi of the masked targets and (B, T) values, with gradients."""
        with autocast(device, config.bf16):
            hidden, _ = policy.forward_hidden(batch.input_ids)  # (B, T, H)
            logits = policy.logits_from_hidden(hidden)  # (B, T, V)
        return target_logprobs(logits, batch), value_head(hidden.float()).squeeze(-1)

    def update(scores: RolloutScores, optimise: Optimise) -> tuple[float, dict[str, float]]:
        batch = scores.rollout.batch.to(device)
        mask = batch.loss_mask
        with torch.no_grad():
            _, old_values = forward(batch)
            old_values = old_values * mask
            token_rewards = kl_shaped_rewards(scores.rollout.rewards.to(device),
                                              scores.old_logprobs, scores.ref_logprobs, mask,
                                              config.kl_coef)
            advantages, returns = gae(token_rewards, old_values, mask, config.gamma, config.lam)
            if config.whiten_advantages:
                advantages = _whiten(advantages, mask)
        totals = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0}
        count = 0
        for _ in range(config.epochs):
            clipped, approx_kl, n_tokens = 0.0, 0.0, 0.0
            for rows in minibatches(mask.shape[0], config.minibatch_size):
                part = replace(batch, input_ids=batch.input_ids[rows],
                               target_ids=batch.target_ids[rows], loss_mask=mask[rows])
                logprobs, values = forward(part)
                pg = ppo_policy_loss(logprobs, scores.old_logprobs[rows], advantages[rows],
                                     part.loss_mask, config.clip_range)
                vf = ppo_value_loss(values, old_values[rows], returns[rows], part.loss_mask,
                                    config.clip_range_value)
                loss = pg + config.vf_coef * vf
                optimise(loss)
                with torch.no_grad():
                    log_ratio = (logprobs - scores.old_logprobs[rows])[part.loss_mask]
                    clipped += float(((log_ratio.exp() - 1).abs() > config.clip_range).sum())
                    approx_kl += float((log_ratio.exp() - 1 - log_ratio).sum())
                    n_tokens += log_ratio.numel()
                for name, value in (("loss", loss), ("policy_loss", pg), ("value_loss", vf)):
                    totals[name] += value.item()
                count += 1
        metrics = {name: totals[name] / count for name in ("policy_loss", "value_loss")}
        metrics["clip_fraction"] = clipped / max(n_tokens, 1)
        metrics["approx_kl"] = approx_kl / max(n_tokens, 1)
        return totals["loss"] / count, metrics

    return run(policy, prompts, reward, config, reference, update, {"value_head": value_head},
               "ppo", checkpoint_dir)
