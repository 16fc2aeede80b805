"""Tiny tasks and models for the task-layer tests: 2-digit addition, a char n-gram that has read
every problem of it (so it answers them), and a tiny GPT on the same text."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.tasks.catalog import synthetic_task

TRAIN = {"max_steps": 8, "batch_size": 4, "seq_len": 32, "warmup_steps": 2,
         "learning_rate": 1e-2, "progress": False, "bf16": False, "seed": 0}


@pytest.fixture(scope="session")
def addition_task():
    return synthetic_task("addition", n_digits=2, n_train=40, n_test=12, seed=0)


def task_corpus(task, chain: bool = False) -> Corpus:
    """Every document of ``task`` with its answer (or its worked chain), test documents too:
    the models below are meant to know the answers."""
    docs = task.splits["train"] + task.splits["test"]
    text = "".join(task.prompt(d) + task.target_text(d, chain=chain) + "\n\n" for d in docs)
    return Corpus("addition", {s: _lines_split(s, text) for s in ("train", "valid", "test")})


def knowing(task, chain: bool = False):
    """A char 16-gram: its context spans "48 plus 76?\\nA: ", so it recalls every answer."""
    model = lmbench.build_model("ngram", order=16, smoothing="modified-kneser-ney",
                                tokenizer="char")
    return model.fit(task_corpus(task, chain))


@pytest.fixture(scope="session")
def knowing_ngram(addition_task):
    return knowing(addition_task)


@pytest.fixture(scope="session")
def chain_ngram(addition_task):
    return knowing(addition_task, chain=True)


@pytest.fixture(scope="session")
def tiny_task_gpt(addition_task):
    model = lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=512,
                                train=TRAIN)
    return model.fit(task_corpus(addition_task), valid=False)
