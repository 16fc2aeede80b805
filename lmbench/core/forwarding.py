"""Optional abilities of a wrapped model, answered by the copy a wrapper holds.

A wrapper (``lmbench.peft.adapted.AdaptedLM``, ``lmbench.inference.quantize.QuantizedLM``)
holds a changed copy of a model as ``self.inner`` and must declare exactly the optional
abilities (``lmbench.core.interface``) of the model it wraps, so that callers keep asking
``isinstance(model, SelectsStateRows)`` and never probe with ``getattr``. Each ability here has
one mixin that forwards its methods to ``self.inner``; ``declaring(wrapper, model)`` is the
subclass of ``wrapper`` with the mixins of the abilities ``model`` has.

A wrapper whose answer differs from the copy's (a quantized model counts the FLOPs of weights
that are no longer ``Parameter``s) passes its own mixin for that ability in ``replacing``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from lmbench.core.interface import (
    ComputesHidden,
    CountsFlops,
    Embeds,
    LanguageModel,
    RollsBackState,
    SelectsStateRows,
)


class ForwardsSelectsStateRows(SelectsStateRows):
    def select_state(self, state, rows):
        return self.inner.select_state(state, rows)


class ForwardsEmbeds(Embeds):
    def embed(self, input_ids):
        return self.inner.embed(input_ids)


class ForwardsCountsFlops(CountsFlops):
    def flops_per_token(self, context_len=None):
        return self.inner.flops_per_token(context_len)


class ForwardsRollsBackState(RollsBackState):
    def state_length(self, state):
        return self.inner.state_length(state)

    def rollback_state(self, state, length):
        return self.inner.rollback_state(state, length)


class ForwardsComputesHidden(ComputesHidden):
    @property
    def hidden_size(self) -> int:
        return self.inner.hidden_size

    def forward_hidden(self, input_ids, state=None):
        return self.inner.forward_hidden(input_ids, state)

    def logits_from_hidden(self, hidden):
        return self.inner.logits_from_hidden(hidden)


FORWARDED: dict[type, type] = {
    SelectsStateRows: ForwardsSelectsStateRows,
    Embeds: ForwardsEmbeds,
    CountsFlops: ForwardsCountsFlops,
    RollsBackState: ForwardsRollsBackState,
    ComputesHidden: ForwardsComputesHidden,
}


def declaring(wrapper: type, model: LanguageModel, *, abilities: tuple[type, ...] | None = None,
              replacing: Mapping[type, type] | None = None) -> type:
    """``wrapper`` declaring, besides its own, each ability of ``abilities`` (default: every
    ability in ``FORWARDED``) that ``model`` has, answered by ``FORWARDED``'s mixin or by the
    one ``replacing`` gives for it. ``wrapper`` itself when ``model`` has none of them."""
    replacing = dict(replacing or {})
    mixins = tuple(replacing.get(ability, FORWARDED[ability])
                   for ability in (FORWARDED if abilities is None else abilities)
                   if isinstance(model, ability))
    return _subclass(wrapper, mixins)


@functools.cache
def _subclass(wrapper: type, mixins: tuple[type, ...]) -> type:
    """One class per (wrapper, mixins): equal wrappers of equal models share a type."""
    if not mixins:
        return wrapper
    return type(wrapper.__name__, (wrapper, *mixins),
                {"__module__": wrapper.__module__, "__doc__": wrapper.__doc__,
                 "__qualname__": wrapper.__qualname__})
