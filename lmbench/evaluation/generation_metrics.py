"""Metrics of generated text: diversity, repetition, Zipf's law, copying and BLEU.

Every function takes ``sequences``: a list of generated sequences, each a list (or array) of
tokens, either token ids or token strings (any hashable tokens work, as long as one call does
not mix kinds). Below, a sequence is x_1..x_T and g_n(x) is its list of n-grams
(x_t, ..., x_{t+n-1}), t = 1..T-n+1.

- ``distinct_n`` (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
  Conversation Models"): over all sequences pooled, |set of n-grams| / |n-grams|. Li et al.
  divide by the number of generated *tokens*; we divide by the number of n-grams (the two agree
  for n = 1), so the value is a proportion in [0, 1], as most implementations do.
- ``self_bleu`` (Zhu et al. 2018, Texygen; used by Holtzman et al. 2019): the mean over i of
  BLEU(x_i; references = every other sequence), uniform weights up to ``max_order`` (4: Self-
  BLEU-4), nltk's ``sentence_bleu`` with smoothing method 1 (Chen & Cherry 2014) as in Holtzman
  et al.'s code. Higher means the samples resemble each other more (less diverse).
- ``seq_rep_n`` (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training"):
  per sequence 1 - |set(g_n(x))| / |g_n(x)|, averaged over the sequences (their seq-rep-4).
- ``repetition_rate`` (Welleck et al.'s rep/ℓ, applied to the text itself): the share of tokens
  x_t equal to one of x_{t-ℓ}..x_{t-1} of the same sequence; they report ℓ in {16, 32, 128,
  512}.
- ``zipf_coefficient`` (Holtzman et al. 2019, after Zipf 1949): with f_r the r-th largest token
  count over all sequences, the least-squares fit ln f_r = c - s ln r over r = 1..min(|types|,
  5000) gives s, as in their ``metrics/zipf.py``. Natural text has s near 1; larger s means a
  more skewed vocabulary.
- ``copy_rate`` and ``longest_copy``: the share of generated n-grams (n = 8 by default) that
  occur in the training token stream, pooled over sequences, and the longest span of generated
  tokens found verbatim in it (the novelty analysis of McCoy et al. 2021, RAVEN). Training
  n-grams are held in an ``NGramIndex``: 64-bit hashes of every window, sorted, so a lookup is a
  binary search; build it once and reuse it. Spans are verified token by token; the copy share
  could only be overstated by a hash collision (probability about N·M / 2^64).
- ``bleu`` (Papineni et al. 2002): corpus BLEU of the sequences against references with nltk's
  ``corpus_bleu``, as a fraction in [0, 1] (multiply by 100 for the usual scale).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from lmbench.core.errors import LmbenchError

Tokens = Sequence[Hashable]  # one sequence: token ids or token strings


def _as_list(tokens) -> list:
    return tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)


def _ngrams(tokens, n: int) -> list[tuple]:
    tokens = _as_list(tokens)
    return list(zip(*(tokens[i:] for i in range(n))))


def _check_n(n: int, what: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LmbenchError(f"{what} must be an integer >= 1, got {n!r}")


# ------------------------------------------------------------------------ diversity, repetition


def distinct_n(sequences: Sequence[Tokens], n: int = 1) -> float:
    """Distinct n-grams / all n-grams, pooled over ``sequences`` (0.0 if there are none)."""
    _check_n(n)
    grams = [g for tokens in sequences for g in _ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(sequences: Sequence[Tokens], max_order: int = 4, *, sample_size: int | None = None,
              seed: int = 0) -> float:
    """Mean BLEU of each sequence against all the others (Self-BLEU-``max_order``). The cost is
    quadratic in the number of sequences; ``sample_size`` scores only that many hypotheses,
    chosen with ``seed`` (Holtzman et al. use 1000), still against all the others."""
    _check_n(max_order, "max_order")
    if len(sequences) < 2:
        raise LmbenchError(f"self-BLEU needs at least 2 sequences, got {len(sequences)}")
    texts = [_as_list(tokens) for tokens in sequences]
    chosen = range(len(texts))
    if sample_size is not None and sample_size < len(texts):
        chosen = random.Random(seed).sample(range(len(texts)), sample_size)
    weights = (1.0 / max_order,) * max_order
    smoothing = SmoothingFunction().method1
    scores = [sentence_bleu(texts[:i] + texts[i + 1:], texts[i], weights=weights,
                            smoothing_function=smoothing) for i in chosen]
    return float(np.mean(scores))


def seq_rep_n(sequences: Sequence[Tokens], n: int = 4) -> float:
    """Mean over sequences of 1 - unique n-grams / n-grams (sequences shorter than n are
    skipped; 0.0 if all are)."""
    _check_n(n)
    values = []
    for tokens in sequences:
        grams = _ngrams(tokens, n)
        if grams:
            values.append(1.0 - len(set(grams)) / len(grams))
    return float(np.mean(values)) if values else 0.0


def repetition_rate(sequences: Sequence[Tokens], window: int = 128) -> float:
    """Share of all tokens that repeat one of the ``window`` tokens before them in their own
    sequence (0.0 if there are no tokens)."""
    _check_n(window, "window")
    repeats = total = 0
    for tokens in sequences:
        last_seen: dict = {}
        for t, token in enumerate(_as_list(tokens)):
            previous = last_seen.get(token)
            repeats += previous is not None and t - previous <= window
            last_seen[token] = t
            total += 1
    return repeats / total if total else 0.0


def zipf_coefficient(sequences: Sequence[Tokens], max_rank: int = 5000) -> float:
    """s of the least-squares fit ln f_r = c - s ln r over the ``max_rank`` most frequent
    tokens (Holtzman et al. 2019)."""
    counts = Counter(token for tokens in sequences for token in _as_list(tokens))
    frequencies = np.array(sorted(counts.values(), reverse=True)[:max_rank], dtype=np.float64)
    if len(frequencies) < 2:
        raise LmbenchError(f"a Zipf fit needs at least 2 token types, got {len(frequencies)}")
    ranks = np.arange(1, len(frequencies) + 1, dtype=np.float64)
    slope = np.polyfit(np.log(ranks), np.log(frequencies), 1)[0]
    return float(-slope)


# ---------------------------------------------------------------------------------- copying


def _hash_windows(ids: np.ndarray, n: int) -> np.ndarray:
    """(M,) uint64 hashes of the M = len(ids) - n + 1 windows of n ids (splitmix64 rounds)."""
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)  # (M, n), a view
    h = np.zeros(len(windows), np.uint64)
    for k in range(n):
        h = h ^ (windows[:, k].astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # wraps mod 2^64
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return h


class NGramIndex:
    """Every n-gram of a training token stream (ids or strings), hashed and sorted."""

    def __init__(self, stream: Tokens, n: int = 8) -> None:
        _check_n(n)
        self.n = n
        tokens = _as_list(stream)
        self.vocab_: dict | None = None  # token string -> int, for streams of strings
        if tokens and not isinstance(tokens[0], (int, np.integer)):
            self.vocab_ = {}
            for token in tokens:
                self.vocab_.setdefault(token, len(self.vocab_))
        self.stream_ = self.encode(tokens)
        if len(self.stream_) < n:
            raise LmbenchError(f"the training stream has {len(self.stream_)} tokens, fewer than "
                               f"n = {n}")
        keys = _hash_windows(self.stream_, n)
        self.positions_ = np.argsort(keys, kind="stable")  # window starts in key order
        self.keys_ = keys[self.positions_]

    def encode(self, tokens: Tokens) -> np.ndarray:
        """Tokens as int64 ids of this index (-1 for a string never seen in training)."""
        tokens = _as_list(tokens)
        if self.vocab_ is None:
            return np.asarray(tokens, dtype=np.int64).reshape(-1)
        return np.array([self.vocab_.get(t, -1) for t in tokens], dtype=np.int64)

    def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each n-gram of ``ids``, the [lo, hi) range of equal keys in ``keys_``."""
        keys = _hash_windows(ids, self.n)
        lo = np.searchsorted(self.keys_, keys, side="left")
        hi = np.searchsorted(self.keys_, keys, side="right")
        known = (np.lib.stride_tricks.sliding_window_view(ids, self.n) >= 0).all(axis=1)
        return lo, np.where(known, hi, lo)  # an unseen string never matches

    def found(self, tokens: Tokens) -> np.ndarray:
        """(T - n + 1,) bool: whether each n-gram of ``tokens`` occurs in the training stream."""
        ids = self.encode(tokens)
        if len(ids) < self.n:
            return np.zeros(0, dtype=bool)
        lo, hi = self._lookup(ids)
        return hi > lo

    def longest_span(self, tokens: Tokens) -> int:
        """The longest run of ``tokens`` found verbatim in the training stream; 0 when no
        n-gram of it is (runs shorter than n are not searched)."""
        ids, stream, n = self.encode(tokens), self.stream_, self.n
        if len(ids) < n:
            return 0
        lo, hi = self._lookup(ids)
        windows = np.lib.stride_tricks.sliding_window_view(stream, n)  # (N - n + 1, n)
        best = 0
        for s in np.flatnonzero(hi > lo):
            if len(ids) - s <= best:
                break  # nothing starting here or later can be longer
            starts = self.positions_[lo[s] : hi[s]]  # training windows with the same hash
            starts = starts[(windows[starts] == ids[s : s + n]).all(axis=1)]  # exact check
            length = n if len(starts) else 0
            while len(starts) and s + length < len(ids):  # extend every occurrence at once
                ahead = starts + length
                starts = starts[ahead < len(stream)]
                starts = starts[stream[starts + length] == ids[s + length]]
                length += bool(len(starts))
            best = max(best, length)
        return best


