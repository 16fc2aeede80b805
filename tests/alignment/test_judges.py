"""Judges of the sentiment task: the gold classifier, the likelihood-ratio AI judge, and
position-swap averaging."""

from __future__ import annotations

import math

import pytest

import lmbench
from lmbench.alignment.judges import (
    LikelihoodRatioJudge,
    PairLabels,
    agreement,
    fit_gold_judge,
    fit_likelihood_ratio_judge,
    label_pairs,
)
from lmbench.core.errors import LmbenchError
from lmbench.core.tokenizers import WordTokenizer
from lmbench.data.corpora import Split
from lmbench.data.reviews import labelled_texts
from lmbench.models.catalog import MODELS


class FirstBiased:
    """A judge that says 0.9 for whichever response comes first, unless told the answer."""

    def __init__(self, better: set[str]) -> None:
        self.better = better

    def compare(self, prompt, first, second):
        if first in self.better:
            return 1.0
        if second in self.better:
            return 0.0
        return 0.9


def test_position_swap_averaging_cancels_a_position_bias():
    labels = label_pairs(FirstBiased({"good"}), ["p", "p"], ["good", "meh"], ["bad", "ugh"])
    # pair 1: (1.0 + 1 - 0.0) / 2 = 1.0; pair 2: (0.9 + 1 - 0.9) / 2 = 0.5 (no preference left)
    assert labels.prefers_first == pytest.approx((1.0, 0.5))
    assert labels.swap_consistency == 0.5  # the biased pair flips with the order
    assert labels.chosen_first() == [True, False]
    assert agreement(labels, PairLabels((0.8, 0.7), 1.0)) == 0.5
    with pytest.raises(LmbenchError, match="one of each per pair"):
        label_pairs(FirstBiased(set()), ["p"], ["a", "b"], ["c"])


def _snippet_models():
    positive = [("a", "great", "fun", "film"), ("great", "acting", "and", "fun")] * 5
    negative = [("a", "dull", "boring", "film"), ("boring", "acting", "and", "dull")] * 5
    tokenizer = WordTokenizer(0).fit(Split("train", "", tuple(positive + negative)))
    ngram = MODELS.get("ngram")
    models = [ngram(tokenizer=tokenizer, order=2, smoothing="kneser-ney").fit_ids(
        tokenizer.encode_sentences(s)) for s in (positive, negative)]
    return models


def test_likelihood_ratio_judge_prefers_the_positive_model_s_text():
    positive, negative = _snippet_models()
    judge = LikelihoodRatioJudge(positive, negative)
    odds = judge.log_odds("the film was", [" great fun", " dull and boring", " dull"])
    assert odds[0] > 0 > odds[1] and odds[2] < 0
    assert judge.compare("x", " great fun", " dull") > 0.5
    p = judge.compare("x", " great", " boring")
    assert math.isclose(p + judge.compare("x", " boring", " great"), 1.0)
    other = lmbench.build_model("ngram", order=2, tokenizer="char")
    other.fit(lmbench.Corpus("c", {"train": Split("train", "ab\n", (("ab",),))}))
    with pytest.raises(LmbenchError, match="share one tokenizer"):
        LikelihoodRatioJudge(positive, other)


@pytest.mark.slow
def test_gold_judge_is_at_least_80_percent_accurate_on_held_out_reviews(data_dir):
    gold = fit_gold_judge(data_dir)
    texts, labels = labelled_texts("test", data_dir)
    assert gold.accuracy(texts, labels) >= 0.80
    a, b = gold.positive_probability(["a wonderful , moving , brilliant film",
                                      "a dull , boring , awful mess"])
    assert a > 0.5 > b
    assert gold.compare("p", "wonderful and brilliant", "awful and boring") == 1.0


@pytest.mark.slow
def test_ai_judge_reads_no_movie_reviews_label_and_still_agrees_with_reviews(data_dir):
    judge = fit_likelihood_ratio_judge(data_dir)
    texts, labels = labelled_texts("test", data_dir)
    odds = [judge.log_odds("", [" ".join(t.split()[:300])])[0] for t in texts[:40]]
    accuracy = sum((o > 0) == bool(y) for o, y in zip(odds, labels[:40])) / 40
    assert accuracy > 0.7
