"""Prefix caching: the state after a shared prompt prefix is computed once and reused.

Many prompts often begin with the same ids (a few-shot preamble, a system prompt, the shared
context of multiple-choice candidates). Reading the prefix costs one pass over it; every prompt
after that only pays for its own suffix:

    cache = cache_prefix(model, preamble_ids)            # one pass over [boundary, *preamble]
    logits, state = extend(model, cache, suffix_ids)     # (1, T, V): only T new positions
    question = extend_cache(model, cache, question_ids)  # the cache of preamble + question
    drawn = sample_after(model, question, 20, sampler=SamplingConfig(temperature=0))
    answers = sample_batch_after(model, cache, questions_of_one_length, 20,
                                 seeds=[[0], [1], [2, 3]])    # B questions in one batch

This relies on the interface's two promises (``lmbench.core.interface``): ``logits(x[:, :k])``
followed by ``logits(x[:, k:], state)`` equals ``logits(x)``, and a call never modifies the
state it is given. Every family keeps them by building a new state on each call (copy on
extend: a Transformer's ``KVCache`` is extended with ``torch.cat``, an n-gram's history tail is
copied), so one cached state serves any number of suffixes. The state is opaque here; nothing
depends on the family.

``sample_batch_after`` answers B suffixes of one length together, as ``sampling.sample_batch``
does for whole prompts: the cached state is copied into B rows (``SelectsStateRows``), the B
suffixes are read in one (B, T) call, each suffix's rows (one per seed: self-consistency's
samples) are selected from it, and every step is one (R, 1) call. With many questions behind
one preamble, batching is what removes the per-token cost of decoding one question at a time;
the preamble is still read once.

A model with a window (``capabilities.max_window``) reads at most that many ids per call; a
longer prefix is cut to its last ``max_window`` ids, as ``lmbench.inference.sampling.generate``
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, SelectsStateRows, State
from lmbench.inference.sampling import (
    Sample,
    Sampler,
    SamplingConfig,
    check_max_new_tokens,
    continue_batch,
)


@dataclass(frozen=True)
class PrefixCache:
    """The model's state after the boundary id and ``prefix_ids``, and its next-token scores."""

    prefix_ids: tuple[int, ...]
    state: State  # never modified: each extend builds its own
    next_logits: torch.Tensor  # (V,) scores of the token after the prefix (model's device)


def cache_prefix(model: LanguageModel, prefix_ids: Sequence[int]) -> PrefixCache:
    """Read ``[boundary, *prefix_ids]`` once (its last ``max_window`` ids for a windowed model)."""
    ids = [model.tokenizer.boundary_id, *prefix_ids]
    window = model.capabilities.max_window
    if window is not None:
        ids = ids[-window:]
    with torch.inference_mode():
        logits, state = model.logits(torch.tensor([ids], dtype=torch.long))  # (1, T, V)
    return PrefixCache(tuple(prefix_ids), state, logits[0, -1])


def extend(model: LanguageModel, cache: PrefixCache, suffix_ids: Sequence[int]
           ) -> tuple[torch.Tensor, State]:
    """(1, T, V) next-token scores after each of the T ``suffix_ids`` read after the cached
    prefix, and the state after them; ``cache`` is left as it was."""
    if not suffix_ids:
        raise LmbenchError("extend needs at least one suffix id")
    with torch.inference_mode():
        return model.logits(torch.tensor([list(suffix_ids)], dtype=torch.long), cache.state)


def suffix_logprobs(model: LanguageModel, cache: PrefixCache, suffix_ids: Sequence[int]
                    ) -> torch.Tensor:
    """(T,) float64 ln p(suffix_ids[t] | boundary, prefix, suffix_ids[:t]), on the model's
    device: scoring candidate continuations of one shared context (multiple choice) at the
    cost of the suffixes alone."""
    first = torch.log_softmax(cache.next_logits.double(), dim=-1)[suffix_ids[0]].reshape(1)
    if len(suffix_ids) == 1:
        return first
    logits, _ = extend(model, cache, suffix_ids[:-1])  # (1, T-1, V)
    logprobs = torch.log_softmax(logits[0].double(), dim=-1)  # (T-1, V)
    targets = torch.tensor(suffix_ids[1:], device=logprobs.device)  # (T-1,)
    rest = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.cat((first, rest))


def extend_cache(model: LanguageModel, cache: PrefixCache, suffix_ids: Sequence[int]
                 ) -> PrefixCache:
    """The cache of ``prefix + suffix_ids``, reading only the suffix (``cache`` is unchanged):
    a few-shot preamble cached once, then each question read after it."""
    if not suffix_ids:
        return cache
    logits, state = extend(model, cache, suffix_ids)  # (1, T, V)
    return PrefixCache((*cache.prefix_ids, *map(int, suffix_ids)), state, logits[0, -1])


