"""A policy measured on fresh samples: mean rewards and KL(pi || pi_ref), the two axes of Gao et
al. 2022's over-optimisation frontier (gold and proxy reward against sqrt(KL)).

``measure`` samples ``group_size`` completions of each prompt from the policy
(``lmbench.alignment.rollout.sample_completions``), scores them with every reward function given
(the proxy reward model, the gold classifier, a verifier), and estimates

    KL(pi || pi_ref) ~ mean over completions of sum_t [log pi(y_t) - log pi_ref(y_t)]

(``losses.monte_carlo_kl``) from both models' ``token_logprobs`` (the interface: any family,
no gradients), in nats per completion, with its standard error. Best-of-N is measured with its
analytic KL instead (``best_of_n.BestOfN.kl_nats``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lmbench.alignment.reference import check_same_tokenizer
from lmbench.alignment.rollout import (
    Completion,
    RewardFunction,
    completion_batch,
    sample_completions,
    score,
)
from lmbench.core.interface import LanguageModel


@dataclass(frozen=True)
class Measurement:
    """Mean rewards and the KL of a policy's samples to the reference."""

    rewards: dict[str, float]  # name -> mean reward over the completions
    kl_nats: float  # Monte-Carlo KL(pi || pi_ref) per completion
    kl_stderr_nats: float  # its standard error over completions
    mean_length: float  # new tokens per completion
    completions: tuple[Completion, ...]


def sequence_log_ratios(policy: LanguageModel, reference: LanguageModel,
                        completions: Sequence[Completion]) -> torch.Tensor:
    """(N,) float64 sum_t log pi(y_t) - log pi_ref(y_t) of each completion (no gradients)."""
    check_same_tokenizer(reference, policy, "reference model", "policy")
    batch = completion_batch(policy, completions)
    targets = batch.masked_targets()
    mine, _ = policy.token_logprobs(batch.input_ids, targets)  # (N, T)
    theirs, _ = reference.token_logprobs(batch.input_ids, targets)
    return (mine.double().cpu() - theirs.double().cpu()).sum(-1)


def measure(policy: LanguageModel, prompts: Sequence[str],
            rewards: Mapping[str, RewardFunction], reference: LanguageModel, *,
            group_size: int = 1, max_new_tokens: int = 32, seed: int = 0) -> Measurement:
    """Sample, score and estimate the KL (module docstring).

    Args:
        policy: any ``LanguageModel`` sharing the reference's tokenizer.
        prompts: the prompts' text.
        rewards: named reward functions (``{"proxy": rm.reward_function(policy), "gold": ...}``).
        reference: pi_ref (usually the SFT model).
        group_size: completions per prompt.
        max_new_tokens: the longest completion.
        seed: the sampling seed (``sample_completions``).
    """
    completions = sample_completions(policy, prompts, group_size, max_new_tokens, seed)
    ratios = sequence_log_ratios(policy, reference, completions)  # (N,)
    n = ratios.numel()
    stderr = float(ratios.std() / math.sqrt(n)) if n > 1 else float("nan")
    means = {name: float(score(completions, fn).double().mean())
             for name, fn in rewards.items()}
    length = sum(len(c.ids) for c in completions) / max(1, len(completions))
    return Measurement(means, float(ratios.mean()), stderr, length, tuple(completions))
