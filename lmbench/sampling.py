"""Generation through the interface's incremental state: ancestral sampling, seeded.

``generate`` feeds the prompt once, then one token at a time with the state the model returned,
so no family re-reads its whole prefix per token. A ``torch.Generator`` seeded from ``seed``
makes the output a function of (model, prompt, settings, seed) alone.

Temperature scales the logits (softmax(z / T)); ``temperature=0`` means greedy (argmax), as in
nanochat's ``sample_next_token``. ``top_k`` keeps the k largest logits (Fan et al. 2018).
"""

from __future__ import annotations

import torch

from lmbench.errors import LmbenchError
from lmbench.interface import LanguageModel


def sample_next_token(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
                      top_k: int | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) sampled ids. Does not modify ``logits``."""
    if temperature < 0:
        raise LmbenchError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise LmbenchError(f"top_k must be >= 1, got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.double() / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate(model: LanguageModel, prompt_ids: list[int], max_new_tokens: int, *, seed: int = 0,
             temperature: float = 1.0, top_k: int | None = None) -> list[int]:
    """Continue ``prompt_ids`` (boundary prepended) by ``max_new_tokens`` sampled ids."""
    if max_new_tokens < 0:
        raise LmbenchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[model.tokenizer.boundary_id, *prompt_ids]], dtype=torch.long)
    out: list[int] = []
    with torch.inference_mode():
        logits, state = model.logits(ids)  # (1, T, V)
        for _ in range(max_new_tokens):
            token = sample_next_token(logits[:, -1], generator, temperature, top_k)  # (1,)
            out.append(int(token))
            logits, state = model.logits(token[:, None], state)
    return out
