"""What every stage of a post-training pipeline is measured by, so reward hacking shows.

For a policy pi, a reference pi_ref (the stage's starting model) and prompts x_i, one
continuation y_i ~ pi(. | x_i) each (ancestral sampling, so the sampled log-probabilities are
pi's own):

- gold score: mean P_gold(positive | y_i); gold-positive rate: the fraction with P > 0.5;
- proxy reward: the mean of a reward function (a reward model, the verifier) when given;
- KL(pi || pi_ref) ~ 1/n sum_i sum_t [ln pi(y_it | .) - ln pi_ref(y_it | .)] (Monte Carlo,
  Ziegler et al. 2019 section 2; lmbench's own log-probabilities of both models);
- reference perplexity: exp(-sum_it ln pi_ref(y_it) / sum_i |y_i|) (the "judge perplexity" of
  the samples under the model the stage started from: it rises as a policy leaves fluent text);
- distinct-n (Li et al. 2016) of the continuations' token ids.

Best-of-N (``best_of_n_metrics``) draws N continuations of each prompt from pi, keeps the one
the proxy reward ranks highest, and reports KL by the analytic bound ln N - (N - 1)/N (Stiennon
et al. 2020; Gao et al. 2022 section 2.3).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.evaluation.generation_metrics import distinct_n
from lmbench.inference.sampling import SamplingConfig, sample_batch
from lmbench.training.batching import IGNORE_INDEX

RewardFunction = Callable[[Sequence[str], Sequence[str]], Sequence[float]]  # (prompts, texts)


@dataclass(frozen=True)
class Continuations:
    """Sampled continuations of prompts with the policy's log-probabilities."""

    prompts: tuple[str, ...]
    prompt_ids: tuple[tuple[int, ...], ...]
    ids: tuple[tuple[int, ...], ...]
    logprobs: tuple[tuple[float, ...], ...]  # ln pi of each sampled token
    texts: tuple[str, ...]


def sample_continuations(model: LanguageModel, prompts: Sequence[str], *, max_new_tokens: int,
                         n_per_prompt: int = 1, seed: int = 0,
                         sampler: SamplingConfig | None = None) -> Continuations:
    """``n_per_prompt`` continuations of every prompt, rows ordered prompt by prompt;
    continuation j of prompt i has the seed ``seed + 1000 i + j``.

    Args:
        model: the policy.
        prompts: prompt texts (the model's tokenizer encodes them).
        max_new_tokens: tokens per continuation.
        n_per_prompt: continuations per prompt.
        seed: the base seed.
        sampler: decoding settings (None: ancestral, so ``logprobs`` are the policy's).

    Returns:
        The continuations.
    """
    if n_per_prompt < 1:
        raise LmbenchError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    encoded = [tuple(model.tokenizer.encode(p)) for p in prompts]
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        for j in range(n_per_prompt):
            groups[len(ids)].append((i, j))
    drawn: dict[tuple[int, int], object] = {}
    for rows in groups.values():
        samples = sample_batch(model, [encoded[i] for i, _ in rows], max_new_tokens,
                               sampler=sampler, seeds=[seed + 1000 * i + j for i, j in rows])
        drawn.update(zip(rows, samples))
    order = [(i, j) for i in range(len(prompts)) for j in range(n_per_prompt)]
    return Continuations(tuple(prompts[i] for i, _ in order), tuple(encoded[i] for i, _ in order),
                         tuple(tuple(drawn[k].ids) for k in order),
                         tuple(tuple(drawn[k].logprobs) for k in order),
                         tuple(drawn[k].text for k in order))


def continuation_logprobs(model: LanguageModel, prompt_ids: Sequence[Sequence[int]],
                          ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """ln p(y_t | boundary, x, y_<t) of every continuation y after its prompt x under
    ``model``, in one batch (rows padded on the right).

    Args:
        model: any ``LanguageModel`` sharing the tokenizer of the model that drew ``ids``.
        prompt_ids: each row's prompt ids.
        ids: each row's continuation ids.

    Returns:
        One (|y|,) float64 array per row.
    """
    boundary = model.tokenizer.boundary_id
    rows = [[boundary, *p, *y] for p, y in zip(prompt_ids, ids)]
    T = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), T), boundary, dtype=torch.long)  # (B, T)
    targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for b, (row, prompt) in enumerate(zip(rows, prompt_ids)):
        inputs[b, :len(row) - 1] = torch.tensor(row[:-1])
        targets[b, len(prompt):len(row) - 1] = torch.tensor(row[len(prompt) + 1:])
    logprobs, _ = model.token_logprobs(inputs, targets)  # (B, T)
    logprobs = logprobs.double().cpu().numpy()
    return [logprobs[b, len(p):len(p) + len(y)] for b, (p, y) in enumerate(zip(prompt_ids, ids))]


