"""``FunctionLM``: any function from token ids to next-token log-probabilities, as a model.

The function is the whole model::

    next_token_logprobs(input_ids) -> logprobs
    input_ids: (B, T) int64 torch tensor of ids of ``tokenizer``
    logprobs:  (B, T, V) float tensor or numpy array, V = tokenizer.vocab_size, where
               logprobs[b, t] is the distribution of the token *after* input_ids[b, :t+1]

It must be causal (position t may not look at ids after t) and deterministic. Rows are
``log_softmax``-ed once more, which leaves normalised log-probabilities unchanged and turns raw
logits into them, so either may be returned. ``input_ids[:, 0]`` is the tokenizer's
``boundary_id`` at the start of a stream (the context of the first token).

The incremental ``state`` is the context seen so far (the last ``max_context`` ids), so the
interface's chunking rule holds: ``logits(x[:, :k])`` then ``logits(x[:, k:], state)`` equals
``logits(x)`` for contexts within ``max_context``. Each call recomputes over that context:
correct for any function, at O(T²) cost when generating token by token.

The model works on its ``device``, the CPU (``HuggingFaceLM``: its network's): ids from any
device reach the function there, and what the function returns is brought there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Capabilities, LanguageModel, SelectsStateRows, State
from lmbench.core.tokenizers import Tokenizer, build_tokenizer

NextTokenFunction = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]


class FunctionLM(LanguageModel, SelectsStateRows):
    """A plain function ``(B, T) ids -> (B, T, V) next-token log-probabilities`` as a model.

    Args:
        next_token_logprobs: the function (module docstring).
        tokenizer: an lmbench ``Tokenizer`` whose ids the function reads, or a registered name
            (``"byte"``, ``"char"``, ``"word"``, ``"bpe"``); unfitted ones are fitted on the
            corpus's training split by ``fit``.
        name: the model's name in results (``EvalResult.model``).
        n_params: parameter count to report (0: unknown, shown blank on the leaderboard).
        max_context: tokens of left context the function uses; None: all it is given.
        max_window: the longest T one call may receive (None: any). Scoring windows and the
            context carried between calls are cut to it.
        config: extra JSON-serialisable settings to record with results.

    Example::

        uniform = FunctionLM(lambda ids: torch.zeros(*ids.shape, 257), tokenizer="byte")
        lmbench.evaluate(uniform.fit(corpus), corpus).bits_per_byte   # 8.0056...
    """

    family = "function"

    def __init__(self, next_token_logprobs: NextTokenFunction, tokenizer: Tokenizer | str = "byte",
                 *, name: str = "function", n_params: int = 0, max_context: int | None = None,
                 max_window: int | None = None, config: dict[str, Any] | None = None) -> None:
        if not callable(next_token_logprobs):
            raise LmbenchError("FunctionLM needs a callable (token ids) -> next-token log-probs")
        for label, value, least in (("max_context", max_context, 1), ("max_window", max_window, 2)):
            if value is not None and value < least:
                raise LmbenchError(f"FunctionLM {label} must be >= {least}, got {value}")
        self.function = next_token_logprobs
        self.tokenizer = build_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.name = name
        self.n_params_ = int(n_params)
        self.capabilities = Capabilities(exact_likelihood=True, max_context=max_context,
                                         max_window=max_window)
        self.extra_config = dict(config or {})
        self.output_size: int | None = None  # V the function returns; None: the vocab size

    def fit(self, corpus, *, valid: bool = True, budget=None, checkpoint_dir=None) -> FunctionLM:
        """Fit the tokenizer on ``corpus.train`` if it is not fitted; the function is as given."""
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(corpus.train)
        return self

    def logits(self, input_ids, state: State = None) -> tuple[torch.Tensor, State]:
        new = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)  # (B, T)
        context = new if state is None else torch.cat([state, new], dim=1)
        kept = self._context_limit()
        if kept is not None and context.shape[1] > kept + new.shape[1]:
            context = context[:, -(kept + new.shape[1]):]
        scores = self._call(context)[:, -new.shape[1]:]  # (B, T, V)
        return scores, (context if kept is None else context[:, -kept:])

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        """Rows of the (B, S) context ids."""
        if state is None:
            return None
        return state.index_select(0, torch.as_tensor(rows, device=state.device))

    def token_logprobs(self, input_ids, target_ids, state: State = None):
        logits, state = self.logits(input_ids, state)  # (B, T, V)
        targets = torch.as_tensor(target_ids, dtype=torch.long, device=logits.device)
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        return torch.where(targets >= 0, picked, 0.0), state

    def _context_limit(self) -> int | None:
        """Ids of context to carry: max_context, and at most max_window - 1."""
        window = self.capabilities.max_window
        limits = [v for v in (self.capabilities.max_context, window and window - 1) if v]
        return min(limits) if limits else None

    def _call(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.function(ids)
        out = torch.from_numpy(np.asarray(out)) if not isinstance(out, torch.Tensor) else out
        B, T = ids.shape
        V = self.output_size or self.tokenizer.vocab_size
        if tuple(out.shape) != (B, T, V):
            raise LmbenchError(f"{self.name!r}: the function returned shape "
                               f"{tuple(out.shape)} for input {(B, T)}; expected (B, T, V) = "
                               f"{(B, T, V)} (V = the tokenizer's vocab_size)")
        return out.float().to(self.device)

    def n_params(self) -> int:
        return self.n_params_

    def config(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.name, "tokenizer_options": self.tokenizer.config(),
                "max_context": self.capabilities.max_context,
                "max_window": self.capabilities.max_window, **self.extra_config}

    def save(self, path: str | Path) -> None:
        raise LmbenchError("a FunctionLM wraps a Python function and cannot be saved; save the "
                           "model behind the function and wrap it again")

    @classmethod
    def load(cls, path: str | Path) -> FunctionLM:
        raise LmbenchError("a FunctionLM cannot be loaded from a file; wrap the function again")
