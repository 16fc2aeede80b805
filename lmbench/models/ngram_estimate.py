"""Vectorized n-gram counting and smoothing into backoff tables (the estimation half of ``ngram``).

Counting builds one sorted table per order with ``numpy.unique``: the k-gram ending at position i
is keyed ``id[k-1](i-1) * (V+1) + token(i)``, where ``id[k-1](i-1)`` is the row of the (k-1)-gram
ending at i-1. Rows are therefore sorted by (context row, word), the children of a context form
one contiguous range, and no Python loop touches tokens.

Every smoothing method is written in the interpolated form of Chen & Goodman 1998 (TR-10-98,
eq. 1 / section 2.8):

    p_k(w | c) = alpha_k(c, w) + gamma_k(c) * p_{k-1}(w | c')       c' = c without its first word

with p_0 the uniform distribution over the V tokens. The table stores, per row, ``ln p_k`` and,
for rows that are contexts, ``ln gamma`` as the backoff weight. An ARPA backoff model with these
numbers gives exactly the interpolated probabilities (for w unseen after c, p(w|c) = gamma(c)
p(w|c')), which is how KenLM writes interpolated modified Kneser-Ney.

- ``mle``: alpha = c(cw) / c(c.), gamma = 0 (unseen events get probability 0). A context never
  seen backs off to the shorter one (backoff weight 1), so every distribution sums to 1.
- ``add-k`` (Laplace k = 1, Lidstone k < 1): alpha = c(cw) / (c(c.) + kV), gamma = kV / (c(c.) +
  kV), backing off straight to uniform (Chen & Goodman eq. 2 at the highest order only).
- ``witten-bell``: alpha = c(cw) / (c(c.) + N1+(c.)), gamma = N1+(c.) / (c(c.) + N1+(c.))
  (Witten & Bell 1991; Chen & Goodman eq. 15).
- ``kneser-ney``: interpolated KN (Kneser & Ney 1995; Chen & Goodman eq. 18-19) with one
  discount per order, D = n1 / (n1 + 2 n2) (Ney et al. 1994) unless given.
- ``modified-kneser-ney``: Chen & Goodman eq. 17 with D1, D2, D3+ per order from the counts of
  counts, D_j = j - (j+1) Y n_{j+1} / n_j, Y = n1 / (n1 + 2 n2) (eq. 26), computed on the adjusted
  counts as KenLM's ``lmplz`` does (Heafield et al. 2013, section 3).

Kneser-Ney methods count with *adjusted* counts below the highest order: the number of distinct
words seen before the n-gram (continuation counts, Chen & Goodman eq. 19), except n-grams that
start with ``<s>``, which cannot be extended to the left and keep their raw counts (KenLM).

``SMOOTHING_NOTES`` explains results of a method that look like bugs and are not (Witten-Bell's
perplexity rising with the order), for listings such as ``lmbench models`` and for reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmbench.core.errors import LmbenchError, did_you_mean

SMOOTHINGS = ("mle", "add-k", "witten-bell", "kneser-ney", "modified-kneser-ney")
FROM_ARPA = "from-arpa"  # the smoothing of a model read from an ARPA file: known only to its author
SMOOTHING_ALIASES = {"laplace": "add-k", "lidstone": "add-k", "kn": "kneser-ney",
                     "mkn": "modified-kneser-ney", "wb": "witten-bell"}

# Surprises of a method, by smoothing name: the figure, why it is the method and not the code,
# and the reason; the figures were measured with this code on the corpora named.
SMOOTHING_NOTES = {
    "witten-bell": (
        "perplexity can rise with the order on a small corpus (Brown test: 167.1, 188.8, 213.2 "
        "at orders 2, 3, 4, while Kneser-Ney falls: 156.0, 151.1, 150.7). nltk.lm's "
        "WittenBellInterpolated gives the same rise on the same text "
        "(tests/models/test_witten_bell_nltk.py), so it is the method, not the code. "
        "Witten-Bell keeps the weight c / (c + N1+) on a context's maximum-likelihood "
        "estimate, which depends only on the context's count c and its number of distinct "
        "continuations N1+, and it discounts nothing: a context seen once keeps half its mass "
        "on the one word seen after it. At orders 3 and 4, 14-16% of Brown test tokens follow "
        "a context seen at most 3 times in train, and 80% of those are a word never seen after "
        "it, so each such order leaves them at most half their lower-order probability. "
        "Kneser-Ney discounts that single count by D = 0.88 (order 3) and 0.94 (order 4) and "
        "so backs off instead."
    ),
}


def canonical_smoothing(name: str) -> str:
    name = SMOOTHING_ALIASES.get(name, name)
    if name not in SMOOTHINGS and name != FROM_ARPA:
        known = [*SMOOTHINGS, *SMOOTHING_ALIASES]
        raise LmbenchError(f"unknown smoothing {name!r}{did_you_mean(name, known)}")
    return name


@dataclass
class Level:
    """One order's table: rows sorted by ``key = context_row * (V+1) + word``."""

    keys: np.ndarray  # (n,) int64, sorted
    log_prob: np.ndarray  # (n,) float64, ln p(word | context)
    log_backoff: np.ndarray  # (n,) float64, ln gamma when this row is a context, else 0


