"""Tiny fitted models shared by the speedup tests: a gpt target, a smaller gpt draft and an
n-gram draft, all on the char tokenizer of ``tiny_corpus``."""

from __future__ import annotations

import pytest

import lmbench

TRAIN = {"max_steps": 40, "batch_size": 8, "seq_len": 32, "warmup_steps": 5,
         "learning_rate": 1e-2, "progress": False, "bf16": False}


def tiny_gpt(corpus, tokenizer=None, *, n_layer=2, n_embd=32, block_size=64, seed=0, **train):
    model = lmbench.build_model("gpt", n_layer=n_layer, n_head=2, n_embd=n_embd,
                                block_size=block_size, train={**TRAIN, "seed": seed, **train})
    if tokenizer is not None:
        model.tokenizer = tokenizer
    return model.fit(corpus, valid=False)


@pytest.fixture(scope="session")
def gpt_target(tiny_corpus):
    return tiny_gpt(tiny_corpus)


@pytest.fixture(scope="session")
def gpt_draft(tiny_corpus, gpt_target):
    return tiny_gpt(tiny_corpus, gpt_target.tokenizer, n_layer=1, n_embd=16, seed=1,
                    max_steps=20)


@pytest.fixture(scope="session")
def ngram_draft(tiny_corpus, gpt_target):
    model = lmbench.build_model("ngram", order=4, tokenizer="char")
    model.tokenizer = gpt_target.tokenizer
    return model.fit(tiny_corpus)
