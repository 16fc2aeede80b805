"""Prompt tuning: a soft prompt of P learned input embeddings (Lester, Al-Rfou & Constant 2021,
"The Power of Scale for Parameter-Efficient Prompt Tuning", section 2).

The frozen model reads P trainable vectors (P, E) of its input embedding's width before every
input stream, as if they were P tokens; only those P x E numbers train. Initialisation (section
2.2 and 3.2 of the paper): ``random``, normal with the token embedding's standard deviation;
``vocab``, the embeddings of P vocabulary entries drawn with ``seed`` (Lester et al.'s "sampled
vocab", here from the whole vocabulary); ``text``, the embeddings of ``init_text``'s tokens,
repeated or cut to P (their class-label initialisation, for any text).

Where the prompt is consumed: at the start of a stream (state ``None``) the family's
``StartsFromEmbeddings`` ability (``lmbench.core.interface``) reads the prompt and its state
becomes the stream's starting state (``start_streams``), so scoring, generation and state
carrying across windows or steps are the family's own code, unchanged:

- ``gpt`` and ``moe``: the prompt occupies the first P positions of the context (positions
  0..P-1; every token attends to it). Its keys and values stay in the KV cache when the window
  slides, and the adapted model's ``max_context`` / ``max_window`` are P smaller, so no window
  and no generation step exceeds ``block_size``; every scoring window starts a fresh stream, so
  the prompt is in every window.
- ``rnn``, ``lstm``, ``gru``: the prompt run through the recurrent stack is a learned initial
  hidden state (the context is unbounded; nothing shrinks). Scoring carries the state from
  window to window as for the base, so the prompt is read once, at the stream's start;
  fine-tuning reads independent windows, each from the prompt (``LearnsStreamStart``).

A prompt of ``n_prompt_tokens`` >= the base's context is a one-line ``LmbenchError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, StartsFromEmbeddings
from lmbench.peft.adapted import AdaptedLM, LearnsStreamStart, adapt, register_method

INITS = ("random", "vocab", "text")


@register_method
@dataclass(frozen=True)
class PromptTuningConfig(LearnsStreamStart):
    """Prompt tuning's settings (module docstring)."""

    name: ClassVar[str] = "prompt"
    needs: ClassVar[type] = StartsFromEmbeddings
    n_prompt_tokens: int = 20  # P, the soft prompt's length
    init: str = field(default="vocab", metadata={"choices": INITS})
    init_text: str = ""  # the text whose token embeddings start the prompt (init = "text")
    seed: int = 0  # draws the vocabulary entries of init = "vocab"

    def __post_init__(self) -> None:
        P = self.n_prompt_tokens
        if isinstance(P, bool) or not isinstance(P, int) or P < 1:
            raise LmbenchError(f"prompt n_prompt_tokens must be an integer >= 1, got {P!r}")
        if self.init not in INITS:
            raise LmbenchError(f"prompt init must be one of {INITS}, got {self.init!r}")
        if self.init == "text" and not self.init_text:
            raise LmbenchError("prompt init = 'text' needs a non-empty init_text")

    @property
    def n_positions(self) -> int:
        return self.n_prompt_tokens

    def inject(self, model: StartsFromEmbeddings, network: nn.Module) -> list[nn.Module]:
        """Add the soft prompt (``network.soft_prompt``) and start every stream after it."""
        context = model.capabilities.max_context
        if context is not None and self.n_prompt_tokens >= context:
            raise LmbenchError(f"prompt n_prompt_tokens = {self.n_prompt_tokens} must be below "
                               f"the {model.name} model's context of {context} tokens")
        prompt = SoftPrompt(self.initial_prompt(model))
        network.add_module("soft_prompt", prompt)
        model.start_streams(PromptStart(model, prompt))
        return []

    @torch.no_grad()
    def initial_prompt(self, model: StartsFromEmbeddings) -> torch.Tensor:
        """The (P, E) starting prompt (module docstring)."""
        table = model.input_embedding_weight().detach()  # (V, E)
        P = self.n_prompt_tokens
        if self.init == "random":
            return torch.randn(P, table.shape[1], device=table.device) * table.float().std()
        if self.init == "vocab":
            generator = torch.Generator().manual_seed(self.seed)
            ids = torch.randint(table.shape[0], (P,), generator=generator)
        else:
            ids = torch.as_tensor(model.tokenizer.encode(self.init_text), dtype=torch.long)
            if not len(ids):
                raise LmbenchError(f"prompt init_text {self.init_text!r} encodes to no tokens")
            ids = ids.repeat((P + len(ids) - 1) // len(ids))[:P]
        return table[ids.to(table.device)].float().clone()


class SoftPrompt(nn.Module):
    """The P learned input embeddings, ``weight`` (P, E)."""

    def __init__(self, initial: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(initial)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.weight[None].expand(batch_size, -1, -1)  # (B, P, E)


class PromptStart:
    """A stream's start (``StartsStreams.start_streams``): the state after reading the prompt.
    A plain object, so deep-copying the model copies it with the model and prompt it holds."""

    def __init__(self, model: StartsFromEmbeddings, prompt: SoftPrompt) -> None:
        self.model, self.prompt = model, prompt

    def __call__(self, batch_size: int):
        return self.model.state_from_embeddings(self.prompt(batch_size), None)


def prompt_tuning(model: LanguageModel, config: PromptTuningConfig = PromptTuningConfig(),
                  **options) -> AdaptedLM:
    """``model`` with a soft prompt: ``adapt(model, config, **options)``."""
    return adapt(model, config, **options)
