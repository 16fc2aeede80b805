"""Shared fixtures: a tiny written corpus for unit tests, and the real data for integration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from text_factory import _tiny_text

import lmbench
from lmbench.data.corpora import Corpus, _lines_split

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_TEXT = _tiny_text(300, seed=0)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` need CUDA: skipped where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_corpus() -> Corpus:
    """A few hundred words written here; every split is small and shares the vocabulary."""
    held_out = _tiny_text(30, seed=1) + "the cow sat on a chair .\n"
    return Corpus("tiny", {"train": _lines_split("train", TINY_TEXT),
                           "valid": _lines_split("valid", held_out),
                           "test": _lines_split("test", held_out)})


@pytest.fixture
def write_corpus_dir(tmp_path, tiny_corpus):
    """``write(name)`` writes ``tiny_corpus``'s splits as ``<tmp_path>/<name>/<split>.txt``, a
    corpus folder that run files and ``--corpus`` accept, and returns the folder."""

    def write(name: str = "corpus") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for split, text in tiny_corpus.splits.items():
            (folder / f"{split}.txt").write_text(text.text, encoding="utf-8")
        return folder

    return write


@pytest.fixture
def corpus_dir(write_corpus_dir) -> Path:
    return write_corpus_dir("corpus")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real corpora (../shared, or $LMBENCH_DATA_DIR). Missing data fails under CI."""
    root = Path(os.environ.get("LMBENCH_DATA_DIR", SHARED))
    if not (root / "nltk_data").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found under {root}; CI must point LMBENCH_DATA_DIR at it")
        pytest.skip(f"real data not found under {root}")
    return root


# Tiny fitted models shared by the inference and distillation tests: a gpt target, a smaller gpt
# draft and an n-gram draft, all on the char tokenizer of ``tiny_corpus``.

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
