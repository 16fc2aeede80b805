"""Metrics as statistics of prompt weights: at weight 1 each equals the plain function of
``generation_metrics``; the intervals contain the estimate and behave as documented."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from lmbench.evaluation import generation_metrics as gm
from lmbench.evaluation import generation_stats as gs


@pytest.fixture(scope="module")
def sequences():
    rng = random.Random(0)
    # small alphabet and some copied stretches, so every metric has something to count
    base = [rng.randrange(9) for _ in range(400)]
    out = []
    for _ in range(30):
        start, length = rng.randrange(350), rng.randrange(5, 40)
        out.append(base[start : start + length] + [rng.randrange(9) for _ in range(5)])
    return out


def _at_one(statistic, n):
    return float(statistic(np.ones((1, n)))[0])


def test_statistics_at_weight_one_equal_the_plain_metrics(sequences):
    n = len(sequences)
    references = [list(reversed(s)) for s in sequences]
    train = gm.NGramIndex(list(range(9)) * 50 + sequences[0] * 3, n=3)
    pairs = [
        (gs.mean_statistic(gs.self_bleu_scores(sequences)), gm.self_bleu(sequences)),
        (gs.bleu_statistic(sequences, references), gm.bleu(sequences, references)),
        (gs.ratio_statistic(*gs.repetition_counts(sequences, 6)),
         gm.repetition_rate(sequences, 6)),
        (gs.mean_statistic(gs.seq_rep_values(sequences, 4)), gm.seq_rep_n(sequences, 4)),
        (gs.zipf_statistic(sequences), gm.zipf_coefficient(sequences)),
        (gs.ratio_statistic(*gs.copy_counts(sequences, train)), gm.copy_rate(sequences, train, 3)),
        (gs.max_statistic([train.longest_span(s) for s in sequences]),
         gm.longest_copy(sequences, train, 3)),
        *[(gs.distinct_statistic(sequences, k), gm.distinct_n(sequences, k)) for k in (1, 2, 3)],
    ]
    for statistic, expected in pairs:
        assert _at_one(statistic, n) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_self_bleu_scores_are_nltks_sentence_bleu_against_the_others():
    words = ["the cat sat on the mat".split(), "the cat sat".split(), "a dog sat on a log".split(),
             "the mat".split(), "the cat sat on the mat".split()]
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smoothing = SmoothingFunction().method1
    expected = [sentence_bleu(words[:i] + words[i + 1:], words[i], smoothing_function=smoothing)
                for i in range(len(words))]  # lengths 6, 3, 6, 2, 6: the closest-length rule
    assert gs.self_bleu_scores(words) == pytest.approx(expected, rel=1e-12)


def test_weights_count_a_sequence_several_times():
    sequences = [[1, 2, 3, 1], [4, 4, 4, 4]]
    doubled = gs.ratio_statistic(*gs.repetition_counts(sequences, 128))(np.array([[2.0, 1.0]]))
    assert doubled[0] == pytest.approx(gm.repetition_rate([sequences[0]] * 2 + [sequences[1]]))
    bleu = gs.bleu_statistic(sequences, [[1, 2, 3], [4, 4]])(np.array([[1.0, 3.0]]))
    assert bleu[0] == pytest.approx(gm.bleu([sequences[0]] + [sequences[1]] * 3,
                                            [[1, 2, 3]] + [[4, 4]] * 3))


@pytest.mark.parametrize("method", ["bootstrap", "jackknife"])
def test_intervals_contain_the_estimate_and_are_reproducible(sequences, method):
    config = gs.IntervalConfig(n_bootstrap=300, n_groups=10, seed=3)
    statistic = gs.ratio_statistic(*gs.repetition_counts(sequences, 8))
    first = gs.estimate(statistic, len(sequences), method, config)
    assert first.low <= first.value <= first.high and first.low < first.high
    assert first.method == method
    assert gs.estimate(statistic, len(sequences), method, config) == first


def test_jackknife_intervals_are_clipped_to_the_metrics_range():
    sequences = [[i, i + 1] for i in range(0, 40, 2)]  # every unigram distinct: distinct-1 = 1
    result = gs.estimate(gs.distinct_statistic(sequences, 1), len(sequences), "jackknife",
                         gs.IntervalConfig(n_groups=5), bounds=(0.0, 1.0))
    assert result.value == 1.0 and result.high == 1.0


def test_bootstrap_replicates_of_distinct_n_fall_below_the_estimate(sequences):
    # the reason distinct-n uses the jackknife: a repeated sequence adds n-grams, never types
    statistic = gs.distinct_statistic(sequences, 2)
    n = len(sequences)
    weights = np.random.default_rng(0).multinomial(n, np.full(n, 1 / n), size=200)
    replicates = statistic(weights.astype(float))
    assert np.mean(replicates) < _at_one(statistic, n)


def test_undefined_metrics_give_nan_without_an_interval():
    result = gs.estimate(gs.zipf_statistic([[7, 7, 7]]), 1, "jackknife", gs.IntervalConfig())
    assert math.isnan(result.value) and result.method == ""
