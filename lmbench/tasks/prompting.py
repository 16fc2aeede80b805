"""Prompting modes: zero-shot, few-shot, chain of thought, and self-consistency.

A prompt is a *preamble* shared by every question of a task, then the question:

    preamble = instruction + fewshot_delimiter                  (when there is an instruction)
             + for each of the k exemplars: prompt(doc) + target_text(doc) + fewshot_delimiter
    question = prompt(test doc)                                 (+ " Let's think step by step."
                                                                  zero-shot chain of thought)

- **Zero-shot** (``num_fewshot = 0``): the instruction only (Brown et al. 2020, section 2).
- **Few-shot**: k exemplars drawn from the train split by ``numpy.random.default_rng(seed)``
  without replacement, once per task, so every question and every model sees the same k-shot
  set in the same order (lm-eval draws per document; one set is what lets the preamble be
  cached, ``lmbench.inference.prefix_cache``).
- **Chain of thought** (``cot``): the exemplars' targets are their worked chains, ending "The
  answer is X." (Wei et al. 2022); with k = 0 the question ends with Kojima et al. 2022's
  trigger "Let's think step by step." Answers are then read by the task's regexes from the
  generated chain (one stage; Kojima et al.'s second "Therefore, the answer is" call is not
  made, the strict regex reads the chain's own "The answer is").
- **Self-consistency** (``self_consistency = N``, Wang et al. 2023): N chains sampled at
  ``temperature`` (0.7 by default; Wang et al. use 0.5-0.7 with top-k 40), each answer
  extracted, the most frequent kept (ties: the one reached first); chains with no answer
  (``[invalid]``) vote only when every chain is invalid.

Greedy decoding otherwise (temperature 0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.tasks.task import INVALID, Task

ZERO_SHOT_COT_TRIGGER = "Let's think step by step."
MAX_SELF_CONSISTENCY = 64


@dataclass(frozen=True)
class PromptConfig:
    """How a task is prompted (module docstring)."""

    num_fewshot: int = 0
    cot: bool = False
    self_consistency: int = 1  # N chains majority-voted; 1: one greedy chain
    temperature: float = 0.7  # of the self-consistency samples
    top_k: int | None = 40  # of the self-consistency samples (Wang et al.)
    seed: int = 1234  # of the few-shot draw and the samples (lm-eval's fewshot seed)

    def __post_init__(self) -> None:
        for name, low in (("num_fewshot", 0), ("self_consistency", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LmbenchError(f"{name} must be a whole number >= {low}, got {value!r}")
        if self.self_consistency > MAX_SELF_CONSISTENCY:
            raise LmbenchError(f"self_consistency must be at most {MAX_SELF_CONSISTENCY}, got "
                               f"{self.self_consistency}")
        if not self.temperature > 0:
            raise LmbenchError(f"temperature must be > 0 for self-consistency samples, got "
                               f"{self.temperature}")

    @property
    def mode(self) -> str:
        """``direct``, ``cot`` or ``self-consistency`` (how results are labelled)."""
        if self.self_consistency > 1:
            return "self-consistency"
        return "cot" if self.cot else "direct"

    def to_dict(self) -> dict[str, Any]:
        return {"num_fewshot": self.num_fewshot, "cot": self.cot,
                "self_consistency": self.self_consistency, "temperature": self.temperature,
                "top_k": self.top_k, "seed": self.seed, "mode": self.mode}


def uses_chain(task: Task, config: PromptConfig) -> bool:
    """Whether exemplars show worked chains (chain of thought or self-consistency)."""
    chain = config.cot or config.self_consistency > 1 or task.chain_of_thought
    if chain and task.kind != "generate":
        raise LmbenchError(f"task {task.name!r} is {task.kind}: chain of thought and "
                           "self-consistency need a generate task")
    if chain and config.num_fewshot and not task.chain_field:
        raise LmbenchError(f"task {task.name!r} has no worked chains (chain_field) for "
                           f"{config.num_fewshot}-shot chain-of-thought exemplars; use "
                           "--num-fewshot 0 for the zero-shot trigger")
    return chain


def fewshot_docs(task: Task, k: int, seed: int) -> tuple[dict[str, Any], ...]:
    """The k exemplars of ``task``: drawn from its train split without replacement by
    ``default_rng(seed)``; the same for every model and question."""
    train = task.splits.get("train", ())
    if k > len(train):
        at = f"{task.where}: " if task.where else f"task {task.name!r}: "
        raise LmbenchError(f"{at}num_fewshot is {k}, more than the {len(train)} documents "
                           "of the train split (field 'train')")
    if k == 0:
        return ()
    picks = np.random.default_rng(seed).choice(len(train), size=k, replace=False)
    return tuple(train[int(i)] for i in picks)


def preamble(task: Task, config: PromptConfig) -> str:
    """The text every question of ``task`` starts with (module docstring)."""
    chain = uses_chain(task, config)
    parts = [task.instruction + task.fewshot_delimiter] if task.instruction else []
    for doc in fewshot_docs(task, config.num_fewshot, config.seed):
        parts.append(task.prompt(doc) + task.target_text(doc, chain=chain)
                     + task.fewshot_delimiter)
    return "".join(parts)


def question(task: Task, doc: dict[str, Any], config: PromptConfig) -> str:
    """The part of the prompt that is this document's own."""
    text = task.prompt(doc)
    asked_for_chain = config.cot or config.self_consistency > 1  # not a scratchpad task's own
    if uses_chain(task, config) and asked_for_chain and config.num_fewshot == 0:
        text += task.target_delimiter + ZERO_SHOT_COT_TRIGGER
    return text


def majority_vote(answers: list[str]) -> str:
    """The most frequent answer (ties: the first reached); ``[invalid]`` answers vote only if
    every answer is invalid."""
    valid = [a for a in answers if a != INVALID] or answers
    counts = Counter(valid)
    best = max(counts.values())
    return next(a for a in valid if counts[a] == best)
