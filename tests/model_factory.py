"""Wrappers that take an ability away from a fitted model, for the fallbacks that serve models
without it."""

from __future__ import annotations

from lmbench.core.interface import LanguageModel


class Unselecting(LanguageModel):
    """``model`` without ``SelectsStateRows``: its state cannot be selected by rows."""

    def __init__(self, model: LanguageModel, name: str = "unselecting"):
        self.model, self.name, self.tokenizer = model, name, model.tokenizer
        self.capabilities = model.capabilities

    def logits(self, input_ids, state=None):
        return self.model.logits(input_ids, state)

    token_logprobs = fit = n_params = config = save = load = None  # never called
