"""Decoders that weigh several continuations: beam search and best-of-N reranking.

Both return a ``Candidate``: the new ids, the model's own ln p of each (before any processor),
the decoded text and the score the decoder ranked by (higher is better).

**Beam search** keeps the ``beam_width`` highest-scoring prefixes. At each step every live beam
is extended by every token, and the best ``beam_width`` extensions (by the sum of processed
log-probabilities) survive. An extension ending in a stop id, if it ranks among the best
``beam_width``, is set aside as finished (HF transformers' rule). When the steps run out the
live beams join the finished ones, and the winner maximises the length-normalised score

    score(y) = Σ_t ln p(y_t | y_<t) / |y| ** length_penalty

(HF's ``length_penalty``; 0 ranks by the raw sum, 1 by the mean log-probability, and it only
matters when stop ids give hypotheses of different lengths). States are opaque, so each beam
carries its own and is extended with a batch of one; a parent's state is continued by each of
its children, which relies on ``model.logits`` leaving the state it is given unchanged (true of
every family: their states are rebuilt, never updated in place). ``use_cache=False`` re-reads
each prefix instead. Ties are broken towards the lower (beam, token) index, so width 1 is
exactly greedy decoding.

**Best-of-N** draws N samples with seeds ``seed, seed + 1, ...`` (so sample i equals
``generate(..., seed=seed + i)``) and keeps the one a pluggable scorer rates highest:
``sequence_logprob`` (Σ ln p), ``mean_logprob`` (length-normalised), ``judge_perplexity(judge)``
(another model sharing the tokenizer, scored as the evaluator scores; the score is -ln PPL_judge,
so the lowest judge perplexity wins) or ``text_scorer(fn)`` for any function of the decoded text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from lmbench.errors import LmbenchError
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.interface import LanguageModel, State
from lmbench.sampling import LogitsProcessor, Sampler, SamplingConfig, next_logits, sample


@dataclass(frozen=True)
class Candidate:
    """One decoded continuation of ``prompt_ids``."""

    prompt_ids: list[int]
    ids: list[int]  # the new ids
    logprobs: list[float]  # the model's ln p of each new id (nats, before processors)
    text: str  # tokenizer.decode(ids)
    score: float  # what the decoder ranked by; higher is better

    @property
    def logprob(self) -> float:
        """ln p(ids | prompt) under the model, in nats."""
        return float(sum(self.logprobs))


Scorer = Callable[[Candidate], float]


def _candidate(model: LanguageModel, prompt_ids: Sequence[int], ids: list[int],
               logprobs: list[float], score: float) -> Candidate:
    return Candidate(list(prompt_ids), ids, logprobs, model.tokenizer.decode(ids), score)


# --------------------------------------------------------------------------------- beam search


@dataclass
class _Beam:
    ids: list[int]  # new ids so far
    logprobs: list[float]  # the model's ln p of each
    total: float  # Σ processed ln p: what the beam is ranked by
    logits: torch.Tensor | None  # (1, V) next-token scores after the beam
    state: State


def _normalise(total: float, length: int, length_penalty: float) -> float:
    return total / max(length, 1) ** length_penalty


def beam_search(model: LanguageModel, prompt_ids: Sequence[int], max_new_tokens: int,
                beam_width: int, length_penalty: float = 1.0, *,
                processors: Sequence[LogitsProcessor] = (), stop_ids: Sequence[int] = (),
                use_cache: bool = True) -> Candidate:
    """The best continuation found by beam search (module docstring).

    Args:
        model: any ``LanguageModel``.
        prompt_ids: the prompt (boundary prepended), may be empty.
        max_new_tokens: the longest continuation.
        beam_width: live hypotheses kept per step (1 = greedy).
        length_penalty: exponent α of the length normalisation Σ ln p / |y|^α.
        processors: logits processors applied before ranking (e.g. ``NoRepeatNGram(3)``).
        stop_ids: ids that finish a hypothesis (included in it).
        use_cache: continue each beam's state (True) or re-read its prefix (False).
    """
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise LmbenchError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    if max_new_tokens < 0:
        raise LmbenchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ranker, stop = Sampler(tuple(processors)), set(stop_ids)
    start = [model.tokenizer.boundary_id, *prompt_ids]
    finished: list[tuple[list[int], list[float], float]] = []  # (ids, logprobs, score)
    with torch.inference_mode():
        logits, state = next_logits(model, torch.tensor([start]), len(start), None, use_cache)
        beams = [_Beam([], [], 0.0, logits, state)]
        for step in range(max_new_tokens):
            contexts = [torch.tensor([start + beam.ids]) for beam in beams]  # (1, T) each
            raw = torch.stack([torch.log_softmax(b.logits[0].double(), -1) for b in beams])
            ranked = torch.stack([  # (W, V) Σ processed ln p of every extension
                beam.total + torch.log_softmax(ranker.process(ctx, beam.logits)[0].double(), -1)
                for beam, ctx in zip(beams, contexts)])
            V = ranked.shape[-1]
            # a stable sort keeps equal scores in index order, as argmax does
            order = torch.sort(ranked.flatten(), descending=True, stable=True).indices
            children: list[tuple[int, list[int], list[float], float]] = []
            for rank, index in enumerate(order[: 2 * beam_width].tolist()):
                parent, token = divmod(index, V)
                total = float(ranked[parent, token])
                if total == float("-inf"):
                    break  # everything further down was filtered out
                ids = beams[parent].ids + [token]
                logprobs = beams[parent].logprobs + [float(raw[parent, token])]
                if token in stop:
                    if rank < beam_width:
                        finished.append((ids, logprobs,
                                         _normalise(total, len(ids), length_penalty)))
                    continue
                children.append((parent, ids, logprobs, total))
                if len(children) == beam_width:
                    break
            last = step == max_new_tokens - 1
            new_beams = []
            for parent, ids, logprobs, total in children:
                logits, state = None, None
                if not last:  # no need for the scores after the final token
                    context = torch.tensor([start + ids])
                    logits, state = next_logits(model, context, 1, beams[parent].state, use_cache)
                new_beams.append(_Beam(ids, logprobs, total, logits, state))
            beams = new_beams
            if not beams:
                break
    finished += [(b.ids, b.logprobs, _normalise(b.total, len(b.ids), length_penalty))
                 for b in beams]
    ids, logprobs, score = max(finished, key=lambda f: f[2])  # first of equals
    return _candidate(model, prompt_ids, ids, logprobs, score)


# ---------------------------------------------------------------------------------- best-of-N


def continuation_logprobs(model: LanguageModel, prompt_ids: Sequence[int],
                          ids: Sequence[int]) -> list[float]:
    """ln p of each of ``ids`` after the boundary and ``prompt_ids`` under ``model``, scored as
    the evaluator scores a stream (``score_stream``: the same windows, so for a windowed model
    a token may see less context than it had while being generated)."""
    vocab_size = model.tokenizer.vocab_size
    if any(not 0 <= i < vocab_size for i in [*prompt_ids, *ids]):
        raise LmbenchError(f"ids outside the {model.name} model's vocabulary of {vocab_size}; "
                           "a judge must share the tokenizer of the model it judges")
    if not ids:
        return []
    stream = np.array([*prompt_ids, *ids], dtype=np.int64)
    nll = score_stream(model, stream, EvalConfig(progress=False))  # (N,) nats
    return (-nll[len(prompt_ids):]).tolist()


def sequence_logprob(candidate: Candidate) -> float:
    """Σ ln p(y_t | y_<t) under the generating model."""
    return candidate.logprob


def mean_logprob(candidate: Candidate) -> float:
    """Σ ln p / |y|: length-normalised; -inf for an empty continuation."""
    if not candidate.logprobs:
        return float("-inf")
    return candidate.logprob / len(candidate.logprobs)


def judge_perplexity(judge: LanguageModel) -> Scorer:
    """A scorer ranking by ``judge``'s perplexity of the continuation (lower is better): the
    score is -ln PPL = the judge's mean ln p. The judge must share the model's tokenizer."""

    def score(candidate: Candidate) -> float:
        logprobs = continuation_logprobs(judge, candidate.prompt_ids, candidate.ids)
        return sum(logprobs) / len(logprobs) if logprobs else float("-inf")

    return score


def text_scorer(function: Callable[[str], float]) -> Scorer:
    """A scorer applying ``function`` to the decoded text of the continuation."""
    return lambda candidate: float(function(candidate.text))


def best_of_n(model: LanguageModel, prompt_ids: Sequence[int], n: int,
              scorer: Scorer = sequence_logprob, *, max_new_tokens: int,
              sampler: Sampler | SamplingConfig | None = None, seed: int = 0,
              use_cache: bool = True, stop_ids: Sequence[int] = ()) -> Candidate:
    """Draw ``n`` samples (seeds ``seed .. seed + n - 1``) and return the one ``scorer`` rates
    highest (the earliest seed among equals); its ``score`` field holds the scorer's value."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LmbenchError(f"best-of-N needs an integer n >= 1, got {n!r}")
    best = None
    for i in range(n):
        drawn = sample(model, prompt_ids, max_new_tokens, sampler=sampler, seed=seed + i,
                       use_cache=use_cache, stop_ids=stop_ids)
        candidate = _candidate(model, prompt_ids, drawn.ids, drawn.logprobs, float("nan"))
        candidate = replace(candidate, score=float(scorer(candidate)))
        if best is None or candidate.score > best.score:
            best = candidate
    return best
