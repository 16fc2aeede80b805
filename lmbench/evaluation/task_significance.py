"""Paired differences of two models' task accuracies: McNemar's exact test and a paired
bootstrap interval.

Two scores with the same fingerprint (``TaskScore.fingerprint``: the same prompts and targets)
asked the same n questions; for each, A and B were right or wrong. With b = #(A right, B wrong)
and c = #(A wrong, B right), McNemar's exact test (McNemar 1947; the exact binomial form of
Edwards 1948's continuity-free version) gives the two-sided p-value of "no difference"

    p = min(1, 2 · P(X <= min(b, c))),   X ~ Binomial(b + c, 1/2)

and the accuracy difference Δ = (b - c) / n gets a 95% percentile interval from resampling the
questions with replacement (the same questions for both, as ``compare``'s blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmbench.core.results import RunResult, TaskScore

N_BOOTSTRAP = 10_000


@dataclass(frozen=True)
class TaskDifference:
    """One task evaluated alike for both runs: accuracies, A - B with its 95% interval, and
    McNemar's p-value."""

    key: str  # "addition 8-shot cot"
    metric: str
    n_examples: int
    a: float
    b: float
    delta: float
    delta_ci95: tuple[float, float]
    a_only: int  # questions A got right and B wrong
    b_only: int
    p_value: float


def mcnemar_p_value(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (module docstring)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    low = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_task_difference(a: TaskScore, b: TaskScore, *, n_bootstrap: int = N_BOOTSTRAP,
                           seed: int = 0) -> TaskDifference:
    """``a`` against ``b``, which must share a fingerprint (the same questions)."""
    if a.fingerprint != b.fingerprint or len(a.correct) != len(b.correct):
        raise ValueError(f"{a.key}: the two scores asked different questions")
    right_a = np.asarray(a.correct, dtype=float)  # (n,)
    right_b = np.asarray(b.correct, dtype=float)  # (n,)
    n = len(right_a)
    a_only = int(((right_a == 1) & (right_b == 0)).sum())
    b_only = int(((right_a == 0) & (right_b == 1)).sum())
    diff = right_a - right_b  # (n,)
    if n:
        picks = np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n))  # (R, n)
        resampled = diff[picks].mean(axis=1)  # (R,)
        low, high = (float(v) for v in np.percentile(resampled, [2.5, 97.5]))
    else:
        low = high = 0.0
    return TaskDifference(key=a.key, metric=a.metric, n_examples=n,
                          a=float(right_a.mean()) if n else 0.0,
                          b=float(right_b.mean()) if n else 0.0,
                          delta=float(diff.mean()) if n else 0.0, delta_ci95=(low, high),
                          a_only=a_only, b_only=b_only, p_value=mcnemar_p_value(a_only, b_only))


def task_differences(run_a: RunResult, run_b: RunResult, *, seed: int = 0
                     ) -> tuple[tuple[TaskDifference, ...], list[str]]:
    """Every task score both runs have with per-example results, paired; and a note per score
    both have that cannot be paired (asked different questions)."""
    if run_a.tasks is None or run_b.tasks is None:
        return (), []
    differences, notes = [], []
    for score_a in run_a.tasks.scores:
        score_b = run_b.tasks.score(score_a.key)
        if score_b is None or not score_a.correct:
            continue
        if score_a.fingerprint != score_b.fingerprint:
            notes.append(f"task {score_a.key}: not paired, the runs were asked different "
                         "questions (different documents, exemplars or prompts)")
            continue
        differences.append(paired_task_difference(score_a, score_b, seed=seed))
    return tuple(differences), notes
