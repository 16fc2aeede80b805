"""Shared fixtures: a tiny written corpus for unit tests, and the real data for integration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from text_factory import _tiny_text

from lmbench.data.corpora import Corpus, _lines_split

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_TEXT = _tiny_text(300, seed=0)


@pytest.fixture(scope="session")
def tiny_corpus() -> Corpus:
    """A few hundred words written here; every split is small and shares the vocabulary."""
    held_out = _tiny_text(30, seed=1) + "the cow sat on a chair .\n"
    return Corpus("tiny", {"train": _lines_split("train", TINY_TEXT),
                           "valid": _lines_split("valid", held_out),
                           "test": _lines_split("test", held_out)})


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real corpora (../shared, or $LMBENCH_DATA_DIR). Missing data fails under CI."""
    root = Path(os.environ.get("LMBENCH_DATA_DIR", SHARED))
    if not (root / "nltk_data").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found under {root}; CI must point LMBENCH_DATA_DIR at it")
        pytest.skip(f"real data not found under {root}")
    return root
