"""Generation metrics with 95% confidence intervals over prompts.

A benchmark row is one sequence per prompt (prompt j = 1..n). Every metric here is written as a
*statistic of prompt weights*: a function of w in N^n, where w_j is how many times prompt j's
sequence is counted. w = 1 gives the point estimate, the same number as the plain functions of
``lmbench.evaluation.generation_metrics``; resampling w gives the interval. A statistic takes a
(R, n) matrix of weights and returns R values, so a thousand resamples of a ratio of sums is one
matrix product. Two interval methods:

- **bootstrap** (Efron 1979), for metrics that are sums, means or maxima over sequences:
  w ~ Multinomial(n, 1/n), ``n_bootstrap`` times; the 2.5 / 97.5 percentiles. Resampling
  repeats whole sequences, which is exact for these (corpus BLEU of a repeated sentence is the
  BLEU of its statistics counted twice).
- **grouped jackknife** (delete-a-group; Shao & Wu 1989), for pooled statistics whose value
  depends on how many *different* sequences are pooled: distinct-n (a repeated sequence adds
  n-grams but never new types, so bootstrap replicates of distinct-n come out a quarter or more
  below the estimate at 500 x 128 tokens), the Zipf fit (same cause, through the tail of the
  rank-frequency curve) and MAUVE (k-means on repeated points, and costly to recompute). The
  prompts are dealt into G groups (by a seeded permutation); leaving out group g gives
  theta_(g), se^2 = (G - 1) / G * sum_g (theta_(g) - mean)^2, interval theta +- 1.96 se,
  clipped to the metric's range. The Efron-Stein inequality makes this variance conservative.

Self-BLEU is the mean of per-sequence scores, each computed once against all other sequences
(``self_bleu_scores``: exact, in one pass over the n-grams instead of nltk's n^2 reference
scans); its bootstrap resamples those scores. Corpus BLEU against the references is rebuilt
from per-sequence clipped counts (``bleu_statistics``), exactly as nltk's ``corpus_bleu`` with
smoothing method 1 sums them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.evaluation.generation_metrics import NGramIndex, Tokens, _as_list, _ngrams

Statistic = Callable[[np.ndarray], np.ndarray]  # (R, n) prompt weights -> (R,) values
Z95 = 1.959963984540054  # the 97.5% normal quantile
BLEU_EPSILON = 0.1  # nltk SmoothingFunction().method1's epsilon


@dataclass(frozen=True)
class Estimate:
    """A metric's value on all prompts and its 95% interval (NaN when undefined)."""

    value: float
    low: float
    high: float
    method: str  # "bootstrap", "jackknife", or "" when no interval was computed

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.low, self.high], "method": self.method}


@dataclass(frozen=True)
class IntervalConfig:
    n_bootstrap: int = 1000  # bootstrap resamples of the prompts
    n_groups: int = 20  # jackknife groups (at most one per prompt)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_bootstrap < 0 or self.n_groups < 0:
            raise LmbenchError("n_bootstrap and n_groups must be >= 0")


NAN = Estimate(math.nan, math.nan, math.nan, "")


def estimate(statistic: Statistic, n: int, method: str, config: IntervalConfig,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> Estimate:
    """The point value of ``statistic`` on ``n`` prompts and its interval by ``method``."""
    value = float(statistic(np.ones((1, n)))[0])
    if not math.isfinite(value):
        return Estimate(value, math.nan, math.nan, "")
    rng = np.random.default_rng(config.seed)
    if method == "bootstrap" and config.n_bootstrap > 0 and n > 1:
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=config.n_bootstrap)  # (R, n)
        replicates = statistic(weights.astype(np.float64))
        low, high = np.nanpercentile(replicates, [2.5, 97.5])
        return Estimate(value, float(low), float(high), method)
    groups = min(config.n_groups, n)
    if method == "jackknife" and groups > 1:
        member = rng.permutation(n) % groups  # prompt j belongs to group member[j]
        weights = (member[None, :] != np.arange(groups)[:, None]).astype(np.float64)  # (G, n)
        replicates = statistic(weights)
        se = math.sqrt((groups - 1) / groups * float(np.sum((replicates - replicates.mean())**2)))
        return Estimate(value, max(bounds[0], value - Z95 * se), min(bounds[1], value + Z95 * se),
                        method)
    return Estimate(value, math.nan, math.nan, "")


# ----------------------------------------------------------------------- sums, means, maxima