@dataclass
class _Counts:
    keys: np.ndarray  # (n,) int64 sorted keys (order 1: the token ids 0..V, V = <s>)
    context: np.ndarray  # (n,) row of the context in the order below (order 1: zeros)
    suffix: np.ndarray  # (n,) row of the n-gram minus its first word in the order below
    raw: np.ndarray  # (n,) raw counts
    starts_with_bos: np.ndarray  # (n,) bool


def count_ngrams(stream: np.ndarray, boundary_id: int, vocab_size: int, order: int
                 ) -> list[_Counts]:
    """Count 1..order-grams of a token stream; ``boundary_id`` ends a segment, ``<s>`` = V starts
    the next. Returns one ``_Counts`` per order (index 0 = unigrams, which include ``<s>``)."""
    V, bos = vocab_size, vocab_size
    width = V + 1
    stream = np.asarray(stream, dtype=np.int64)
    # Insert <s> before the first token and after every boundary that has tokens after it.
    ends = np.flatnonzero(stream[:-1] == boundary_id) + 1
    padded = np.insert(stream, np.concatenate(([0], ends)), bos)  # (N + segments,)
    index = np.arange(len(padded))
    segment_start = np.maximum.accumulate(np.where(padded == bos, index, 0))
    depth = index - segment_start  # tokens since this segment's <s> (0 at <s> itself)

    unigram_raw = np.bincount(padded, minlength=width).astype(np.int64)
    levels = [_Counts(np.arange(width), np.zeros(width, np.int64), np.zeros(width, np.int64),
                      unigram_raw, np.arange(width) == bos)]
    row_ending_at = padded  # row of the 1-gram ending at each position
    for k in range(2, order + 1):
        positions = np.flatnonzero(depth >= k - 1)
        keys = row_ending_at[positions - 1] * width + padded[positions]
        unique, first, inverse, raw = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True)
        context = unique // width
        suffix = row_ending_at[positions[first]]
        levels.append(_Counts(unique, context, suffix, raw,
                              levels[-1].starts_with_bos[context]))
        row_ending_at = np.full(len(padded), -1, np.int64)
        row_ending_at[positions] = inverse
    return levels


def _adjusted_counts(levels: list[_Counts]) -> list[np.ndarray]:
    """Continuation counts below the top order; raw counts at the top and for <s>-initial rows."""
    adjusted = []
    for k, level in enumerate(levels):
        if k == len(levels) - 1:
            adjusted.append(level.raw.copy())
            continue
        left_extensions = np.bincount(levels[k + 1].suffix, minlength=len(level.raw))
        adjusted.append(np.where(level.starts_with_bos, level.raw, left_extensions))
    return adjusted