def _index(train: NGramIndex | Tokens, n: int) -> NGramIndex:
    if isinstance(train, NGramIndex):
        if train.n != n:
            raise LmbenchError(f"the NGramIndex holds {train.n}-grams, asked for n = {n}")
        return train
    return NGramIndex(train, n)


def copy_rate(sequences: Sequence[Tokens], train: NGramIndex | Tokens, n: int = 8) -> float:
    """Share of the generated n-grams, pooled, that occur in ``train`` (an ``NGramIndex`` or a
    token stream); 0.0 if there are no n-grams."""
    index = _index(train, n)
    found = [index.found(tokens) for tokens in sequences]
    total = sum(len(f) for f in found)
    return float(sum(int(f.sum()) for f in found) / total) if total else 0.0


def longest_copy(sequences: Sequence[Tokens], train: NGramIndex | Tokens, n: int = 8) -> int:
    """The longest generated span found verbatim in ``train``, over all sequences (0 if none
    reaches n tokens)."""
    index = _index(train, n)
    return max((index.longest_span(tokens) for tokens in sequences), default=0)


# -------------------------------------------------------------------------------------- BLEU


def bleu(sequences: Sequence[Tokens], references: Sequence, max_order: int = 4, *,
         smooth: bool = True) -> float:
    """Corpus BLEU of ``sequences`` against ``references``: one reference sequence per
    hypothesis, or a list of reference sequences per hypothesis. ``smooth`` uses smoothing
    method 1 (Chen & Cherry 2014), so an order without a match does not zero the score."""
    _check_n(max_order, "max_order")
    if len(references) != len(sequences):
        raise LmbenchError(f"BLEU needs one reference entry per hypothesis, got "
                           f"{len(references)} for {len(sequences)}")
    grouped = []
    for entry in references:
        entry = _as_list(entry)
        several = bool(entry) and isinstance(entry[0], (list, tuple, np.ndarray))
        grouped.append([_as_list(r) for r in entry] if several else [entry])
    hypotheses = [_as_list(tokens) for tokens in sequences]
    smoothing = SmoothingFunction().method1 if smooth else None
    return float(corpus_bleu(grouped, hypotheses, weights=(1.0 / max_order,) * max_order,
                             smoothing_function=smoothing))