def sample_after(model: LanguageModel, cache: PrefixCache, max_new_tokens: int, *,
                 sampler: Sampler | SamplingConfig | None = None, seed: int = 0,
                 stop_strings: Sequence[str] = ()) -> Sample:
    """Continue the cached prefix: what ``sample(model, cache.prefix_ids, ...)`` draws, without
    reading the prefix again (one call per new token; none for the prefix).

    The loop is ``sample_batch``'s for one row: the processors see the boundary, the prefix and
    the tokens drawn so far; a ``torch.Generator`` seeded from ``seed`` draws; the text is cut
    before the first stop string. Equal to the uncached ``sample`` up to float rounding of the
    split reads (exact for n-grams), while the prefix and continuation fit the model's window.
    """
    check_max_new_tokens(max_new_tokens)
    history = torch.tensor([[model.tokenizer.boundary_id, *cache.prefix_ids]],
                           dtype=torch.long)  # (1, 1 + P)
    [drawn] = continue_batch(model, history, cache.next_logits.cpu()[None], cache.state,
                             max_new_tokens, sampler=sampler, seeds=[seed],
                             stop_strings=stop_strings)
    return drawn


def sample_batch_after(model: LanguageModel, cache: PrefixCache,
                       suffixes: Sequence[Sequence[int]], max_new_tokens: int, *,
                       seeds: Sequence[Sequence[int]],
                       sampler: Sampler | SamplingConfig | None = None,
                       stop_strings: Sequence[str] = ()) -> list[list[Sample]]:
    """``sample_after(model, extend_cache(model, cache, suffixes[q]), ..., seed=s)`` for every
    suffix q and every seed s of ``seeds[q]``, decoded together; ``cache`` is left as it was.

    The suffixes must have one length T (rows advance in lockstep; group questions by length).
    The prefix is not read again: the cached state is copied into one row per suffix, the
    suffixes are read in one (Q, T) call, and one row per (suffix, seed) decodes. Each row draws
    with its own generator seeded from its seed, so a row's output equals the one-row call's
    up to float rounding of the batched reads (exact for n-grams). A model without
    ``SelectsStateRows`` answers each (suffix, seed) in a call of its own.

    Returns:
        One list per suffix, one ``Sample`` per seed.
    """
    if len(seeds) != len(suffixes):
        raise LmbenchError(f"seeds must give one list of seeds per suffix: {len(seeds)} lists "
                           f"for {len(suffixes)} suffixes")
    lengths = sorted({len(suffix) for suffix in suffixes})
    if len(lengths) > 1:
        raise LmbenchError(f"suffixes of one batch must have one length, got lengths {lengths}")
    if not any(seeds):
        return [[] for _ in suffixes]
    if not isinstance(model, SelectsStateRows):
        return [[sample_after(model, extend_cache(model, cache, suffix), max_new_tokens,
                              sampler=sampler, seed=seed, stop_strings=stop_strings)
                 for seed in row_seeds] for suffix, row_seeds in zip(suffixes, seeds)]
    n_suffixes = len(suffixes)
    owners = torch.tensor([q for q, row_seeds in enumerate(seeds) for _ in row_seeds],
                          dtype=torch.long)  # (R,) the suffix of each decoding row
    with torch.inference_mode():
        state = model.select_state(cache.state, torch.zeros(n_suffixes, dtype=torch.long))
        if lengths[0]:
            logits, state = model.logits(torch.tensor([list(s) for s in suffixes],
                                                      dtype=torch.long), state)  # (Q, T, V)
            last = logits[:, -1].cpu()  # (Q, V)
        else:
            last = cache.next_logits.cpu()[None].expand(n_suffixes, -1)  # (Q, V)
        state = model.select_state(state, owners)
    head = [model.tokenizer.boundary_id, *cache.prefix_ids]
    history = torch.tensor([head + list(suffixes[q]) for q in owners.tolist()],
                           dtype=torch.long)  # (R, 1 + P + T)
    drawn = continue_batch(model, history, last[owners], state, max_new_tokens,
                           sampler=sampler, seeds=[s for row in seeds for s in row],
                           stop_strings=stop_strings)
    grouped: list[list[Sample]] = [[] for _ in suffixes]
    for q, sample in zip(owners.tolist(), drawn):
        grouped[q].append(sample)
    return grouped