@dataclass(frozen=True)
class PolicyMetrics:
    """A stage's measurements on held-out prompts (module docstring)."""

    n_samples: int
    gold_mean: float | None  # mean P_gold(positive); None without a gold judge
    gold_positive_rate: float | None
    proxy_reward_mean: float | None
    kl_nats: float  # KL(pi || pi_ref) per continuation; for best-of-N the analytic bound
    reference_perplexity: float
    distinct_1: float
    distinct_2: float

    @property
    def sqrt_kl(self) -> float:
        return math.sqrt(max(0.0, self.kl_nats))

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "gold_mean": self.gold_mean,
                "gold_positive_rate": self.gold_positive_rate,
                "proxy_reward_mean": self.proxy_reward_mean, "kl_nats": self.kl_nats,
                "sqrt_kl": self.sqrt_kl, "reference_perplexity": self.reference_perplexity,
                "distinct_1": self.distinct_1, "distinct_2": self.distinct_2}


def _metrics(chosen: Continuations, reference: LanguageModel, kl_nats: float | None,
             gold: Callable[[Sequence[str]], np.ndarray] | None,
             reward: RewardFunction | None) -> PolicyMetrics:
    ref = continuation_logprobs(reference, chosen.prompt_ids, chosen.ids)
    n_tokens = sum(len(r) for r in ref)
    if kl_nats is None:
        kl_nats = float(np.mean([sum(p) - r.sum() for p, r in zip(chosen.logprobs, ref)]))
    gold_scores = None if gold is None else np.asarray(gold(chosen.texts))
    rewards = None if reward is None else np.asarray(reward(chosen.prompts, chosen.texts))
    return PolicyMetrics(
        len(chosen.texts),
        None if gold_scores is None else float(gold_scores.mean()),
        None if gold_scores is None else float((gold_scores > 0.5).mean()),
        None if rewards is None else float(rewards.mean()), float(kl_nats),
        float(math.exp(-sum(r.sum() for r in ref) / max(1, n_tokens))),
        distinct_n([list(i) for i in chosen.ids], 1), distinct_n([list(i) for i in chosen.ids], 2))


def policy_metrics(policy: LanguageModel, reference: LanguageModel, prompts: Sequence[str], *,
                   max_new_tokens: int, gold: Callable[[Sequence[str]], np.ndarray] | None = None,
                   reward: RewardFunction | None = None, seed: int = 0
                   ) -> tuple[PolicyMetrics, Continuations]:
    """Sample one continuation per prompt from ``policy`` and measure it (module docstring).

    Args:
        policy: the stage's model.
        reference: pi_ref, sharing the policy's tokenizer.
        prompts: held-out prompts.
        max_new_tokens: tokens per continuation.
        gold: texts -> (N,) gold scores (``GoldJudge.positive_probability``).
        reward: (prompts, texts) -> rewards (the proxy).
        seed: the sampling seed.

    Returns:
        The metrics and the continuations.
    """
    drawn = sample_continuations(policy, prompts, max_new_tokens=max_new_tokens, seed=seed)
    return _metrics(drawn, reference, None, gold, reward), drawn


def best_of_n_kl(n: int) -> float:
    """The analytic KL(best-of-n || pi) = ln n - (n - 1)/n (module docstring)."""
    return math.log(n) - (n - 1) / n


def best_of_n_metrics(policy: LanguageModel, prompts: Sequence[str], n: int | Sequence[int],
                      reward: RewardFunction, *, max_new_tokens: int,
                      gold: Callable[[Sequence[str]], np.ndarray] | None = None, seed: int = 0
                      ) -> list[tuple[PolicyMetrics, Continuations]]:
    """Best-of-n against ``reward`` (module docstring) for each n of ``n``, the reference being
    ``policy``: max(n) continuations of each prompt are drawn once, and best-of-k reads the
    first k of them (the same draws best-of-k alone would make, by the seeds' layout).

    Returns:
        For each n, the metrics of the chosen continuations (KL: the analytic bound) and those.
    """
    sizes = [n] if isinstance(n, int) else list(n)
    if not sizes or min(sizes) < 1:
        raise LmbenchError(f"best-of-N needs sizes n >= 1, got {n}")
    N = max(sizes)
    drawn = sample_continuations(policy, prompts, max_new_tokens=max_new_tokens,
                                 n_per_prompt=N, seed=seed)
    scores = np.asarray(reward(drawn.prompts, drawn.texts), dtype=float).reshape(len(prompts), N)
    results = []
    for k in sizes:
        picked = [i * N + int(np.argmax(scores[i, :k])) for i in range(len(prompts))]
        chosen = Continuations(*(tuple(field[j] for j in picked) for field in (
            drawn.prompts, drawn.prompt_ids, drawn.ids, drawn.logprobs, drawn.texts)))
        results.append((_metrics(chosen, policy, best_of_n_kl(k), gold, reward), chosen))
    return results
