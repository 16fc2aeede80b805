"""Decoders that weigh several continuations: beam search and best-of-N reranking.

Both return a ``Candidate``: the new ids, the model's own ln p of each (before any processor),
the decoded text (cut before the first of ``stop_strings``, HF's ``stop_strings``, when given)
and the score the decoder ranked by (higher is better). ``num_return_sequences`` (HF's name):
``beam_search_sequences`` returns the N best hypotheses, best first; ``sample_sequences`` N
samples with seeds ``seed, seed + 1, ...``.

**Beam search** keeps the ``beam_width`` highest-scoring prefixes. At each step every live beam
is extended by every token, and the best ``beam_width`` extensions (by the sum of processed
log-probabilities) survive. An extension ending in a stop id, if it ranks among the best
``beam_width``, is set aside as finished (HF transformers' rule), as is one whose decoded
continuation contains a stop string. When the steps run out the live beams join the finished
ones, and the winner maximises the length-normalised score

    score(y) = Σ_t ln p(y_t | y_<t) / |y| ** length_penalty

(HF's ``length_penalty``; 0 ranks by the raw sum, 1 by the mean log-probability, and it only
matters when stop ids give hypotheses of different lengths). Ties are broken towards the lower
(beam, token) index, so width 1 is exactly greedy decoding.

States are opaque. When the model is a ``SelectsStateRows`` (every built-in family is), the
live beams are rows of one batch: each step, the state's rows of the surviving beams' parents
are selected (a parent may be picked twice) and all children are extended in one (R, 1) call;
``beam_search_batch`` does this for the beams of many prompts of one length at once, each
prompt's beams ranked on their own. Otherwise each beam carries its own state and is extended
with a batch of one; a parent's state is continued by each of its children, which relies on
``model.logits`` leaving the state it is given unchanged (true of every family: their states
are rebuilt, never updated in place). Both give the same beams whenever the model's batched
logits equal its one-row logits (exactly for n-gram models; up to float rounding for neural
ones). ``use_cache=False`` re-reads each prefix instead, all beams in one call.

**Best-of-N** draws N samples with seeds ``seed, seed + 1, ...`` in one ``sample_batch`` (so
sample i equals ``generate(..., seed=seed + i)``, up to float rounding for neural models;
``best_of_n_batch`` draws the N samples of many prompts as one batch) and keeps the one a
pluggable scorer rates highest:
``sequence_logprob`` (Σ ln p), ``mean_logprob`` (length-normalised), ``judge_perplexity(judge)``
(another model sharing the tokenizer, scored as the evaluator scores; the score is -ln PPL_judge,
so the lowest judge perplexity wins) or ``text_scorer(fn)`` for any function of the decoded text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, SelectsStateRows
from lmbench.core.limits import MAX_BEAM_WIDTH, MAX_BEST_OF, MAX_NEW_TOKENS, check_at_most
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.sampling import (
    LogitsProcessor,
    Sampler,
    SamplingConfig,
    StopStrings,
    next_logits,
    prompt_batch,
    sample_batch,
)


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
               logprobs: list[float], score: float, stop_strings: StopStrings) -> Candidate:
    text = stop_strings.cut(model.tokenizer.decode(ids))
    return Candidate(list(prompt_ids), ids, logprobs, text, score)


# --------------------------------------------------------------------------------- beam search


@dataclass(frozen=True)
class _Beam:
    ids: list[int]  # new ids so far
    logprobs: list[float]  # the model's ln p of each
    total: float  # Σ processed ln p: what the beam is ranked by


def _normalise(total: float, length: int, length_penalty: float) -> float:
    return total / max(length, 1) ** length_penalty


def _best_first(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` highest of the (N,) ``scores``, highest first, equal scores in index
    order (as argmax breaks ties): the first k of a stable descending sort. Only the scores at
    least as high as the k-th highest (found by ``topk``) are sorted; a full sort of the W V
    extensions of every prompt at every step would cost more than a batched model call."""
    k = min(k, scores.numel())
    kth = torch.topk(scores, k, sorted=False).values.min()
    candidates = (scores >= kth).nonzero().squeeze(-1)  # (N',) ascending, every tie of the k-th
    order = torch.sort(scores[candidates], descending=True, stable=True).indices
    return candidates[order][:k].tolist()


def beam_search(model: LanguageModel, prompt_ids: Sequence[int], max_new_tokens: int,
                beam_width: int, length_penalty: float = 1.0, *,
                processors: Sequence[LogitsProcessor] = (), stop_ids: Sequence[int] = (),
                use_cache: bool = True, stop_strings: Sequence[str] = ()) -> Candidate:
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
        stop_strings: texts that finish a hypothesis once its decoded continuation contains
            one; the candidate's text is cut before it.
    """
    return beam_search_sequences(model, prompt_ids, max_new_tokens, beam_width, 1,
                                 length_penalty, processors=processors, stop_ids=stop_ids,
                                 use_cache=use_cache, stop_strings=stop_strings)[0]


def beam_search_sequences(model: LanguageModel, prompt_ids: Sequence[int], max_new_tokens: int,
                          beam_width: int, num_return_sequences: int,
                          length_penalty: float = 1.0, *,
                          processors: Sequence[LogitsProcessor] = (),
                          stop_ids: Sequence[int] = (), use_cache: bool = True,
                          stop_strings: Sequence[str] = ()) -> list[Candidate]:
    """The ``num_return_sequences`` best hypotheses of one beam search (HF's
    ``num_return_sequences`` with ``num_beams``), best first: the finished and the final live
    beams ranked by their length-normalised score, so the first is ``beam_search``'s answer.
    ``num_return_sequences`` is at most ``beam_width``; the other arguments are
    ``beam_search``'s."""
    return _beam_search(model, [prompt_ids], max_new_tokens, beam_width, length_penalty,
                        processors, stop_ids, use_cache, stop_strings, num_return_sequences)[0]


