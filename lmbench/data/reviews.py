"""The sentiment-steered continuation task's data (Ziegler et al. 2019, "Fine-Tuning Language
Models from Human Preferences", section 3.1; TRL's GPT-2 + IMDB example), on NLTK's
``movie_reviews`` (Pang & Lee 2004).

- Reviews and their human labels come split by review (``movie_review_documents``, the seeded
  hash split of ``lmbench.data.corpora``: 1,604 / 185 / 211 reviews). The ``movie_reviews``
  corpus (the same splits' text, labels dropped) pretrains the policy.
- The gold judge trains on all labels of the train reviews (``labelled_texts("train")``) and is
  measured on the test reviews.
- Demonstrations for SFT (``review_demonstrations``): a line of a positive valid review, its
  first ``n_words`` words the prompt and the next words the response (human-written positive
  continuations of the same kind of prompt).
- ``review_corpus(n)``: the first ``n`` test reviews as a corpus (``movie_reviews-test<n>``),
  on which a pipeline's stage records are scored (perplexity of every stage on all 211 test
  reviews costs more CPU than most stages).
- Prompts are the first ``n_words`` words of the lines of held-out reviews (``review_prompts``):
  the valid reviews' lines prompt the training stages (preference pairs, RL), the test reviews'
  lines prompt every evaluation, so no stage is scored on a prompt it trained on or on text the
  policy was pretrained on. A prompt is a line's first words joined by spaces (no trailing
  space); a continuation is the text that follows it (it starts with a space).
"""

from __future__ import annotations

import os

from lmbench.core.errors import LmbenchError
from lmbench.data.corpora import SPLITS, Corpus, Split, movie_review_documents
from lmbench.data.examples import Example

LABELS = ("neg", "pos")  # index 1 = positive (the gold judge's P(positive))
PROMPT_MIN_EXTRA_WORDS = 4  # a line gives a prompt only if at least this many words follow it


def labelled_texts(split: str, data_dir: str | os.PathLike | None = None
                   ) -> tuple[list[str], list[int]]:
    """The reviews of ``split`` as (texts, labels), label 1 for positive, 0 for negative.

    Args:
        split: ``train``, ``valid`` or ``test``.
        data_dir: the data root (``lmbench.data.corpora.data_root``).

    Returns:
        One text per review (its lines joined, one a line) and its human label.
    """
    _check_split(split)
    reviews = movie_review_documents(data_dir)[split]
    return [r.text for r in reviews], [LABELS.index(r.label) for r in reviews]


def review_prompts(split: str, n_words: int = 5, *, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None) -> list[str]:
    """Prompts for continuation: the first ``n_words`` words of each line of the reviews of
    ``split`` that has at least ``PROMPT_MIN_EXTRA_WORDS`` words after them, in file order,
    duplicates dropped (module docstring).

    Args:
        split: ``valid`` (training stages) or ``test`` (evaluation); ``train`` is refused, the
            policy was pretrained on it.
        n_words: words per prompt (>= 1).
        data_dir: the data root.
        limit: at most this many prompts (the first ones).

    Returns:
        The prompts.
    """
    _check_split(split)
    if split == "train":
        raise LmbenchError("review_prompts: split must be 'valid' or 'test' (held-out reviews); "
                           "the policy is pretrained on 'train'")
    if n_words < 1:
        raise LmbenchError(f"review_prompts: n_words must be >= 1, got {n_words}")
    if limit is not None and limit < 1:
        raise LmbenchError(f"review_prompts: limit must be >= 1, got {limit}")
    prompts: list[str] = []
    seen: set[str] = set()
    for review in movie_review_documents(data_dir)[split]:
        for line in review.lines:
            if len(line) < n_words + PROMPT_MIN_EXTRA_WORDS:
                continue
            prompt = " ".join(line[:n_words])
            if prompt not in seen:
                seen.add(prompt)
                prompts.append(prompt)
    return prompts if limit is None else prompts[:limit]


def review_demonstrations(split: str, n_words: int = 5, response_words: int = 12, *,
                          label: str = "pos", data_dir: str | os.PathLike | None = None,
                          limit: int | None = None) -> list[Example]:
    """SFT demonstrations from the lines of ``label`` reviews of ``split`` (module docstring):
    lines with at least ``PROMPT_MIN_EXTRA_WORDS`` words after the prompt, in file order.

    Args:
        split: ``valid`` or ``test``.
        n_words: prompt words (as ``review_prompts``).
        response_words: at most this many words of response.
        label: ``pos`` or ``neg``.
        data_dir: the data root.
        limit: at most this many examples.

    Returns:
        ``Example(prompt, " " + response)`` per line.
    """
    _check_split(split)
    if label not in LABELS:
        raise LmbenchError(f"review_demonstrations: label must be 'pos' or 'neg', got {label!r}")
    if split == "train" or n_words < 1 or response_words < 1:
        raise LmbenchError("review_demonstrations: split must be 'valid' or 'test' and n_words, "
                           "response_words >= 1")
    examples: list[Example] = []
    for review in movie_review_documents(data_dir)[split]:
        if review.label != label:
            continue
        for line in review.lines:
            if len(line) >= n_words + PROMPT_MIN_EXTRA_WORDS:
                examples.append(Example(" ".join(line[:n_words]),
                                        " " + " ".join(line[n_words:n_words + response_words])))
    return examples if limit is None else examples[:limit]


def review_corpus(n_test_reviews: int, data_dir: str | os.PathLike | None = None) -> Corpus:
    """The first ``n_test_reviews`` test reviews (file-id order) as the test split of a corpus
    named ``movie_reviews-test<n>`` (module docstring)."""
    if n_test_reviews < 1:
        raise LmbenchError(f"review_corpus: n_test_reviews must be >= 1, got {n_test_reviews}")
    reviews = movie_review_documents(data_dir)["test"][:n_test_reviews]
    lines = tuple(line for r in reviews for line in r.lines)
    text = "".join(" ".join(line) + "\n" for line in lines)
    return Corpus(f"movie_reviews-test{n_test_reviews}", {"test": Split("test", text, lines)},
                  f"the first {n_test_reviews} movie_reviews test reviews")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise LmbenchError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
