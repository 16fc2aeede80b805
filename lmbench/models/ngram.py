"""The n-gram family: MLE, add-k, Witten-Bell, Kneser-Ney and modified Kneser-Ney backoff tables.

Estimation (counting and smoothing, with the formulas and their sources) is in
``lmbench.models.ngram_estimate``; this file holds the model: scoring, the next-token
distribution, save/load. Orders from 1 to any n; the tables are sorted numpy arrays, looked up
when scoring through a hash index built from them (``lmbench.models.ngram_index``), every lookup
vectorized over all positions, so no Python loop runs per token; when the targets continue the
inputs (the evaluator's windows), the n-gram found for a target is the next position's history,
so an order-n model does n-1 lookups per token. The family computes on the CPU (``device``
stays ``cpu``; ids may come on any device).

Scoring is the ARPA backoff recursion (Katz 1987; the form every ARPA reader uses): with h_j the
last j tokens of history and m the longest j+1 such that the n-gram (h_j, w) is stored,

    ln p(w | h_{n-1}) = ln p_stored(h_{m-1}, w) + sum_{j=m}^{n-1} ln b(h_j)

where b(h_j) = 1 when h_j is not stored. History stops at a segment boundary (``</s>`` for word
models), after which the context is ``<s>``, exactly as KenLM scores sentences one at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, Capabilities, LanguageModel, SelectsStateRows
from lmbench.core.io import read_npz, write_npz_atomic
from lmbench.core.options import build_config
from lmbench.core.tokenizers import (
    Tokenizer,
    build_tokenizer,
    tokenizer_from_json,
    tokenizer_to_json,
)
from lmbench.models.arpa import read_arpa, write_arpa
from lmbench.models.ngram_estimate import (
    SMOOTHING_NOTES,
    SMOOTHINGS,
    Level,
    canonical_smoothing,
    count_ngrams,
    estimate,
)
from lmbench.models.ngram_index import ScoringTables


@dataclass(frozen=True)
class NGramConfig:
    order: int = 3  # n: the model conditions on n-1 previous tokens
    # mle | add-k | witten-bell | kneser-ney | modified-kneser-ney
    smoothing: str = field(default="modified-kneser-ney", metadata={"choices": SMOOTHINGS})
    k: float = 1.0  # add-k constant (1 = Laplace; below 1 = Lidstone)
    discount: float | None = None  # kneser-ney only: fixed D; None = n1 / (n1 + 2 n2) per order
    # modified-kneser-ney: where an order's counts of counts give no valid D1..D3+ (little text,
    # small alphabets), use KenLM's --discount_fallback values 0.5, 1, 1.5 (listed in discounts_)
    discount_fallback: bool = True
    tokenizer: str = "word"
    tokenizer_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.order, int) or self.order < 1:
            raise LmbenchError(f"order must be an integer >= 1, got {self.order!r}")
        object.__setattr__(self, "smoothing", canonical_smoothing(self.smoothing))
        if self.k <= 0:
            raise LmbenchError(f"k must be > 0 for add-k smoothing, got {self.k}")
        if self.discount is not None and not 0 < self.discount < 1:
            raise LmbenchError(f"discount must be in (0, 1), got {self.discount}")


class NGramLM(LanguageModel, SelectsStateRows):
    """A backoff n-gram model. ``fit`` counts and smooths; ``tables_`` hold the result."""

    name = "ngram"
    config_class = NGramConfig

    def __init__(self, config: NGramConfig | None = None, tokenizer: Tokenizer | None = None,
                 **options: Any) -> None:
        self.config_ = config or build_config(NGramConfig, options, "model 'ngram'")
        self.tokenizer = tokenizer or build_tokenizer(
            self.config_.tokenizer, **self.config_.tokenizer_options)
        order = self.config_.order
        self.capabilities = Capabilities(exact_likelihood=True, max_context=order - 1)
        self.tables_: list[Level] | None = None
        self.discounts_: dict = {}
        self._scoring: tuple[list[Level], ScoringTables] | None = None  # for these tables

    @classmethod
    def notes(cls) -> dict[str, str]:
        return {f"smoothing={name}": text for name, text in SMOOTHING_NOTES.items()}

    # ------------------------------------------------------------------------------- fitting

    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir=None) -> NGramLM:
        """Fit the tokenizer on ``corpus.train`` if it is not fitted, then count and smooth.
        ``valid``, ``budget`` and ``checkpoint_dir`` do not apply: counting is one pass."""
        train = corpus.train
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(train)
        return self.fit_ids(self.tokenizer.encode_split(train))

    def fit_ids(self, train_ids: np.ndarray) -> NGramLM:
        """Fit on a (N,) stream of token ids from this model's (fitted) tokenizer."""
        train_ids = np.asarray(train_ids, dtype=np.int64)
        if train_ids.size == 0:
            raise LmbenchError("cannot fit an n-gram model on an empty token stream")
        V = self.tokenizer.vocab_size
        if train_ids.min() < 0 or train_ids.max() >= V:
            raise LmbenchError(f"token ids must lie in [0, {V}); got "
                               f"{train_ids.min()}..{train_ids.max()}")
        counts = count_ngrams(train_ids, self.tokenizer.boundary_id, V, self.config_.order)
        c = self.config_
        self.tables_, self.discounts_ = estimate(counts, V, c.smoothing, c.k, c.discount,
                                                 c.discount_fallback)
        return self

    def _tables(self) -> list[Level]:
        if self.tables_ is None:
            raise LmbenchError("the n-gram model is not fitted; call fit(corpus) first")
        return self.tables_

    def scoring_tables(self) -> ScoringTables:
        """The hash indexes and arrays scoring reads, built on the first call after the tables
        change (``tables_`` is replaced by ``fit``, ``load`` and ``load_arpa``); scoring calls it,
        so calling it first only moves that one-time cost (a benchmark can time it apart)."""
        tables = self._tables()
        if self._scoring is None or self._scoring[0] is not tables:
            self._scoring = (tables, ScoringTables(tables))
        return self._scoring[1]

    # ------------------------------------------------------------------------------- scoring

    def _history_rows(self, inputs: np.ndarray) -> list[np.ndarray]:
        """For (B, T) inputs, the id (``ScoringTables``: order 1 the token, above it the slot in
        the order's hash index) of the j-token history ending at each position, j = 1..n-1 (-1
        where it is not stored). Boundaries become <s> and cut the history."""
        tables, indexes = self._tables(), self.scoring_tables().indexes
        V = self.tokenizer.vocab_size
        width = V + 1
        tokens = np.where(inputs == self.tokenizer.boundary_id, V, inputs)  # </s> -> <s>
        tokens = np.where(inputs < 0, -1, tokens)  # -1: unknown history (cut)
        B, T = tokens.shape
        position = np.broadcast_to(np.arange(T), (B, T))
        cut = np.where((tokens == V) | (tokens < 0), position, -1)
        last_cut = np.maximum.accumulate(cut, axis=1)
        # tokens available back to and including the last <s> (an unknown -1 is excluded)
        reach = np.where(last_cut < 0, position + 1,
                         position - last_cut + (tokens[np.arange(B)[:, None], last_cut] == V))
        rows = [tokens]
        for j in range(2, len(tables)):
            previous = np.full((B, T), -1, np.int64)
            previous[:, 1:] = rows[-1][:, :-1]
            ok = (reach >= j) & (previous >= 0) & (tokens >= 0)
            rows.append(indexes[j - 1].find_slots(np.where(ok, previous * width + tokens, -1)))
        return rows

    def token_logprobs(self, input_ids, target_ids, state=None):
        """Backoff scoring of every (B, T) target at once; see the module docstring.

        ``state`` is the (B, n-1) tail of earlier inputs, so windows can continue a stream."""
        tables, scoring = self._tables(), self.scoring_tables()
        inputs, targets = _as_numpy(input_ids), _as_numpy(target_ids)
        history = _prepend_state(inputs, state, len(tables) - 1)
        valid = targets >= 0
        safe_targets = np.where(valid, targets, 0)
        best = safe_targets  # index in scoring.log_prob of the longest match (unigrams first)
        backoff_sum = np.zeros(targets.shape)
        # longer matches overwrite shorter ones
        for n, context, found in self._matches(history, targets, safe_targets):
            hit = found >= 0
            # backoff weights of histories longer than the match (id -1 reads 0)
            backoff = scoring.log_backoff[n - 2][context]
            backoff_sum = np.where(hit, 0.0, backoff_sum + backoff)
            best = np.where(hit, found + scoring.offsets[n - 1], best)
        scores = np.where(valid, scoring.log_prob[best] + backoff_sum, 0.0)
        return torch.from_numpy(scores), _tail_state(history, len(tables) - 1)

    def _matches(self, history: np.ndarray, targets: np.ndarray, safe_targets: np.ndarray):
        """For n = 2..order, ``(n, context, found)``, both (B, T): the id (``ScoringTables``) of
        the (n-1)-token history before each target (-1 where not stored) and the id of the
        n-gram (that history, target) in order n (-1 where not stored).

        When the targets continue the inputs (target t is input t+1 wherever it is scored, as in
        the evaluator's windows), the n-gram ending at a target is the n-token history of the
        next position, so one hash lookup per order serves both: n-1 lookups instead of 2n-3.
        Otherwise the histories are looked up from the inputs alone (``_history_rows``)."""
        tables, indexes = self._tables(), self.scoring_tables().indexes
        V, boundary = self.tokenizer.vocab_size, self.tokenizer.boundary_id
        width = V + 1
        B, T = targets.shape
        offset = history.shape[1] - T
        follows = targets[:, :-1]  # (B, T-1)
        if T and np.all((follows < 0) | (follows == history[:, offset + 1:])):
            # (B, L) the token after each history position; the last one is the last target
            after = np.concatenate([history[:, 1:], targets[:, -1:]], axis=1)
            unknown = np.flatnonzero(after < 0)  # (few,) no n-gram ends there
            # a history continues into the next position unless that input is a boundary
            # (the context restarts at <s>) or unknown (-1, cut)
            stops = np.flatnonzero((history[:, 1:] < 0) | (history[:, 1:] == boundary))
            stops += stops // max(history.shape[1] - 1, 1) + 1  # flat (B, L) index of it
            context = np.where(history < 0, -1, np.where(history == boundary, V, history))
            for n in range(2, len(tables) + 1):
                # a context of -1 gives a negative key, which is never stored
                keys = context * width + after
                keys.flat[unknown] = -1
                found = indexes[n - 1].find_slots(keys)  # (B, L)
                yield n, context[:, offset:], found[:, offset:]
                context = np.empty_like(found)
                context[:, 0] = -1
                context[:, 1:] = found[:, :-1]
                context.flat[stops] = -1
            return
        rows = [r[:, offset:] for r in self._history_rows(history)]
        for n in range(2, len(tables) + 1):
            context = rows[n - 2]
            found = indexes[n - 1].find_slots(
                np.where(context >= 0, context * width + safe_targets, -1))
            yield n, context, found

    def logits(self, input_ids, state=None):
        """(B, T, V) log-probabilities: the unigram distribution, then for each stored history
        from short to long, scaled by its backoff weight and overwritten by its stored children."""
        tables = self._tables()
        inputs = _as_numpy(input_ids)
        history = _prepend_state(inputs, state, len(tables) - 1)
        offset = history.shape[1] - inputs.shape[1]
        scoring = self.scoring_tables()
        rows = [scoring.rows(j, ids[:, offset:])  # rows of the sorted tables
                for j, ids in enumerate(self._history_rows(history), start=1)]
        V = self.tokenizer.vocab_size
        width = V + 1
        B, T = inputs.shape
        out = np.empty((B, T, V))
        for b in range(B):
            for t in range(T):
                dist = tables[0].log_prob[:V].copy()
                for j, row in enumerate(r[b, t] for r in rows):
                    if row < 0:
                        break
                    dist += tables[j].log_backoff[row]
                    child = tables[j + 1] if j + 1 < len(tables) else None
                    if child is not None:
                        lo, hi = np.searchsorted(child.keys, [row * width, (row + 1) * width])
                        dist[child.keys[lo:hi] - row * width] = child.log_prob[lo:hi]
                out[b, t] = dist
        return torch.from_numpy(out), _tail_state(history, len(tables) - 1)

    def select_state(self, state, rows):
        """Rows of the (B, n-1) history tail."""
        if state is None:
            return None
        return np.asarray(state, dtype=np.int64)[torch.as_tensor(rows).cpu().numpy()]

    # ------------------------------------------------------------------------- bookkeeping

    def n_params(self) -> int:
        """Stored n-grams (each holds a probability and, below the top order, a backoff)."""
        return int(sum(len(t.keys) for t in self._tables()))

    def n_grams(self) -> list[int]:
        return [len(t.keys) for t in self._tables()]

    def config(self) -> dict[str, Any]:
        return asdict(self.config_)

    def save(self, path: str | Path) -> None:
        """A zip of numpy tables plus the config and tokenizer as JSON, written atomically."""
        tables = self._tables()
        arrays = tables_to_arrays(tables)
        meta = {"family": self.name, "config": self.config(), "discounts": self.discounts_,
                "tokenizer": tokenizer_to_json(self.tokenizer)}
        write_npz_atomic(Path(path), arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> NGramLM:
        meta, arrays = read_npz(Path(path), "an n-gram model")
        if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("tokenizer"), str):
            raise LmbenchError(f"{path}: not an lmbench n-gram model file (no config or "
                               "tokenizer)")
        config = build_config(NGramConfig, meta["config"], str(path))
        try:
            tables = tables_from_arrays(arrays, config.order)
        except KeyError as error:
            raise LmbenchError(f"{path}: not an lmbench n-gram model file ({error})") from None
        model = cls(config, tokenizer_from_json(meta["tokenizer"], str(path)))
        check_tables(tables, model.tokenizer.vocab_size, str(path))
        model.tables_, model.discounts_ = tables, meta.get("discounts", {})
        return model

    def save_arpa(self, path: str | Path) -> None:
        """Write the tables as an ARPA file (log10), readable by KenLM and SRILM."""
        words = [*self.tokenizer.token_strings(), "<s>"]  # row V of the unigram table is <s>
        write_arpa(self._tables(), words, Path(path))


