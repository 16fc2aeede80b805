"""Synthetic run records for report, store and comparison tests (no model is trained)."""

from __future__ import annotations

import math

import numpy as np

from lmbench.results import EvalResult, RunResult


def fake_run(run_id: str, *, model: str = "m", corpus: str = "tiny", tokenizer: str = "word",
             nats_per_token: float = 2.0, n_tokens: int = 4096, block_len: int = 256,
             n_bytes: int = 16384, exact: bool = True, seed: int = 0, n_params: int = 1000,
             fit_s: float = 1.0, unk_rate: float = 0.05, generation: dict | None = None,
             curve: list[dict] | None = None, sha: str | None = None) -> RunResult:
    """A record whose per-block NLLs scatter around ``nats_per_token``."""
    n_blocks = math.ceil(n_tokens / block_len)
    tokens = np.full(n_blocks, block_len, dtype=float)
    tokens[-1] = n_tokens - block_len * (n_blocks - 1)
    noise = np.random.default_rng(seed).normal(0.0, 0.2, n_blocks)
    blocks = tokens * (nats_per_token + noise)
    nll = float(blocks.sum())
    metrics = EvalResult(
        model=model, corpus=corpus, split="test", nll_nats=nll, n_tokens=n_tokens,
        n_bytes=n_bytes, n_words=n_tokens, n_unk=int(unk_rate * n_tokens), exact_likelihood=exact,
        perplexity_ci95=(math.exp(nll / n_tokens) * 0.95, math.exp(nll / n_tokens) * 1.05),
        bits_per_byte_ci95=(0.0, 1.0), wall_s=0.5, tokens_per_s=n_tokens / 0.5,
        block_len=block_len, block_nll_nats=tuple(blocks.tolist()))
    return RunResult(
        run_id=run_id, model=model, corpus=corpus,
        config={"family": "ngram", "tokenizer": tokenizer}, seed=seed, n_params=n_params,
        fit_s=fit_s, metrics={"test": metrics}, env={"created": "2026-01-01T00:00:00+00:00"},
        train_log={"curve": curve} if curve else None,
        tokenizer={"name": tokenizer, "vocab_size": 100, "sha256": sha or tokenizer},
        generation=generation)