def ratio_statistic(numerators: np.ndarray, denominators: np.ndarray) -> Statistic:
    """Σ w_j a_j / Σ w_j b_j (NaN where the denominator is 0)."""
    a, b = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)

    def statistic(weights: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ a) / (weights @ b)

    return statistic


def mean_statistic(values: np.ndarray) -> Statistic:
    """The weighted mean of the finite ``values`` (a NaN marks a sequence without one)."""
    values = np.asarray(values, np.float64)
    defined = np.isfinite(values)
    return ratio_statistic(np.where(defined, values, 0.0), defined.astype(np.float64))


def max_statistic(values: np.ndarray) -> Statistic:
    """The largest value among the sequences drawn (values >= 0)."""
    values = np.asarray(values, np.float64)
    return lambda weights: ((weights > 0) * values).max(axis=1)


def perplexity_statistic(nll_nats: np.ndarray, n_tokens: np.ndarray) -> Statistic:
    """exp(Σ w NLL / Σ w tokens): sum, then divide, as the evaluator does."""
    ratio = ratio_statistic(nll_nats, n_tokens)
    return lambda weights: np.exp(ratio(weights))


def repetition_counts(sequences: Sequence[Tokens], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, the tokens repeating one of the ``window`` before them, and all tokens."""
    repeats, totals = [], []
    for tokens in sequences:
        tokens, last_seen, count = _as_list(tokens), {}, 0
        for t, token in enumerate(tokens):
            previous = last_seen.get(token)
            count += previous is not None and t - previous <= window
            last_seen[token] = t
        repeats.append(count)
        totals.append(len(tokens))
    return np.array(repeats, np.float64), np.array(totals, np.float64)


def seq_rep_values(sequences: Sequence[Tokens], n: int = 4) -> np.ndarray:
    """Per sequence 1 - unique n-grams / n-grams (NaN when shorter than n)."""
    out = []
    for tokens in sequences:
        grams = _ngrams(tokens, n)
        out.append(1.0 - len(set(grams)) / len(grams) if grams else math.nan)
    return np.array(out, np.float64)


def copy_counts(sequences: Sequence[Tokens], index: NGramIndex) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, its n-grams found in the training stream, and all its n-grams."""
    found = [index.found(tokens) for tokens in sequences]
    return (np.array([f.sum() for f in found], np.float64),
            np.array([len(f) for f in found], np.float64))


# ------------------------------------------------------------------------------------ BLEU


def bleu_statistics(sequences: Sequence[Tokens], references: Sequence[Tokens],
                    max_order: int = 4) -> np.ndarray:
    """(n, 2 * max_order + 2) per sequence: clipped matches and n-gram totals for each order
    (nltk's ``modified_precision`` numerator and denominator), hypothesis and reference length."""
    rows = []
    for hypothesis, reference in zip(sequences, references, strict=True):
        row = []
        for order in range(1, max_order + 1):
            counts = Counter(_ngrams(hypothesis, order))
            ref_counts = Counter(_ngrams(reference, order))
            row += [sum(min(c, ref_counts[g]) for g, c in counts.items()),
                    max(1, sum(counts.values()))]
        rows.append(row + [len(_as_list(hypothesis)), len(_as_list(reference))])
    return np.array(rows, np.float64).reshape(len(rows), 2 * max_order + 2)


def bleu_from_statistics(totals: np.ndarray, max_order: int = 4) -> float:
    """Corpus BLEU from summed ``bleu_statistics`` (uniform weights, smoothing method 1)."""
    matches, counts = totals[0 : 2 * max_order : 2], totals[1 : 2 * max_order : 2]
    hyp_len, ref_len = totals[-2], totals[-1]
    if matches[0] == 0:
        return 0.0
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    precisions = np.where(matches == 0, BLEU_EPSILON, matches) / counts
    return float(brevity * math.exp(math.fsum(np.log(precisions) / max_order)))


def bleu_statistic(sequences: Sequence[Tokens], references: Sequence[Tokens],
                   max_order: int = 4) -> Statistic:
    stats = bleu_statistics(sequences, references, max_order)
    return lambda weights: np.array([bleu_from_statistics(w @ stats, max_order)
                                     for w in weights])


def self_bleu_scores(sequences: Sequence[Tokens], max_order: int = 4) -> np.ndarray:
    """Per sequence, BLEU against all the other sequences as references: the terms whose mean
    is ``generation_metrics.self_bleu`` (nltk's ``sentence_bleu``, smoothing method 1).

    For each n-gram the largest and second-largest count over sequences (and which sequence
    holds the largest) give its largest count among the *other* sequences, so one pass over
    the n-grams replaces n^2 reference scans."""
    texts = [_as_list(tokens) for tokens in sequences]
    n = len(texts)
    if n < 2:
        raise LmbenchError(f"self-BLEU needs at least 2 sequences, got {n}")
    matches = np.zeros((n, max_order))
    counts = np.zeros((n, max_order))
    for order in range(1, max_order + 1):
        per_sequence = [Counter(_ngrams(t, order)) for t in texts]
        best: dict = {}  # n-gram -> [largest count, its sequence, second-largest count]
        for j, grams in enumerate(per_sequence):
            for gram, count in grams.items():
                top = best.setdefault(gram, [0, -1, 0])
                if count > top[0]:
                    top[:] = [count, j, top[0]]
                elif count > top[2]:
                    top[2] = count
        for j, grams in enumerate(per_sequence):
            clipped = 0
            for gram, count in grams.items():
                top = best[gram]
                clipped += min(count, top[2] if top[1] == j else top[0])
            matches[j, order - 1] = clipped
            counts[j, order - 1] = max(1, sum(grams.values()))
    lengths = np.array([len(t) for t in texts])
    length_counts = Counter(lengths.tolist())
    scores = np.empty(n)
    for j in range(n):
        length_counts[lengths[j]] -= 1  # the references are the other sequences
        others = [length for length, c in length_counts.items() if c > 0]
        length_counts[lengths[j]] += 1
        ref_len = min(others, key=lambda r: (abs(r - lengths[j]), r))
        totals = np.empty(2 * max_order + 2)
        totals[0 : 2 * max_order : 2], totals[1 : 2 * max_order : 2] = matches[j], counts[j]
        totals[-2:] = lengths[j], ref_len
        scores[j] = bleu_from_statistics(totals, max_order)
    return scores


# -------------------------------------------------------------------- pooled (jackknife) ones


def distinct_statistic(sequences: Sequence[Tokens], n: int) -> Statistic:
    """|types of n-grams in the drawn sequences| / Σ w n-grams (meant for the jackknife, whose
    weights are 0 or 1)."""
    vocabulary: dict = {}
    gram_ids, owners, sizes = [], [], []
    for j, tokens in enumerate(sequences):
        grams = _ngrams(tokens, n)
        gram_ids += [vocabulary.setdefault(g, len(vocabulary)) for g in grams]
        owners += [j] * len(grams)
        sizes.append(len(grams))
    gram_ids, owners = np.array(gram_ids, np.int64), np.array(owners, np.int64)
    sizes = np.array(sizes, np.float64)

    def statistic(weights: np.ndarray) -> np.ndarray:
        out = np.empty(len(weights))
        for r, w in enumerate(weights):
            present = np.zeros(len(vocabulary), bool)
            present[gram_ids[w[owners] > 0]] = True
            total = w @ sizes
            out[r] = present.sum() / total if total else 0.0
        return out

    return statistic


def zipf_statistic(sequences: Sequence[Tokens], max_rank: int = 5000) -> Statistic:
    """``zipf_coefficient`` of the pooled token counts Σ w_j counts_j (NaN below 2 types)."""
    vocabulary: dict = {}
    token_ids, owners, amounts = [], [], []
    for j, tokens in enumerate(sequences):
        for token, count in Counter(_as_list(tokens)).items():
            token_ids.append(vocabulary.setdefault(token, len(vocabulary)))
            owners.append(j)
            amounts.append(count)
    token_ids, owners = np.array(token_ids, np.int64), np.array(owners, np.int64)
    amounts = np.array(amounts, np.float64)

    def statistic(weights: np.ndarray) -> np.ndarray:
        out = np.full(len(weights), math.nan)
        for r, w in enumerate(weights):
            counts = np.bincount(token_ids, weights=w[owners] * amounts, minlength=len(vocabulary))
            frequencies = np.sort(counts[counts > 0])[::-1][:max_rank]
            if len(frequencies) >= 2:
                ranks = np.arange(1, len(frequencies) + 1, dtype=np.float64)
                out[r] = -np.polyfit(np.log(ranks), np.log(frequencies), 1)[0]
        return out

    return statistic
