"""Synthetic run records, generation reports and throughput records for report, store and
comparison tests (no model is trained, nothing is generated)."""

from __future__ import annotations

import math

import numpy as np

from lmbench.core.results import EvalResult, GenerationResult, RunResult


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
        generation=None if generation is None else GenerationResult.from_dict(generation))


GENERATION_KEYS = ("judge_perplexity", "self_bleu_4", "zipf_coefficient", "repetition_rate_128",
                   "distinct_1", "distinct_2", "distinct_3", "seq_rep_4", "mauve", "copy_rate_8",
                   "longest_copy", "bleu_4")


def _generation_row(label: str, quality: float, human: bool = False) -> dict:
    """One row of a generation report; ``quality`` in (0, 1] sets MAUVE and moves the rest."""
    values = {"judge_perplexity": 30.0 + 20.0 * (1.0 - quality), "self_bleu_4": 0.3,
              "zipf_coefficient": 1.0, "repetition_rate_128": 0.4, "distinct_1": 0.5,
              "distinct_2": 0.2 + 0.6 * quality, "distinct_3": 0.9,
              "seq_rep_4": 0.1 * (1.0 - quality), "mauve": math.nan if human else quality,
              "copy_rate_8": 0.01, "longest_copy": 6.0, "bleu_4": math.nan if human else 0.05}
    metrics = {key: {"value": v, "ci95": [0.9 * v, 1.1 * v] if math.isfinite(v)
                     else [math.nan, math.nan], "method": "bootstrap" if math.isfinite(v) else ""}
               for key, v in values.items()}
    wall_s = None if human else 2.0 / quality
    return {"label": label, "description": label, "metrics": metrics, "n_tokens": 240,
            "wall_s": wall_s, "decode_tokens_per_s": 240 / wall_s if wall_s else None}


def fake_generation_report(models: dict[str, float], corpus: str = "tiny", *,
                           sample: str = "and so to bed") -> dict:
    """A generation benchmark's JSON record (``GenerationReport.to_dict()``'s shape): per model
    label (-> quality, see ``_generation_row``) a human, a greedy and a top-p 0.95 row, and
    one sample whose top-p continuation is ``sample``."""
    return {
        "corpus": corpus, "command": "python benchmarks/generation_report.py --quick",
        "config": {"n_prompts": 10, "prompt_len": 8, "continuation_len": 24, "split": "test",
                   "seed": 0, "metric_unit": "words", "n_bootstrap": 200, "n_groups": 4},
        "metrics": [],
        "models": [{
            "label": label, "family": "ngram", "tokenizer": "word", "judge": "ngram",
            "features": "tfidf", "n_prompts": 10, "prompt_starts": list(range(0, 320, 32)),
            "decode_tokens_per_s": 500.0,
            "rows": [_generation_row("human", 1.0, human=True),
                     _generation_row("greedy", quality / 2),
                     _generation_row("top-p 0.95", quality)],
            "samples": [{"prompt": "the king", "human": "said nothing", "greedy": "the the",
                         "top-p 0.95": sample}],
        } for label, quality in models.items()],
        "env": {"created": "2026-01-01T00:00:00+00:00", "git_commit": "0" * 40},
    }


def fake_throughput(run_id: str, decode_tokens_per_s: float = 800.0) -> dict:
    """The JSON of a ``ThroughputResult`` (``lmbench bench``), the fields the store reads."""
    def spread(median: float) -> dict:
        return {"median": median, "low": 0.9 * median, "high": 1.1 * median}

    return {"run_id": run_id, "model": "m", "family": "ngram", "config": {}, "n_params": 1000,
            "score_tokens_per_s": spread(5000.0), "score_bytes_per_s": spread(20000.0),
            "prefill_tokens_per_s": spread(3000.0),
            "decode_tokens_per_s": spread(decode_tokens_per_s),
            "time_to_first_token_s": spread(0.01), "token_latency_p50_s": 0.001,
            "token_latency_p95_s": 0.002, "train_tokens_per_s": None, "peak_rss_bytes": 10**8,
            "weight_bytes": 10**6, "peak_tensor_bytes": 2 * 10**6, "cache_bytes": 0,
            "tensor_memory_source": "dispatch tracker", "flops_per_token": None,
            "matmul_peak_flops_per_s": {"fp32": 1e10, "bf16": 1e10},
            "utilization": {"score": None, "prefill": None, "decode": None, "train": None},
            "settings": {"corpus": "tiny"}, "hardware": {}, "env": {}}
