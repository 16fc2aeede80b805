"""Best-of-N sampling against a reward (Nakano et al. 2021; Stiennon et al. 2020; Gao et al.
2022, "Scaling Laws for Reward Model Overoptimization", section 2.3).

N completions of each prompt are drawn from the policy (``lmbench.alignment.rollout``: prompt j's
draws use seeds ``seed + j N .. seed + j N + N - 1``, the draws ``lmbench.inference.decoding.
best_of_n_batch`` makes with ``seeds[j] = seed + j N``) and scored by the reward function in one
call; the best of each prompt (the earliest draw among equals) is kept. No weights change, and
the KL of the best-of-N distribution to the policy is known analytically,
KL = log N - (N - 1) / N nats (``losses.best_of_n_kl``), which makes it the reference point of
Gao et al.'s KL frontier. ``BestOfN.at(n)`` is the best of the first n <= N draws: one sampling
run gives the whole curve n = 1, 2, 4, ..., N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmbench.alignment.losses import best_of_n_kl
from lmbench.alignment.rollout import Completion, RewardFunction, sample_completions, score
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.core.limits import MAX_BEST_OF, check_at_most


@dataclass(frozen=True)
class BestOfN:
    """All N draws of each of P prompts and their rewards."""

    draws: tuple[tuple[Completion, ...], ...]  # (P, N)
    rewards: np.ndarray  # (P, N) float

    @property
    def n(self) -> int:
        return self.rewards.shape[1]

    @property
    def best(self) -> tuple[Completion, ...]:
        """The highest-reward draw of each prompt (the earliest among equals)."""
        return self.at(self.n)

    @property
    def kl_nats(self) -> float:
        """KL(best-of-N || policy) = log N - (N - 1) / N."""
        return best_of_n_kl(self.n)

    def at(self, n: int) -> tuple[Completion, ...]:
        """The best of the first ``n`` draws of each prompt (1 <= n <= N)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.n:
            raise LmbenchError(f"best-of-n: n must be an integer in [1, {self.n}], got {n!r}")
        picked = self.rewards[:, :n].argmax(axis=1)  # (P,) first maximum
        return tuple(row[i] for row, i in zip(self.draws, picked.tolist()))

    def best_rewards(self, n: int | None = None) -> np.ndarray:
        """(P,) reward of the best of the first ``n`` draws (default N)."""
        n = self.n if n is None else n
        self.at(n)  # the same checks
        return self.rewards[:, :n].max(axis=1)


def best_of_n(policy: LanguageModel, prompts: Sequence[str], reward: RewardFunction, n: int,
              *, max_new_tokens: int, seed: int = 0) -> BestOfN:
    """Draw ``n`` completions of each prompt and score them (module docstring).

    Args:
        policy: any ``LanguageModel`` (no weights change).
        prompts: the prompts' text.
        reward: ``Sequence[Completion] -> Sequence[float]``.
        n: draws per prompt (N >= 1, at most ``lmbench.core.limits.MAX_BEST_OF``).
        max_new_tokens: the longest completion.
        seed: the first draw's seed (module docstring).

    Returns:
        The draws and rewards; ``.best``, ``.at(k)``, ``.kl_nats``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LmbenchError(f"best-of-N needs an integer n >= 1, got {n!r}")
    check_at_most(n, MAX_BEST_OF, "best-of-N n")
    if not prompts:
        raise LmbenchError("best-of-N needs at least one prompt")
    completions = sample_completions(policy, prompts, n, max_new_tokens, seed)
    rewards = score(completions, reward).double().numpy().reshape(len(prompts), n)
    draws = tuple(tuple(completions[j * n:(j + 1) * n]) for j in range(len(prompts)))
    return BestOfN(draws, rewards)
