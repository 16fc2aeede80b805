"""Generation metrics on hand-made examples whose values are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from lmbench.core.errors import LmbenchError
from lmbench.evaluation.generation_metrics import (
    NGramIndex,
    bleu,
    copy_rate,
    distinct_n,
    longest_copy,
    repetition_rate,
    self_bleu,
    seq_rep_n,
    summarize,
    zipf_coefficient,
)


def test_distinct_n():
    assert distinct_n([[1, 2, 3, 1]], 1) == 3 / 4  # types {1, 2, 3} of 4 tokens
    assert distinct_n([[1, 2, 3, 1]], 2) == 1.0  # (1,2) (2,3) (3,1)
    assert distinct_n([[1, 2], [1, 2]], 2) == 1 / 2  # pooled: (1,2) twice
    assert distinct_n([["a", "b", "a"], ["b"]], 1) == 2 / 4
    assert distinct_n([[1]], 2) == 0.0  # no bigrams at all
    assert distinct_n([np.array([4, 4, 4, 4])], 3) == 1 / 2


def test_seq_rep_n():
    # 4-grams of 1 2 3 4 1 2 3 4: 1234 2341 3412 4123 1234 -> 4 unique of 5 -> 0.2
    assert seq_rep_n([[1, 2, 3, 4, 1, 2, 3, 4]], 4) == pytest.approx(0.2)
    # averaged per sequence with 1 2 3 4 5 (no repeat); a sequence under n tokens is skipped
    assert seq_rep_n([[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4, 5], [7]], 4) == pytest.approx(0.1)
    assert seq_rep_n([[5, 5, 5]], 1) == pytest.approx(2 / 3)
    assert seq_rep_n([[1, 2]], 4) == 0.0


def test_repetition_rate():
    tokens = [1, 2, 1, 3, 1]  # repeats at t = 2 (of t = 0) and t = 4 (of t = 2): 2 of 5
    assert repetition_rate([tokens]) == pytest.approx(2 / 5)
    assert repetition_rate([tokens], window=1) == 0.0  # each repeat is 2 tokens back
    assert repetition_rate([tokens], window=2) == pytest.approx(2 / 5)
    assert repetition_rate([tokens, [9, 9]]) == pytest.approx(3 / 7)  # pooled over tokens
    assert repetition_rate([]) == 0.0


@pytest.mark.parametrize("s", [1.0, 1.5, 2.0])
def test_zipf_coefficient_of_an_exact_zipf_sample(s):
    # token r appears round(C / r^s) times, so ln f_r = ln C - s ln r up to rounding
    counts = [round(1e5 / r**s) for r in range(1, 51)]
    tokens = [r for r, count in enumerate(counts) for _ in range(count)]
    half = len(tokens) // 2
    assert zipf_coefficient([tokens[:half], tokens[half:]]) == pytest.approx(s, abs=0.01)


def test_zipf_coefficient_uses_the_top_ranks_only():
    counts = [round(1e5 / r) for r in range(1, 51)] + [1] * 50  # a flat tail after rank 50
    tokens = [[r] * count for r, count in enumerate(counts)]
    assert zipf_coefficient(tokens, max_rank=50) == pytest.approx(1.0, abs=0.01)
    assert zipf_coefficient(tokens) > 1.2  # the tail drags the fit
    with pytest.raises(LmbenchError, match="2 token types"):
        zipf_coefficient([[3, 3, 3]])


def test_copying_share_and_longest_span():
    train = list(range(100))
    generated = list(range(10, 20)) + [500, 501, 502]  # 10 copied tokens, then new ones
    # 8-grams: 6 in all; those starting at 10, 11, 12 are copied
    assert copy_rate([generated], train) == pytest.approx(3 / 6)
    assert longest_copy([generated], train) == 10
    assert copy_rate([[1, 2, 3]], train) == 0.0 and longest_copy([[1, 2, 3]], train) == 0


def test_longest_copy_checks_spans_verbatim():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50, size=5000)
    index = NGramIndex(train, n=8)
    # 30 tokens from one place, then 12 from another
    generated = np.concatenate([train[50:80], train[2000:2012]])
    assert index.longest_span(generated) == 30
    assert longest_copy([generated, train[300:340]], index) == 40
    assert copy_rate([train[10:30]], index) == 1.0
    with pytest.raises(LmbenchError, match="holds 8-grams"):
        copy_rate([generated], index, n=4)


def test_a_run_of_copied_n_grams_stitched_from_two_places_is_not_one_copy():
    # 100..108 occurs in one place and 101..109 in another, so every 8-gram of 100..109 is in
    # the training stream, but the longest verbatim span is 9 tokens, not 10
    train = list(range(100, 109)) + [0, 0] + list(range(101, 110))
    generated = list(range(100, 110))
    assert copy_rate([generated], train) == 1.0
    assert longest_copy([generated], train) == 9


def test_copying_over_token_strings():
    train = "the cat sat on the mat and the dog sat on the log".split()
    generated = "a dog sat on the mat".split()  # 3-grams: (a dog sat) new, 3 copied
    assert copy_rate([generated], train, n=3) == pytest.approx(3 / 4)
    assert longest_copy([generated], train, n=3) == 4  # "sat on the mat"
    assert copy_rate([["zebra", "cat", "sat"]], train, n=3) == 0.0


def test_self_bleu():
    same = [[1, 2, 3, 4, 5, 6, 7, 8]] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]) == 0.0  # no shared unigram
    partial = self_bleu([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [7, 8, 7, 8, 7, 8]])
    assert 0.0 < partial < 1.0
    with pytest.raises(LmbenchError, match="at least 2"):
        self_bleu([[1, 2, 3]])


def test_corpus_bleu_against_references():
    hypotheses = [[1, 2, 3, 4, 5], "the cat sat on the mat".split()]
    assert bleu(hypotheses, hypotheses) == pytest.approx(1.0)
    several = [[[9, 9, 9, 9, 9], [1, 2, 3, 4, 5]], ["the cat sat on the mat".split()]]
    assert bleu(hypotheses, several) == pytest.approx(1.0)  # the best reference counts
    assert bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 6]]) < 1.0
    with pytest.raises(LmbenchError, match="one reference entry per hypothesis"):
        bleu(hypotheses, hypotheses[:1])


def test_summarize_reports_what_is_defined():
    sequences = [list(range(20)), list(range(5, 25))]
    out = summarize(sequences, train=list(range(30)), references=sequences)
    assert set(out) == {"distinct_1", "distinct_2", "distinct_3", "seq_rep_4",
                        "repetition_rate_128", "zipf_coefficient", "self_bleu_4", "copy_rate_8",
                        "longest_copy", "bleu_4"}
    assert out["copy_rate_8"] == 1.0 and out["longest_copy"] == 20.0 and out["bleu_4"] == 1.0
    assert set(summarize([[1, 1]])) == {"distinct_1", "distinct_2", "distinct_3", "seq_rep_4",
                                        "repetition_rate_128"}