# ------------------------------------------------------------------------------------ helpers


def tables_to_arrays(tables: list[Level], prefix: str = "") -> dict[str, np.ndarray]:
    """The tables as named arrays for an ``.npz`` (``keys1``, ``logp1``, ``logb1``, ...)."""
    arrays = {}
    for n, table in enumerate(tables, start=1):
        arrays.update({f"{prefix}keys{n}": table.keys, f"{prefix}logp{n}": table.log_prob,
                       f"{prefix}logb{n}": table.log_backoff})
    return arrays


def tables_from_arrays(arrays, order: int, prefix: str = "") -> list[Level]:
    return [Level(arrays[f"{prefix}keys{n}"], arrays[f"{prefix}logp{n}"],
                  arrays[f"{prefix}logb{n}"]) for n in range(1, order + 1)]


def check_tables(tables: list[Level], vocab_size: int, where: str) -> None:
    """Refuse tables ``fit`` could not have made (a damaged file): per order, equal lengths,
    strictly increasing integer keys whose context rows exist in the order below, and a unigram
    table of ``vocab_size + 1`` rows."""
    width = vocab_size + 1
    for n, table in enumerate(tables, start=1):
        keys = table.keys
        if keys.ndim != 1 or keys.dtype.kind not in "iu" or not (
                len(keys) == len(table.log_prob) == len(table.log_backoff)):
            raise LmbenchError(f"{where}: damaged n-gram model file (the {n}-gram table's "
                               "arrays differ in shape)")
        rows_below = width if n == 1 else len(tables[n - 2].keys)
        bad = len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0
                             or keys[-1] >= rows_below * (1 if n == 1 else width))
        if bad or (n == 1 and len(keys) != width):
            raise LmbenchError(f"{where}: damaged n-gram model file (the {n}-gram keys do not fit "
                               f"a vocabulary of {vocab_size})")


def _as_numpy(ids) -> np.ndarray:
    array = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    array = array.astype(np.int64, copy=False)
    if array.ndim != 2:
        raise LmbenchError(f"expected (B, T) token ids, got shape {array.shape}")
    return array


def _prepend_state(inputs: np.ndarray, state, width: int) -> np.ndarray:
    if state is None or width == 0:
        return inputs
    return np.concatenate([np.asarray(state, dtype=np.int64), inputs], axis=1)


def _tail_state(history: np.ndarray, width: int) -> np.ndarray:
    """The last n-1 inputs (padded on the left with -1, "unknown"), carried to the next call."""
    B, T = history.shape
    if T >= width:
        return history[:, T - width:].copy()
    return np.concatenate([np.full((B, width - T), -1, np.int64), history], axis=1)


def load_arpa(path: str | Path) -> NGramLM:
    """An ``NGramLM`` read from an ARPA file (KenLM's ``lmplz``, SRILM), word tokenizer over its
    unigrams. Malformed files raise ``LmbenchError`` naming the file and line."""
    tables, tokenizer = read_arpa(path)
    model = NGramLM(NGramConfig(order=len(tables), smoothing="from-arpa"), tokenizer)
    model.tables_ = tables
    return model