def beam_search_batch(model: LanguageModel, prompts: Sequence[Sequence[int]],
                      max_new_tokens: int, beam_width: int, length_penalty: float = 1.0, *,
                      processors: Sequence[LogitsProcessor] = (), stop_ids: Sequence[int] = (),
                      use_cache: bool = True, stop_strings: Sequence[str] = ()
                      ) -> list[Candidate]:
    """``beam_search`` of every prompt of ``prompts`` (all of one length), each prompt's beams
    ranked on their own; the live beams of all the prompts are extended together, one
    (R, 1) call per step, when the model is a ``SelectsStateRows`` (or with
    ``use_cache=False``), else one call per beam. Arguments as ``beam_search``'s."""
    return [best for best, *_ in _beam_search(model, prompts, max_new_tokens, beam_width,
                                              length_penalty, processors, stop_ids, use_cache,
                                              stop_strings, 1)]


def _beam_search(model: LanguageModel, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 beam_width: int, length_penalty: float, processors: Sequence[LogitsProcessor],
                 stop_ids: Sequence[int], use_cache: bool, stop_strings: Sequence[str],
                 n_best: int) -> list[list[Candidate]]:
    """The ``n_best`` best hypotheses of each prompt's beam search, best first."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise LmbenchError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    check_at_most(beam_width, MAX_BEAM_WIDTH, "beam_width")
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_width:
        raise LmbenchError(f"num_return_sequences must be an integer in [1, beam_width = "
                           f"{beam_width}], got {n_best!r}")
    if max_new_tokens < 0:
        raise LmbenchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    check_at_most(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens")
    if not prompts:
        return []
    ranker, stop, stop_texts = Sampler(tuple(processors)), set(stop_ids), StopStrings(stop_strings)
    decode = model.tokenizer.decode
    start = prompt_batch(model, prompts)  # (B, 1 + P)
    B = start.shape[0]
    finished: list[list[tuple[list[int], list[float], float]]] = [[] for _ in range(B)]
    # Row r of `logits` (and of the batch `state`, or `state[r]` one beam at a time) is the r-th
    # live beam, prompt by prompt; `origin[r]` is the prompt it continues.
    beams = [[_Beam([], [], 0.0)] for _ in range(B)]
    with torch.inference_mode():
        logits, state = next_logits(model, start, start.shape[1], None, use_cache)  # (B, V)
        batched = not use_cache or isinstance(model, SelectsStateRows)
        if not batched:  # a state per beam: each prompt read alone
            pieces = [next_logits(model, start[j : j + 1], start.shape[1], None, use_cache)
                      for j in range(B)] if B > 1 else [(logits, state)]
            logits, state = torch.cat([p[0] for p in pieces]), [p[1] for p in pieces]
        for step in range(max_new_tokens):
            origin = [j for j in range(B) for _ in beams[j]]  # (R,) prompt of each live beam
            live = [beam for group in beams for beam in group]
            new_ids = torch.tensor([b.ids for b in live], dtype=torch.long)  # (R, step)
            contexts = torch.cat([start[origin], new_ids], dim=1)  # (R, 1 + P + step)
            raw = torch.log_softmax(logits.double(), -1)  # (R, V) the model's ln p
            totals = torch.tensor([b.total for b in live], dtype=torch.float64)  # (R,)
            ranked = totals[:, None] + torch.log_softmax(  # (R, V) Σ processed ln p
                ranker.process(contexts, logits).double(), -1)
            V = ranked.shape[-1]
            children: list[tuple[int, int, _Beam]] = []  # (prompt, parent row, child)
            first = 0  # row of the prompt's first beam
            for j in range(B):
                width = len(beams[j])
                block = ranked[first : first + width]  # (W_j, V)
                kept = 0
                for rank, index in enumerate(_best_first(block.flatten(), 2 * beam_width)):
                    parent, token = divmod(index, V)
                    total = float(block[parent, token])
                    if total == float("-inf"):
                        break  # everything further down was filtered out
                    row = first + parent
                    child = _Beam(live[row].ids + [token],
                                  live[row].logprobs + [float(raw[row, token])], total)
                    if token in stop or (stop_texts.strings
                                         and stop_texts.found(decode(child.ids))):
                        if rank < beam_width:
                            finished[j].append((child.ids, child.logprobs, _normalise(
                                total, len(child.ids), length_penalty)))
                        continue
                    children.append((j, row, child))
                    kept += 1
                    if kept == beam_width:
                        break
                first += width
            beams = [[child for k, _, child in children if k == j] for j in range(B)]
            if not children:
                break
            if step == max_new_tokens - 1:
                break  # no need for the scores after the final token
            parents = torch.tensor([row for _, row, _ in children])  # (R',)
            new_ids = torch.tensor([child.ids for _, _, child in children])  # (R', step + 1)
            contexts = torch.cat([start[[j for j, _, _ in children]], new_ids], dim=1)
            if batched:  # every child in one call, continuing its parent's row of the state
                selected = model.select_state(state, parents) if use_cache else None
                logits, state = next_logits(model, contexts, 1, selected, use_cache)
            else:  # one call per child, continuing its parent's own state
                pieces = [next_logits(model, contexts[i : i + 1], 1, state[row], use_cache)
                          for i, row in enumerate(parents.tolist())]
                logits, state = torch.cat([p[0] for p in pieces]), [p[1] for p in pieces]
    results = []
    for j in range(B):
        hypotheses = finished[j] + [(b.ids, b.logprobs, _normalise(b.total, len(b.ids),
                                                                   length_penalty))
                                    for b in beams[j]]
        ranked_hypotheses = sorted(hypotheses, key=lambda f: -f[2])  # stable: first of equals
        results.append([_candidate(model, prompts[j], ids, logprobs, score, stop_texts)
                        for ids, logprobs, score in ranked_hypotheses[:n_best]])
    return results


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
              use_cache: bool = True, stop_ids: Sequence[int] = (),
              stop_strings: Sequence[str] = ()) -> Candidate:
    """Draw ``n`` samples (seeds ``seed .. seed + n - 1``, in one batch) and return the one
    ``scorer`` rates highest (the earliest seed among equals); its ``score`` field holds the
    scorer's value."""
    return best_of_n_batch(model, [prompt_ids], n, scorer, max_new_tokens=max_new_tokens,
                           sampler=sampler, seeds=[seed], use_cache=use_cache,
                           stop_ids=stop_ids, stop_strings=stop_strings)[0]


