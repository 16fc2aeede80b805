"""The sentiment task's data: movie_reviews split by review, prompts and demonstrations."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.data.corpora import movie_review_documents, review_split
from lmbench.data.reviews import (
    labelled_texts,
    review_corpus,
    review_demonstrations,
    review_prompts,
)


def test_reviews_follow_the_documented_hash_split(data_dir):
    documents = movie_review_documents(data_dir)
    sizes = {s: len(r) for s, r in documents.items()}
    positives = {s: sum(r.label == "pos" for r in rs) for s, rs in documents.items()}
    assert sizes == {"train": 1604, "valid": 185, "test": 211}
    assert positives == {"train": 797, "valid": 95, "test": 108}
    ids = [r.fileid for rs in documents.values() for r in rs]
    assert len(ids) == len(set(ids)) == 2000
    assert all(review_split(r.fileid) == s for s, rs in documents.items() for r in rs)
    corpus = lmbench.load_corpus("movie_reviews", data_dir)
    assert [len(corpus.split(s).sentences) for s in ("train", "valid", "test")] == [
        52313, 6080, 6327]
    texts, labels = labelled_texts("test", data_dir)
    assert len(texts) == 211 and sum(labels) == 108


def test_review_split_is_a_pure_function_of_the_file_id():
    assert review_split("neg/cv000_29416.txt") == review_split("neg/cv000_29416.txt")
    drawn = [review_split(f"pos/cv{i:03d}_x.txt") for i in range(2000)]
    assert 0.75 < drawn.count("train") / 2000 < 0.85


def test_prompts_come_from_held_out_reviews_only(data_dir):
    valid, test = review_prompts("valid", 5, data_dir=data_dir), review_prompts("test", 5,
                                                                               data_dir=data_dir)
    assert len(valid) > 3000 and len(test) > 3000
    assert all(len(p.split()) == 5 for p in valid[:100]) and len(set(valid)) == len(valid)
    assert review_prompts("test", 3, data_dir=data_dir, limit=7) == review_prompts(
        "test", 3, data_dir=data_dir)[:7]
    with pytest.raises(LmbenchError, match="pretrained on 'train'"):
        review_prompts("train", data_dir=data_dir)
    with pytest.raises(LmbenchError, match="n_words must be >= 1"):
        review_prompts("test", 0, data_dir=data_dir)


def test_demonstrations_and_the_record_corpus(data_dir):
    examples = review_demonstrations("valid", 4, 6, data_dir=data_dir, limit=50)
    assert len(examples) == 50
    assert all(len(e.prompt.split()) == 4 and e.response.startswith(" ")
               and 1 <= len(e.response.split()) <= 6 for e in examples)
    positive = {" ".join(line[:4]) for r in movie_review_documents(data_dir)["valid"]
                if r.label == "pos" for line in r.lines}
    assert all(e.prompt in positive for e in examples)
    corpus = review_corpus(3, data_dir)
    assert corpus.name == "movie_reviews-test3" and set(corpus.splits) == {"test"}
    first = movie_review_documents(data_dir)["test"][:3]
    assert corpus.test.text == "".join(r.text for r in first)