def _counts_of_counts(counts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """n_j for j = 1..4 over the rows in ``mask``."""
    return np.bincount(np.minimum(counts[mask], 5), minlength=6)[1:5].astype(np.float64)


FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM lmplz --discount_fallback defaults


def modified_kn_discounts(counts: np.ndarray, mask: np.ndarray, order: int,
                          fallback: bool) -> tuple[np.ndarray, bool]:
    """(D1, D2, D3+) of Chen & Goodman eq. 26 from counts of counts (as KenLM's lmplz), and
    whether the fallback values were used because the counts of counts cannot give them."""
    n1, n2, n3, n4 = _counts_of_counts(counts, mask)
    if min(n1, n2, n3) > 0:  # as lmplz: n4 may be 0 (then D3+ = 3)
        y = n1 / (n1 + 2 * n2)
        discounts = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        if np.all((discounts >= 0) & (discounts <= np.arange(1, 4))):
            return discounts, False
    if fallback:
        return np.array(FALLBACK_DISCOUNTS), True
    raise LmbenchError(
        f"order {order}: counts of counts n1..n4 = {int(n1)}, {int(n2)}, {int(n3)}, {int(n4)} "
        "give no valid modified Kneser-Ney discounts; use more text, a lower order, or "
        "discount_fallback=true (KenLM's 0.5, 1, 1.5)"
    )


def estimate(levels: list[_Counts], vocab_size: int, smoothing: str, k: float = 1.0,
             discount: float | None = None, discount_fallback: bool = True
             ) -> tuple[list[Level], dict]:
    """Turn counts into backoff tables. Returns the tables and the fitted discounts per order."""
    smoothing = canonical_smoothing(smoothing)
    if smoothing == FROM_ARPA:
        raise LmbenchError("a model read from an ARPA file cannot be refitted; build a new one")
    V, bos, order = vocab_size, vocab_size, len(levels)
    kn = smoothing in ("kneser-ney", "modified-kneser-ney")
    counts = _adjusted_counts(levels) if kn else [lv.raw for lv in levels]
    counts[0] = counts[0].copy()
    counts[0][bos] = 0  # <s> is a context, never predicted
    tables: list[Level] = []
    fitted: dict = {}
    lower_prob: np.ndarray | None = None  # p_{k-1} per row of the order below
    for n, (level, c) in enumerate(zip(levels, counts), start=1):
        c = c.astype(np.float64)
        n_contexts = 1 if n == 1 else len(levels[n - 2].raw)
        context = level.context
        total = np.bincount(context, weights=c, minlength=n_contexts)  # c(c.)
        distinct = np.bincount(context, weights=(c > 0), minlength=n_contexts)  # N1+(c.)
        safe_total = np.where(total > 0, total, 1.0)
        if smoothing == "mle":
            alpha, gamma = c / safe_total[context], np.where(total > 0, 0.0, 1.0)
        elif smoothing == "add-k":
            if n < order:  # lower orders are uniform: p = p_0
                alpha, gamma = np.zeros_like(c), np.ones(n_contexts)
            else:
                alpha = c / (total + k * V)[context]
                gamma = k * V / (total + k * V)
        elif smoothing == "witten-bell":
            denominator = np.where(total > 0, total + distinct, 1.0)
            alpha = c / denominator[context]
            gamma = np.where(total > 0, distinct / denominator, 1.0)
        else:
            mask = c > 0
            if smoothing == "kneser-ney":
                if discount is None:
                    n1, n2 = _counts_of_counts(c.astype(np.int64), mask)[:2]
                    d = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
                else:
                    d = discount
                ds = np.array([d, d, d])
            else:
                ds, fell_back = modified_kn_discounts(c.astype(np.int64), mask, n,
                                                      discount_fallback)
                if fell_back:
                    fitted.setdefault("fallback_orders", []).append(n)
            fitted[str(n)] = ds.tolist()
            bucket = np.minimum(c, 3).astype(np.int64)  # 0 for unseen rows (no discount)
            applied = np.concatenate(([0.0], ds))[bucket]
            alpha = (c - applied) / safe_total[context]
            mass = np.bincount(context, weights=applied, minlength=n_contexts)
            gamma = np.where(total > 0, mass / safe_total, 1.0)
        lower = np.full(len(c), 1.0 / V) if n == 1 else lower_prob[level.suffix]
        prob = alpha + gamma[context] * lower
        if n == 1:
            prob[bos] = 0.0
        with np.errstate(divide="ignore"):
            log_prob = np.log(prob)
            log_gamma = np.log(gamma)
        if n > 1:  # gamma belongs to the context rows of the order below
            tables[-1].log_backoff = np.where(total > 0, log_gamma, 0.0)
        tables.append(Level(level.keys.astype(np.int64), log_prob, np.zeros(len(c))))
        lower_prob = prob
    return tables, fitted


def merge_counts(base: list[_Counts], domain: list[_Counts], beta: int) -> list[_Counts]:
    """Count merging (Bacchiani & Roark 2003): the counts of ``base`` plus ``beta`` times those
    of ``domain``, n-gram by n-gram, as if the domain text had been counted ``beta`` times
    beside the base text (``beta`` is a whole number, so the merged counts stay counts and
    Kneser-Ney's counts of counts still apply). Both come from ``count_ngrams`` over the same
    vocabulary and order; ``estimate`` then smooths the merged counts as any others (continuation
    counts are taken over the union of the two texts' n-gram types)."""
    if not isinstance(beta, int | np.integer) or beta < 1:
        raise LmbenchError(f"count merging: beta must be a whole number >= 1, got {beta!r}")
    if len(base) != len(domain) or len(base[0].raw) != len(domain[0].raw):
        raise LmbenchError("count merging: both counts need the same order and vocabulary")
    width = len(base[0].raw)
    merged = [_Counts(base[0].keys.copy(), base[0].context.copy(), base[0].suffix.copy(),
                      base[0].raw + beta * domain[0].raw, base[0].starts_with_bos.copy())]
    row_of_base, row_of_domain = np.arange(width), np.arange(width)  # rows of the merged order
    for a, b in zip(base[1:], domain[1:]):
        keys = np.concatenate([row_of_base[a.context] * width + a.keys % width,
                               row_of_domain[b.context] * width + b.keys % width])
        unique, inverse = np.unique(keys, return_inverse=True)
        raw = np.bincount(inverse, weights=np.concatenate([a.raw, beta * b.raw]),
                          minlength=len(unique)).astype(np.int64)
        suffix = np.empty(len(unique), np.int64)
        suffix[inverse] = np.concatenate([row_of_base[a.suffix], row_of_domain[b.suffix]])
        context = unique // width
        merged.append(_Counts(unique, context, suffix, raw, merged[-1].starts_with_bos[context]))
        row_of_base, row_of_domain = inverse[: len(a.raw)], inverse[len(a.raw):]
    return merged