def sample_sequences(model: LanguageModel, prompt_ids: Sequence[int], num_return_sequences: int,
                     *, max_new_tokens: int, sampler: Sampler | SamplingConfig | None = None,
                     seed: int = 0, use_cache: bool = True, stop_ids: Sequence[int] = (),
                     stop_strings: Sequence[str] = ()) -> list[Candidate]:
    """``num_return_sequences`` samples of one prompt (HF's ``num_return_sequences`` with
    sampling), drawn in one batch: sample i uses seed ``seed + i``, so it equals
    ``generate(..., seed=seed + i)`` (up to float rounding for neural models) and the same
    ``seed`` gives the same list. Each ``score`` is the sample's ln p under the model."""
    if isinstance(num_return_sequences, bool) or not isinstance(
            num_return_sequences, int) or num_return_sequences < 1:
        raise LmbenchError(f"num_return_sequences must be an integer >= 1, got "
                           f"{num_return_sequences!r}")
    drawn = sample_batch(model, [prompt_ids] * num_return_sequences, max_new_tokens,
                         sampler=sampler, seeds=[seed + i for i in range(num_return_sequences)],
                         use_cache=use_cache, stop_ids=stop_ids, stop_strings=stop_strings)
    return [Candidate(list(prompt_ids), d.ids, d.logprobs, d.text, float(sum(d.logprobs)))
            for d in drawn]


def best_of_n_batch(model: LanguageModel, prompts: Sequence[Sequence[int]], n: int,
                    scorer: Scorer = sequence_logprob, *, max_new_tokens: int,
                    sampler: Sampler | SamplingConfig | None = None, seeds: Sequence[int],
                    use_cache: bool = True, stop_ids: Sequence[int] = (),
                    stop_strings: Sequence[str] = ()) -> list[Candidate]:
    """``best_of_n`` of every prompt of ``prompts`` (all of one length), prompt j with seeds
    ``seeds[j] .. seeds[j] + n - 1``: all ``len(prompts) * n`` draws are one ``sample_batch``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LmbenchError(f"best-of-N needs an integer n >= 1, got {n!r}")
    check_at_most(n, MAX_BEST_OF, "best-of-N n")
    if len(seeds) != len(prompts):
        raise LmbenchError(f"seeds must give one seed per prompt: {len(seeds)} seeds for "
                           f"{len(prompts)} prompts")
    drawn = sample_batch(model, [p for p in prompts for _ in range(n)], max_new_tokens,
                         sampler=sampler, seeds=[s + i for s in seeds for i in range(n)],
                         use_cache=use_cache, stop_ids=stop_ids, stop_strings=stop_strings)
    results = []
    for j, prompt in enumerate(prompts):
        best = None
        for draw in drawn[j * n : (j + 1) * n]:
            candidate = Candidate(list(prompt), draw.ids, draw.logprobs, draw.text, float("nan"))
            candidate = replace(candidate, score=float(scorer(candidate)))
            if best is None or candidate.score > best.score:
                best = candidate
        results.append(best)
    return results
