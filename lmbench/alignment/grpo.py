"""Group relative policy optimisation (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of
Mathematical Reasoning in Open Language Models", section 4.1, eq. 3).

GRPO drops PPO's value network: each prompt's G >= 2 completions are scored, and completion i's
advantage is its reward relative to its group, A_i = (r_i - mean(r)) / (std(r) + 1e-4)
(``scale_rewards = False``: r_i - mean(r), Liu et al. 2025's Dr. GRPO correction), the same at
every token. The loss (``losses.grpo_loss``) is PPO's clipped surrogate averaged over each
completion's tokens and then over completions, plus ``kl_coef`` times the k3 estimate of
KL(pi || pi_ref) per token (``kl_coef = 0``: without the KL term, as DAPO and Dr. GRPO run it).
The rollout, guard, log and checkpoints are ``lmbench.alignment.loop``'s; with one epoch and
one minibatch the ratio is 1 and the loss is the plain policy gradient of eq. 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from lmbench.alignment.loop import (
    Optimise,
    PolicyOptimisationConfig,
    RolloutScores,
    minibatches,
    resolve_reference,
    run,
)
from lmbench.alignment.losses import grpo_advantages, grpo_loss
from lmbench.alignment.rollout import RewardFunction, policy_logprobs
from lmbench.core.device import autocast
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.training.trainer import TrainLog


@dataclass(frozen=True)
class GRPOConfig(PolicyOptimisationConfig):
    group_size: int = 8  # G completions per prompt; >= 2
    kl_coef: float = 0.04  # beta of eq. 3 (Shao et al. use 0.04); 0: no KL term
    scale_rewards: bool = True  # divide by the group's std (False: Dr. GRPO)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise LmbenchError(f"GRPOConfig.group_size must be >= 2 (a group-relative advantage "
                               f"needs two completions of a prompt), got {self.group_size}")


def train_grpo(policy: LanguageModel, prompts: Sequence[str], reward: RewardFunction,
               config: GRPOConfig = GRPOConfig(), *, reference: LanguageModel | None = None,
               checkpoint_dir=None) -> TrainLog:
    """Train ``policy`` (a fitted ``Trainable``, in place) by GRPO on ``prompts``.

    Args:
        policy: the model to optimise (a PEFT-adapted one trains its adapter only).
        prompts: prompt texts, read in order and cycled, ``config.prompts_per_step`` a step.
        reward: ``Sequence[Completion] -> Sequence[float]`` (``lmbench.alignment.rollout``).
        config: the settings (``GRPOConfig``).
        reference: the frozen pi_ref of the KL term and the KL metric; None: a frozen copy of
            ``policy`` taken now.
        checkpoint_dir: where ``policy.npz`` and ``log.json`` are written (``loop``).

    Returns:
        The log: per step reward, kl_nats, entropy_nats, and ``advantage_abs`` (mean |A|) and
        ``zero_std_groups`` (the fraction of groups whose rewards are all equal: no signal).
    """
    reference = resolve_reference(policy, reference)
    G = config.group_size

    def update(scores: RolloutScores, optimise: Optimise) -> tuple[float, dict[str, float]]:
        rewards = scores.rollout.rewards
        advantages = grpo_advantages(rewards, G, config.scale_rewards).to(scores.mask.device)
        grouped = rewards.view(-1, G)
        flat = (grouped == grouped[:, :1]).all(dim=1).float().mean()
        batch = scores.rollout.batch.to(scores.mask.device)
        device = scores.mask.device
        total, count = 0.0, 0
        for _ in range(config.epochs):
            for rows in minibatches(len(rewards), config.minibatch_size):
                part = replace(batch, input_ids=batch.input_ids[rows],
                               target_ids=batch.target_ids[rows], loss_mask=batch.loss_mask[rows])
                with autocast(device, config.bf16):
                    logprobs, _ = policy_logprobs(policy, part)
                loss = grpo_loss(logprobs, scores.old_logprobs[rows], advantages[rows],
                                 part.loss_mask, config.clip_range, config.kl_coef,
                                 scores.ref_logprobs[rows])
                optimise(loss)
                total, count = total + loss.item(), count + 1
        return total / count, {"advantage_abs": float(advantages.abs().mean()),
                               "zero_std_groups": float(flat)}

    return run(policy, prompts, reward, config, reference, update, {}, "grpo", checkpoint_dir)
