"""Judges of the sentiment task: the gold judge (the stand-in for people) and an AI judge for
RLAIF.

- ``GoldJudge`` (Ziegler et al. 2019 section 3.1 use a sentiment classifier the same way): a
  scikit-learn TF-IDF (word 1-2-grams, sublinear tf, ``min_df`` 2) + logistic-regression
  (C = 10) classifier fitted on all human labels of the train reviews of ``movie_reviews``;
  the gold score of a continuation is its P(positive), and "gold-positive" means P > 0.5.
- ``LikelihoodRatioJudge`` (RLAIF, Lee et al. 2023; Bai et al. 2022): an lmbench model used as a
  judge. Two class-conditional language models p_+ and p_- over one tokenizer score a response
  y; its log-odds s(y) = ln p_+(y) - ln p_-(y) (the naive-Bayes posterior log-odds of positive
  up to the prior), and the judge prefers the first of two responses with probability
  P(a > b) = sigmoid(s(a) - s(b)). ``fit_likelihood_ratio_judge`` trains Kneser-Ney word
  n-grams on NLTK's ``sentence_polarity`` snippets (other text than ``movie_reviews``), so the
  judge never sees a gold label of the task, let alone of the pairs it labels.
- ``label_pairs`` asks a judge about each pair in both orders and averages,
  p = (P(a > b) + 1 - P(b > a)) / 2 (position-swap averaging, Lee et al. section 2.2), and
  reports how often the two orders agree; ``agreement`` is the fraction of pairs on which two
  labellings prefer the same response.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.core.tokenizers import WordTokenizer, same_vocabulary
from lmbench.data.corpora import Split, sentence_polarity_sentences
from lmbench.data.reviews import labelled_texts
from lmbench.models.catalog import MODELS

GOLD_C = 10.0  # inverse L2 strength of the gold logistic regression
GOLD_NGRAMS = (1, 2)


class PairJudge(Protocol):
    """A judge of two responses to one prompt."""

    def compare(self, prompt: str, first: str, second: str) -> float:
        """P(first is better than second), in [0, 1]."""


@dataclass(frozen=True)
class GoldJudge:
    """The gold sentiment classifier (module docstring); fit with ``fit_gold_judge``."""

    classifier: Any  # a fitted sklearn Pipeline (TfidfVectorizer -> LogisticRegression)

    def positive_probability(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) P(positive) of each text (the gold score)."""
        if not texts:
            return np.zeros(0)
        return self.classifier.predict_proba(list(texts))[:, 1]

    def accuracy(self, texts: Sequence[str], labels: Sequence[int]) -> float:
        """The fraction of ``texts`` whose predicted label (P > 0.5) is ``labels``' (1 = pos)."""
        predicted = self.positive_probability(texts) > 0.5
        return float(np.mean(predicted == np.asarray(labels, dtype=bool)))

    def compare(self, prompt: str, first: str, second: str) -> float:
        """1 if ``first`` is more positive, 0 if less, 0.5 on a tie (the prompt is shared)."""
        a, b = self.positive_probability([first, second])
        return 0.5 if a == b else float(a > b)


