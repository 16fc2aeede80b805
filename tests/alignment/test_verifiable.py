"""Verifiable tasks: SFT examples, disjoint held-out lengths, the exact verifier as a reward."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.alignment.verifiable import (
    answers,
    exact_match,
    example_of,
    length_splits,
    prompt_of,
    task_corpus,
    verifier_reward,
)
from lmbench.core.errors import LmbenchError


def test_splits_by_length_hold_out_every_train_question():
    splits = length_splits("addition", n_train=300, n_held_out=200, train_lengths=[1, 2, 3],
                           held_out_lengths=[2, 3, 4])
    assert len(splits.train) == 300
    lengths = sorted({len(p.question.split()[2]) for p in splits.train})
    assert lengths == [1, 2, 3]
    train_questions = {p.question for p in splits.train}
    for length, problems in splits.held_out.items():
        assert problems and not train_questions & {p.question for p in problems}
        assert {len(p.question.split()[2]) for p in problems} == {length}
    again = length_splits("addition", n_train=300, n_held_out=200, train_lengths=[1, 2, 3],
                          held_out_lengths=[2, 3, 4])
    assert again == splits
    with pytest.raises(LmbenchError, match="verifiable task must be one of"):
        length_splits("coin-flip", n_train=3, n_held_out=1, train_lengths=[1],
                      held_out_lengths=[2])


def test_example_format_and_verifier_reward():
    problem = length_splits("addition", n_train=1, n_held_out=1, train_lengths=[3],
                            held_out_lengths=[3]).train[0]
    a, b = (int(x.rstrip("?")) for x in problem.question.split()[2::2])
    example = example_of(problem)
    assert example.prompt == f"Q: What is {a} plus {b}?\nA:"
    assert example.response == f" {a + b}"
    reward = verifier_reward([problem])
    assert reward(prompt_of(problem), f" {a + b}") == 1.0
    assert reward(prompt_of(problem), f" {a + b + 1}") == 0.0
    with pytest.raises(LmbenchError, match="is of no known problem"):
        reward("Q: What is 1 plus 1?\nA:", " 2")


def test_exact_match_of_a_model_that_memorised_the_problems():
    problems = length_splits("addition", n_train=40, n_held_out=1, train_lengths=[1],
                             held_out_lengths=[1]).train
    corpus = task_corpus(problems)
    assert set(corpus.splits) == {"train", "valid"}
    assert task_corpus(problems, held_out=True).test.text.count("Q: ") == 40
    model = lmbench.build_model("ngram", order=30, smoothing="mle", tokenizer="char")
    model.fit(lmbench.Corpus("all", {"train": task_corpus(problems, held_out=True).test}))
    responses = answers(model, problems, max_new_tokens=4)
    assert all(r.startswith(" ") for r in responses)
    assert exact_match(model, problems, max_new_tokens=4) == 1.0
