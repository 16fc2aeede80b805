"""Verifiable tasks for post-training: SFT data, an exact verifier as the reward, held-out lengths.

Problems come from ``lmbench.tasks.synthetic`` (seeded generators with an exact-match verifier).
A problem becomes an ``Example`` (``lmbench.data.examples``) as::

    prompt   = "Q: " + question + "\\nA:"       e.g. "Q: What is 482 plus 176?\\nA:"
    response = " " + target                     e.g. " 658"  (then the boundary token)

so the model learns to answer after ``A:`` and to stop (the per-example batches end every
response with the tokenizer's boundary id). The reward of a response is 1 if
``Problem.verify`` accepts it (exact match of the extracted, normalised answer) and 0 otherwise
(Shao et al. 2024's rule-based accuracy reward; Lambert et al. 2024's RLVR).

Splits (``length_splits``): the train problems have the lengths in ``train_lengths`` (for
addition, operand digits 1-3), drawn from ``seed``; each held-out split has one length, drawn
from another seed, with every question that is also a train question removed, so "held-out
3-digit" and "held-out 4-digit" (longer than any trained on) are disjoint from training.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.data.corpora import Corpus, Split
from lmbench.data.examples import Example
from lmbench.inference.sampling import SamplingConfig, sample_batch
from lmbench.tasks.synthetic import Problem, generate

LENGTH_OPTION = {"addition": "n_digits", "reversal": "n_letters", "sorting": "n_items"}
HELD_OUT_SEED_OFFSET = 7_919  # held-out split of length L: seed + 7919 + L
GREEDY = SamplingConfig(temperature=0.0)


def prompt_of(problem: Problem) -> str:
    """The prompt of ``problem`` (module docstring)."""
    return f"Q: {problem.question}\nA:"


def example_of(problem: Problem) -> Example:
    """``problem`` as an SFT example (module docstring)."""
    return Example(prompt_of(problem), " " + problem.target)


@dataclass(frozen=True)
class LengthSplits:
    """Train problems and held-out problems by length."""

    task: str
    train: tuple[Problem, ...]
    held_out: dict[int, tuple[Problem, ...]]  # length -> problems (no train question among them)


def length_splits(task: str, *, n_train: int, n_held_out: int, train_lengths: Sequence[int],
                  held_out_lengths: Sequence[int], seed: int = 0,
                  data_dir: str | os.PathLike | None = None, **options) -> LengthSplits:
    """Train and held-out problems of ``task`` by length (module docstring).

    Args:
        task: ``addition``, ``reversal`` or ``sorting`` (the tasks with a length option).
        n_train: train problems, spread evenly over ``train_lengths``.
        n_held_out: problems drawn for each held-out length (before train questions are
            removed).
        train_lengths: lengths trained on (``n_digits`` / ``n_letters`` / ``n_items``).
        held_out_lengths: lengths of the held-out splits.
        seed: the train seed; held-out length L uses ``seed + 7919 + L``.
        data_dir: the data root (word lists of some generators).
        **options: other options of the generator (``form="direct"``).

    Returns:
        The splits.
    """
    if task not in LENGTH_OPTION:
        raise LmbenchError(f"verifiable task must be one of {', '.join(LENGTH_OPTION)}, "
                           f"got {task!r}")
    if not train_lengths or n_train < len(train_lengths):
        raise LmbenchError(f"n_train ({n_train}) must give every train length "
                           f"({list(train_lengths)}) at least one problem")
    option = LENGTH_OPTION[task]
    train: list[Problem] = []
    for i, length in enumerate(train_lengths):
        share = n_train // len(train_lengths) + (i < n_train % len(train_lengths))
        train.extend(generate(task, share, seed * 1_000 + int(length),
                              **{option: int(length)}, **options))
    questions = {p.question for p in train}
    held_out = {}
    for length in held_out_lengths:
        drawn = generate(task, n_held_out, seed + HELD_OUT_SEED_OFFSET + int(length),
                         **{option: int(length)}, **options)
        held_out[int(length)] = tuple(p for p in drawn if p.question not in questions)
    return LengthSplits(task, tuple(train), held_out)


def task_corpus(problems: Sequence[Problem], name: str = "verifiable", *,
                held_out: bool = False) -> Corpus:
    """The problems' examples as text (prompt + response, each example two lines) for
    pretraining a base model and fitting its tokenizer (``train``, and the last tenth as
    ``valid``), or, with ``held_out``, as one ``test`` split (the records' corpus)."""
    text = "".join(e.prompt + e.response + "\n" for e in map(example_of, problems))
    lines = text.splitlines(keepends=True)
    if held_out:
        parts = {"test": text}
    else:
        cut = max(1, len(lines) - len(lines) // 10)
        cut += cut % 2  # keep each Q/A line pair in one split
        parts = {"train": "".join(lines[:cut]), "valid": "".join(lines[cut:]) or lines[-1]}
    return Corpus(name, {s: Split(s, t, tuple(tuple(line.split()) for line in t.splitlines()))
                         for s, t in parts.items()}, f"{len(problems)} {name} problems as text")


def verifier_reward(problems: Sequence[Problem]) -> Callable[[str, str], float]:
    """``reward(prompt, response)``: 1.0 if the problem with that prompt accepts the response,
    else 0.0; a prompt of no problem in ``problems`` is an error naming it."""
    by_prompt = {prompt_of(p): p for p in problems}

    def reward(prompt: str, response: str) -> float:
        problem = by_prompt.get(prompt)
        if problem is None:
            raise LmbenchError(f"verifier reward: prompt {prompt[:40]!r} is of no known problem")
        return 1.0 if problem.verify(response) else 0.0

    return reward


def answers(model: LanguageModel, problems: Sequence[Problem], *, max_new_tokens: int = 12,
            sampler: SamplingConfig = GREEDY, seed: int = 0) -> list[str]:
    """The model's response to each problem (greedy by default), stopping at the boundary id
    or a newline; prompts of one token length are decoded in one batch."""
    tokenizer = model.tokenizer
    encoded = [tokenizer.encode(prompt_of(p)) for p in problems]
    out = [""] * len(problems)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    for indices in by_length.values():
        drawn = sample_batch(model, [encoded[i] for i in indices], max_new_tokens,
                             sampler=sampler, seeds=[seed + i for i in indices],
                             stop_ids=[tokenizer.boundary_id], stop_strings=["\n"])
        for i, sample in zip(indices, drawn):
            out[i] = sample.text
    return out


def exact_match(model: LanguageModel, problems: Sequence[Problem], **options) -> float:
    """The fraction of ``problems`` whose verifier accepts the model's greedy response
    (``answers``' options)."""
    if not problems:
        raise LmbenchError("exact_match needs at least one problem")
    responses = answers(model, problems, **options)
    return sum(p.verify(r) for p, r in zip(problems, responses)) / len(problems)
