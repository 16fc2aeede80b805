"""Prompting modes: the seeded k-shot set, the preamble's shape, chain-of-thought exemplars and
Kojima et al.'s trigger, majority vote, and the refusals."""

from __future__ import annotations

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.tasks.catalog import load_task
from lmbench.tasks.prompting import (
    ZERO_SHOT_COT_TRIGGER,
    PromptConfig,
    fewshot_docs,
    majority_vote,
    preamble,
    question,
)


def test_fewshot_set_is_seeded_and_shared(addition_task):
    first = fewshot_docs(addition_task, 4, seed=1234)
    assert first == fewshot_docs(addition_task, 4, seed=1234)
    assert first != fewshot_docs(addition_task, 4, seed=1)
    assert len({d["question"] for d in first}) == 4
    assert all(d in addition_task.splits["train"] for d in first)
    assert fewshot_docs(addition_task, 0, seed=0) == ()


def test_preamble_direct_and_chain_of_thought(addition_task):
    direct = preamble(addition_task, PromptConfig(num_fewshot=3))
    assert direct.count("Q: What is") == 3 and direct.endswith("\n\n")
    assert "The answer is" not in direct
    docs = fewshot_docs(addition_task, 3, seed=1234)
    assert direct == "".join(f"Q: {d['question']}\nA: {d['answer']}\n\n" for d in docs)
    cot = preamble(addition_task, PromptConfig(num_fewshot=3, cot=True))
    assert cot == "".join(f"Q: {d['question']}\nA: {d['chain']}\n\n" for d in docs)
    assert cot.count("The answer is") == 3
    doc = addition_task.splits["test"][0]
    assert question(addition_task, doc, PromptConfig()) == f"Q: {doc['question']}\nA:"
    assert question(addition_task, doc, PromptConfig(cot=True)).endswith(
        "A: " + ZERO_SHOT_COT_TRIGGER)
    assert not question(addition_task, doc, PromptConfig(num_fewshot=2, cot=True)).endswith(
        ZERO_SHOT_COT_TRIGGER)


def test_scratchpad_task_shows_chains_without_cot_flag():
    task = load_task("addition-scratchpad", n_digits=2, n_train=10, n_test=3)
    text = preamble(task, PromptConfig(num_fewshot=2))
    assert text.count("The answer is") == 2 and "carry" in text
    assert not question(task, task.splits["test"][0], PromptConfig()).endswith(
        ZERO_SHOT_COT_TRIGGER)


def test_k_larger_than_train_split_is_refused(addition_task):
    with pytest.raises(LmbenchError, match="num_fewshot is 41, more than the 40 documents"):
        preamble(addition_task, PromptConfig(num_fewshot=41))


def test_prompt_config_checks():
    for bad in ({"num_fewshot": -1}, {"self_consistency": 0}, {"temperature": 0.0},
                {"self_consistency": 1000}, {"num_fewshot": 1.5}):
        with pytest.raises(LmbenchError):
            PromptConfig(**bad)
    assert PromptConfig(self_consistency=5).mode == "self-consistency"
    assert PromptConfig(cot=True).mode == "cot" and PromptConfig().mode == "direct"


def test_majority_vote():
    assert majority_vote(["12", "13", "13", "12", "[invalid]", "[invalid]", "[invalid]"]) == "12"
    assert majority_vote(["7", "8", "8"]) == "8"
    assert majority_vote(["[invalid]", "[invalid]"]) == "[invalid]"