def fit_gold_judge(data_dir: str | os.PathLike | None = None) -> GoldJudge:
    """The gold judge fitted on every labelled train review (module docstring).

    Args:
        data_dir: the data root holding ``nltk_data/corpora/movie_reviews.zip``.

    Returns:
        The fitted judge (deterministic: lbfgs on fixed data).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = labelled_texts("train", data_dir)
    classifier = make_pipeline(
        TfidfVectorizer(ngram_range=GOLD_NGRAMS, min_df=2, sublinear_tf=True),
        LogisticRegression(C=GOLD_C, max_iter=2000))
    classifier.fit(texts, labels)
    return GoldJudge(classifier)


@dataclass(frozen=True)
class LikelihoodRatioJudge:
    """P(a > b) = sigmoid(s(a) - s(b)), s = ln p_+ - ln p_- (module docstring). The two models
    share one tokenizer; responses are scored after their prompt."""

    positive: LanguageModel
    negative: LanguageModel

    def __post_init__(self) -> None:
        if not same_vocabulary(self.positive.tokenizer, self.negative.tokenizer):
            raise LmbenchError("likelihood-ratio judge: the positive and negative models must "
                               "share one tokenizer")

    def log_odds(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """(N,) s(y) of each response after ``prompt``: the summed per-token log ratio over
        the response's tokens (the prompt's tokens are context, not counted)."""
        tokenizer = self.positive.tokenizer
        prompt_ids = _words(tokenizer, prompt)
        rows = [prompt_ids + _words(tokenizer, r) for r in responses]
        T = max(len(r) for r in rows)
        inputs = torch.full((len(rows), T), tokenizer.boundary_id, dtype=torch.long)  # (B, T)
        targets = torch.full((len(rows), T), -1, dtype=torch.long)  # (B, T)
        for b, row in enumerate(rows):
            inputs[b, 1:len(row)] = torch.tensor(row[:-1], dtype=torch.long)
            targets[b, len(prompt_ids):len(row)] = torch.tensor(row[len(prompt_ids):])
        positive, _ = self.positive.token_logprobs(inputs, targets)  # (B, T)
        negative, _ = self.negative.token_logprobs(inputs, targets)  # (B, T)
        return (positive - negative).sum(dim=1).cpu().numpy()

    def compare(self, prompt: str, first: str, second: str) -> float:
        a, b = self.log_odds(prompt, [first, second])
        return _sigmoid(float(a - b))


def _words(tokenizer, text: str) -> list[int]:
    """Word ids of ``text`` as one run of words (no sentence ends inside a response)."""
    return [i for i in tokenizer.encode(text.replace("\n", " ")) if i != tokenizer.boundary_id]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def fit_likelihood_ratio_judge(data_dir: str | os.PathLike | None = None, *, order: int = 3,
                               smoothing: str = "modified-kneser-ney",
                               unk_max_count: int = 1) -> LikelihoodRatioJudge:
    """The RLAIF judge: two word n-grams on ``sentence_polarity``'s positive and negative
    snippets over one word vocabulary (words seen at most ``unk_max_count`` times in the
    snippets of both classes become ``<unk>``).

    Args:
        data_dir: the data root holding ``nltk_data/corpora/sentence_polarity.zip``.
        order: the n-gram order.
        smoothing: any smoothing of the ``ngram`` family.
        unk_max_count: the shared tokenizer's rare-word cutoff.

    Returns:
        The judge (no movie_reviews label was read).
    """
    snippets = sentence_polarity_sentences(data_dir)
    every = [s for label in ("neg", "pos") for s in snippets[label]]
    tokenizer = WordTokenizer(unk_max_count).fit(Split("train", "", tuple(every)))
    ngram = MODELS.get("ngram")
    models = {}
    for label in ("neg", "pos"):
        model = ngram(tokenizer=tokenizer, order=order, smoothing=smoothing)
        models[label] = model.fit_ids(tokenizer.encode_sentences(snippets[label]))
    return LikelihoodRatioJudge(models["pos"], models["neg"])


@dataclass(frozen=True)
class PairLabels:
    """A judge's labels of pairs (a_i, b_i): P(a_i > b_i) after position-swap averaging."""

    prefers_first: tuple[float, ...]  # averaged over both orders
    swap_consistency: float  # fraction of pairs whose two orders prefer the same response

    def chosen_first(self) -> list[bool]:
        """Whether a_i is chosen (P > 0.5; a tie, 0.5, chooses b_i)."""
        return [p > 0.5 for p in self.prefers_first]


def label_pairs(judge: PairJudge, prompts: Sequence[str], first: Sequence[str],
                second: Sequence[str]) -> PairLabels:
    """Ask ``judge`` about every pair in both orders and average (module docstring).

    Args:
        judge: any ``PairJudge`` (gold, likelihood-ratio, ...).
        prompts: the pairs' prompts.
        first: the responses shown first.
        second: the responses shown second.

    Returns:
        The averaged preferences and the swap consistency.
    """
    if not len(prompts) == len(first) == len(second):
        raise LmbenchError(f"label_pairs: {len(prompts)} prompts, {len(first)} first and "
                           f"{len(second)} second responses (one of each per pair)")
    averaged, consistent = [], 0
    for prompt, a, b in zip(prompts, first, second):
        forward, backward = judge.compare(prompt, a, b), judge.compare(prompt, b, a)
        averaged.append((forward + 1 - backward) / 2)
        consistent += (forward > 0.5) == (backward < 0.5)
    return PairLabels(tuple(averaged), consistent / max(1, len(prompts)))


def agreement(a: PairLabels, b: PairLabels) -> float:
    """The fraction of pairs on which two labellings choose the same response."""
    if len(a.prefers_first) != len(b.prefers_first):
        raise LmbenchError("agreement: the two labellings are of different numbers of pairs")
    same = [x == y for x, y in zip(a.chosen_first(), b.chosen_first())]
    return float(np.mean(same)) if same else float("nan")
