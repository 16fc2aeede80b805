"""Prefix caching: the state after a shared prompt prefix is computed once and reused.

Many prompts often begin with the same ids (a few-shot preamble, a system prompt, the shared
context of multiple-choice candidates). Reading the prefix costs one pass over it; every prompt
after that only pays for its own suffix:

    cache = cache_prefix(model, preamble_ids)            # one pass over [boundary, *preamble]
    logits, state = extend(model, cache, suffix_ids)     # (1, T, V): only T new positions

This relies on the interface's two promises (``lmbench.core.interface``): ``logits(x[:, :k])``
followed by ``logits(x[:, k:], state)`` equals ``logits(x)``, and a call never modifies the
state it is given. Every family keeps them by building a new state on each call (copy on
extend: a Transformer's ``KVCache`` is extended with ``torch.cat``, an n-gram's history tail is
copied), so one cached state serves any number of suffixes. The state is opaque here; nothing
depends on the family.

A model with a window (``capabilities.max_window``) reads at most that many ids per call; a
longer prefix is cut to its last ``max_window`` ids, as ``lmbench.inference.sampling.generate``
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, State


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
