"""Rollouts: G sampled completions per prompt, their rewards and the batch that scores them.

A policy-gradient step (PPO, Schulman et al. 2017; GRPO, Shao et al. 2024) samples completions
y ~ pi(. | x) of prompts x, scores them with a reward r(x, y) and re-reads them with gradients.
Completions are drawn by ``lmbench.inference.sampling.sample_batch`` from the policy's own
distribution (no temperature or truncation: the log-probabilities, ratios and KL estimates are
of the distribution sampled), completion k of prompt j with seed ``seed + j G + k``; a
completion ends at the tokenizer's boundary id (as responses of ``lmbench.data.examples`` do)
or after ``max_new_tokens``.

A reward function maps ``Sequence[Completion] -> Sequence[float]`` (one finite reward each): a
verifier of the text (``verifier_reward``) or a reward model
(``lmbench.alignment.reward.RewardModel.reward_function``, which checks the tokenizers meet).
The rollout's ``ExampleBatch`` is the one ``lmbench.training.batching.collate`` builds for SFT:
inputs = boundary + prompt + completion (shifted), the loss mask true at the completion's
tokens, so ``policy_logprobs`` gives log pi(y_t | x, y_<t) at exactly the positions a loss sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.inference.sampling import sample_batch
from lmbench.training.batching import IGNORE_INDEX, ExampleBatch, TokenizedExample, collate


@dataclass(frozen=True)
class Completion:
    """One sampled completion of a prompt."""

    prompt: str
    prompt_ids: tuple[int, ...]
    ids: tuple[int, ...]  # the new ids (ending with the boundary id when ``finished``)
    text: str  # tokenizer.decode(ids)
    finished: bool  # ended at the boundary id rather than at max_new_tokens


RewardFunction = Callable[[Sequence[Completion]], Sequence[float]]


def verifier_reward(check: Callable[[str, str], float]) -> RewardFunction:
    """A reward function from ``check(prompt, completion_text) -> reward`` (an exact-match
    verifier, a sentiment classifier of the text, ...)."""
    return lambda completions: [float(check(c.prompt, c.text)) for c in completions]


@dataclass(frozen=True)
class Rollout:
    """N = P G completions (grouped by prompt, G consecutive ones each) and their rewards."""

    completions: tuple[Completion, ...]
    batch: ExampleBatch  # (N, T) on the CPU; loss_mask at the completions' tokens
    rewards: torch.Tensor  # (N,) float32
    group_size: int

    @property
    def mask(self) -> torch.Tensor:
        """(N, T) bool: the completions' target positions."""
        return self.batch.loss_mask


def sample_completions(policy: LanguageModel, prompts: Sequence[str], group_size: int,
                       max_new_tokens: int, seed: int = 0) -> list[Completion]:
    """``group_size`` completions of each prompt (module docstring), prompt by prompt.

    Args:
        policy: any ``LanguageModel``.
        prompts: the prompts' text.
        group_size: completions per prompt (G).
        max_new_tokens: the longest completion.
        seed: completion k of prompt j is drawn with seed ``seed + j * group_size + k``.

    Returns:
        ``len(prompts) * group_size`` completions, prompt j's at ``j G .. j G + G - 1``.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise LmbenchError(f"group_size must be an integer >= 1, got {group_size!r}")
    if max_new_tokens < 1:
        raise LmbenchError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tokenizer = policy.tokenizer
    encoded = [tuple(tokenizer.encode(prompt)) for prompt in prompts]
    window = policy.capabilities.max_window
    for prompt, ids in zip(prompts, encoded):
        if window is not None and 1 + len(ids) + max_new_tokens > window:
            raise LmbenchError(f"prompt {prompt[:30]!r}: {len(ids)} tokens + max_new_tokens "
                               f"{max_new_tokens} + 1 exceed the policy's window of {window}")
    by_length: dict[int, list[int]] = {}
    for j, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(j)
    results: list[Completion | None] = [None] * (len(prompts) * group_size)
    boundary = tokenizer.boundary_id
    for indices in by_length.values():  # sample_batch reads prompts of one length together
        rows = [(j, k) for j in indices for k in range(group_size)]
        drawn = sample_batch(policy, [encoded[j] for j, _ in rows], max_new_tokens,
                             seeds=[seed + j * group_size + k for j, k in rows],
                             stop_ids=[boundary])
        for (j, k), sample in zip(rows, drawn):
            results[j * group_size + k] = Completion(
                prompts[j], encoded[j], tuple(sample.ids), sample.text,
                bool(sample.ids) and sample.ids[-1] == boundary)
    return results


def completion_batch(policy: LanguageModel, completions: Sequence[Completion]) -> ExampleBatch:
    """The (N, T) ``ExampleBatch`` of boundary + prompt + completion, masked at the completion."""
    rows = [TokenizedExample(c.prompt_ids, c.ids) for c in completions]
    return collate(rows, policy.tokenizer.boundary_id)


def score(completions: Sequence[Completion], reward: RewardFunction) -> torch.Tensor:
    """(N,) float32 rewards; a one-line error unless ``reward`` gives one finite float each."""
    values = [float(v) for v in reward(completions)]
    if len(values) != len(completions):
        raise LmbenchError(f"the reward function returned {len(values)} rewards for "
                           f"{len(completions)} completions")
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        raise LmbenchError(f"the reward function returned {values[bad]} for completion {bad} "
                           f"({completions[bad].text[:30]!r}); rewards must be finite")
    return torch.tensor(values, dtype=torch.float32)


def rollout(policy: LanguageModel, prompts: Sequence[str], reward: RewardFunction,
            group_size: int, max_new_tokens: int, seed: int = 0) -> Rollout:
    """Sample ``group_size`` completions of each prompt and score them (module docstring)."""
    completions = sample_completions(policy, prompts, group_size, max_new_tokens, seed)
    return Rollout(tuple(completions), completion_batch(policy, completions),
                   score(completions, reward), group_size)


def target_logprobs(logits: torch.Tensor, batch: ExampleBatch) -> torch.Tensor:
    """(B, T, V) logits -> (B, T) float32 log-probabilities of the batch's masked targets (0
    outside the loss mask), keeping the graph."""
    targets = batch.masked_targets().to(logits.device)  # (B, T)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(targets != IGNORE_INDEX, picked, 0.0)


def policy_logprobs(policy: Trainable, batch: ExampleBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi of the batch's masked targets with the autograd graph, and the logits.

    Returns:
        (B, T) float32 log-probabilities (0 outside the loss mask) and the (B, T, V) logits,
        both on the policy's device.
    """
    logits, _ = policy.forward_logits(batch.input_ids)  # (B, T, V)
    return target_logprobs(logits, batch), logits
