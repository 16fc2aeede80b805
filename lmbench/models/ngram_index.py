"""A hash index over one n-gram table's sorted keys, for O(1) vectorized lookups when scoring.

The tables of ``lmbench.models.ngram_estimate`` are sorted arrays of integer keys
(``context_row * (V+1) + word``); ``numpy.searchsorted`` finds a key in O(log n) dependent,
cache-missing reads. This index is an open-addressing table with linear probing (Knuth, TAOCP
vol. 3, section 6.4, algorithm L) addressed by Fibonacci multiplicative hashing (Knuth, section
6.4: h(k) = floor(2^b * frac(k * A)), A = 2^64 / golden ratio, computed as the top b bits of the
64-bit product), at load <= 1/2, so a lookup reads about 1.5 slots when the key is stored and
2.5 when it is not (Knuth's eq. 6.4-(22)). Every probe step runs on all pending queries at once,
so no Python loop runs per token; the number of steps is the longest probe sequence met.

Keys are inserted in the order of their home slots, so each key's slot is a running maximum,
computed at once, and probes run forward past the last home slot instead of wrapping around.
The index is derived from the table (never saved): it maps a key to its row in the sorted table,
so lookups return exactly what ``searchsorted`` on the sorted keys returns.
"""

from __future__ import annotations

import numpy as np

from lmbench.models.ngram_estimate import Level

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
_EMPTY = np.iinfo(np.int64).min  # the key of an empty slot: no query is this


class HashIndex:
    """Rows of sorted, distinct, non-negative int64 keys, found by ``find`` in O(1) each."""

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        self.n_keys = len(keys)
        self.bits = max(1, int(np.ceil(np.log2(max(2 * len(keys), 2)))))  # load <= 1/2
        self.shift = np.uint64(64 - self.bits)
        # Insertion in the order of the home slots needs no probing loop: key i (in that order)
        # takes slot max(home_i, slot_{i-1} + 1) = i + max_{j <= i} (home_j - j). Probes run
        # forward past the last home slot instead of wrapping, so the slot arrays are as long as
        # the last slot used plus one empty slot that ends every probe.
        home = self._hash(keys)
        order = np.argsort(home)
        rank = np.arange(len(keys))
        slots = np.maximum.accumulate(home[order] - rank) + rank if len(keys) else rank
        length = max(1 << self.bits, int(slots[-1]) + 1 if len(keys) else 0) + 1
        self.slot_keys = np.full(length, _EMPTY, np.int64)  # (length,) the key in each slot
        self.slot_keys[slots] = keys[order]
        # (length + 1,) its row in the sorted table; the last entry, -1, answers every miss (one
        # cached read instead of a random one)
        self.slot_rows = np.full(length + 1, -1, np.int64)
        self.slot_rows[slots] = order
        self.slot_of_row = np.empty(len(keys), np.int64)  # (n,) the slot of each sorted row
        self.slot_of_row[order] = slots

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        """The top ``bits`` bits of key * A mod 2^64 (a negative key hashes as its bits do)."""
        product = keys.view(np.uint64) * _GOLDEN  # (n,) mod 2^64
        return (product >> self.shift).view(np.int64)

    def find(self, queries: np.ndarray) -> np.ndarray:
        """Row of each query in the sorted keys, -1 where it is not stored (or negative)."""
        return self.slot_rows[self.find_slots(queries)]  # slot -1 reads the last entry, -1

    def find_slots(self, queries: np.ndarray) -> np.ndarray:
        """Slot of each query, -1 where it is not stored (or negative)."""
        queries = np.asarray(queries, dtype=np.int64)
        flat = queries.reshape(-1)
        # The first probe runs on every query without selecting (most end there).
        position = self._hash(flat)
        stored = self.slot_keys[position]
        hit = stored == flat
        found = np.where(hit, position, -1)
        # an occupied slot (key >= 0) holding another key, for a query >= 0: probe on (a hit has
        # both >= 0, as no query is _EMPTY)
        pending = np.flatnonzero((np.minimum(stored, flat) >= 0) ^ hit)
        wanted, position = flat[pending], position[pending] + 1
        while pending.size:
            stored = self.slot_keys[position]
            hit = stored == wanted
            found[pending[hit]] = position[hit]
            go_on = (stored >= 0) ^ hit
            pending, wanted = pending[go_on], wanted[go_on]
            position = position[go_on] + 1
        return found.reshape(queries.shape)


class ScoringTables:
    """What backoff scoring reads, derived from a model's tables (never saved), in slot space:
    an n-gram's id is its slot in its order's ``HashIndex`` (order 1: its token id), and order
    n+1's keys are re-keyed by their context's id (``id * (V+1) + word``), so a lookup's answer
    is at once the next order's context id, with no second read per lookup.

    ``indexes[n-1]`` is order n's index (``indexes[0]`` is None: unigrams are read directly);
    ``log_prob`` holds every order's ln p by id, order n's from ``offsets[n-1]``, so the longest
    match is read once per token; ``log_backoff[n-1]`` holds order n's ln gamma by id, with a
    trailing 0 that id -1 (a history not stored) reads."""

    def __init__(self, tables: list[Level]) -> None:
        width = len(tables[0].keys)  # V + 1
        self.indexes: list[HashIndex | None] = [None]
        log_probs, self.log_backoff = [tables[0].log_prob], [np.append(tables[0].log_backoff, 0.0)]
        id_of_row = np.arange(width)  # order 1: the token
        for table in tables[1:]:
            index = HashIndex(id_of_row[table.keys // width] * width + table.keys % width)
            size = len(index.slot_keys)
            log_prob, log_backoff = np.zeros(size), np.zeros(size + 1)
            log_prob[index.slot_of_row] = table.log_prob
            log_backoff[index.slot_of_row] = table.log_backoff
            self.indexes.append(index)
            log_probs.append(log_prob)
            self.log_backoff.append(log_backoff)
            id_of_row = index.slot_of_row
        self.offsets = np.cumsum([0, *(len(p) for p in log_probs[:-1])]).tolist()
        self.log_prob = np.concatenate(log_probs)

    def rows(self, order: int, ids: np.ndarray) -> np.ndarray:
        """Rows in order ``order``'s sorted table of its ids (-1 stays -1)."""
        return ids if order == 1 else self.indexes[order - 1].slot_rows[ids]