# ----------------------------------------------------------------------------------- summary


def summarize(sequences: Sequence[Tokens], *, train: NGramIndex | Tokens | None = None,
              references: Sequence | None = None) -> dict[str, float]:
    """The standard set, as a flat dict: distinct-1/2/3, seq-rep-4, rep/128, Zipf s, Self-BLEU-4
    (with at least 2 sequences), copy share and longest copy of 8-grams (with ``train``), and
    BLEU-4 (with ``references``). A metric that is undefined on the input is left out."""
    out = {f"distinct_{n}": distinct_n(sequences, n) for n in (1, 2, 3)}
    out["seq_rep_4"] = seq_rep_n(sequences, 4)
    out["repetition_rate_128"] = repetition_rate(sequences, 128)
    if len({t for tokens in sequences for t in _as_list(tokens)}) >= 2:
        out["zipf_coefficient"] = zipf_coefficient(sequences)
    if len(sequences) >= 2:
        out["self_bleu_4"] = self_bleu(sequences, 4)
    if train is not None:
        index = _index(train, 8)
        out["copy_rate_8"] = copy_rate(sequences, index)
        out["longest_copy"] = float(longest_copy(sequences, index))
    if references is not None:
        out["bleu_4"] = bleu(sequences, references, 4)
    return out
