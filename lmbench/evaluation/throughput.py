"""``lmbench bench``: how fast a model trains, scores and generates, and how much memory it takes.

Every timed figure is the median of ``n_repeats`` runs after ``n_warmup`` discarded ones, with the
minimum and maximum beside it (``Spread``):

- scoring: tokens/s of the evaluator (``score_stream``) over the first ``score_tokens`` ids of a
  split; bytes/s = tokens/s x the split's UTF-8 bytes per token.
- generation, prefill and decode apart (compute-bound against bandwidth-bound; nanochat's
  ``infer_bench``): prefill tokens/s of one ``logits`` call over [boundary, prompt]; time to
  first token = that call plus the argmax; decode tokens/s of the single-token calls that follow,
  each continuing the state; per-token latency p50 / p95 over all decode steps.
- training: tokens/s of the trainer for ``train_steps`` steps (its own clock, ``TrainLog.tokens
  / seconds``) on a new model of the same settings (``Trainable.with_train_config``); for a
  count-based model, train tokens / fit wall time of a copy.
- on a GPU every timing waits for the queued kernels before reading the clock (``synchronize``);
  the matmul peak is measured on the model's device.
- memory: the process's peak RSS (``getrusage`` high-water mark, imports included); weight bytes
  (parameters or count tables, shared storage once); peak tensor bytes of one prefill + decode =
  weights + the largest live total of tensors allocated during it (CUDA: ``max_memory_allocated``;
  CPU: every tensor an aten op returns is followed until freed, by a ``TorchDispatchMode``);
  cache bytes = the state after that run.
- FLOPs per token: the family's ``flops_per_token(context_len)`` when it has one (gpt, moe:
  Kaplan et al. 2020, Table 1, with the attention term), else 2 x n_params for a neural model
  (each weight used in one multiply-add), else None (count-based: lookups, no matmuls; its
  utilisation is None too). Utilisation = achieved FLOP/s / the machine's peak, which the benchmark
  measures first with a square matmul (2 n^3 FLOPs, best of a few) in fp32 and bf16: scoring and
  generation against fp32 (evaluation runs in fp32), training (3 x forward: forward and
  backward, Kaplan's 6N) against bf16 when the family trains in bf16 autocast and the device
  runs it (``lmbench.core.device.supports_bf16``; elsewhere autocast is off and training runs in
  fp32, so its peak is fp32's: a CPU without AVX-512 BF16 or AMX emulates bf16 matmuls at about
  1% of its fp32 rate, and dividing by that peak would report over 100%).

The record, ``ThroughputResult`` (``lmbench.core.results``, beside the other records), is
written as ``<out>/<run_id>/throughput.json``: beside the run's ``result.json`` when the model
was saved in a run folder, so a leaderboard joins them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lmbench.core.device import (
    describe_device,
    peak_memory_bytes,
    reset_peak_memory,
    supports_bf16,
    synchronize,
)
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, LanguageModel, Trainable
from lmbench.core.io import write_json_atomic
from lmbench.core.limits import MAX_NEW_TOKENS, check_at_most
from lmbench.core.names import contained, new_run_id, safe_name
from lmbench.core.results import Spread, ThroughputResult, environment
from lmbench.data.corpora import Corpus, load_corpus
from lmbench.evaluation.resources import (
    TensorMemoryTracker,
    flops_per_token,
    hardware,
    matmul_peak_flops,
    nbytes_of,
    peak_rss_bytes,
    weight_bytes,
)
from lmbench.evaluation.scoring import EvalConfig, score_stream


@dataclass(frozen=True)
class BenchConfig:
    score_tokens: int = 4096  # ids scored per scoring run
    prompt_tokens: int = 64  # prompt ids before generation (cut to fit a model's window)
    new_tokens: int = 64  # generated ids per generation run (>= 2, <= MAX_NEW_TOKENS: 100,000)
    train_steps: int = 5  # trainer steps per training run; 0 skips training
    n_warmup: int = 1  # discarded runs of each kind
    n_repeats: int = 3  # measured runs of each kind
    peak_matmul_size: int = 1024  # n of the n x n matmul that measures the peak
    split: str = "valid"  # corpus split measured (test, then train, if it is missing)

    def __post_init__(self) -> None:
        if self.new_tokens < 2 or self.n_repeats < 1 or self.n_warmup < 0:
            raise LmbenchError("bench needs new_tokens >= 2, n_repeats >= 1, n_warmup >= 0")
        check_at_most(self.new_tokens, MAX_NEW_TOKENS, "bench new_tokens")
        if min(self.score_tokens, self.prompt_tokens, self.peak_matmul_size) < 1:
            raise LmbenchError("score_tokens, prompt_tokens and peak_matmul_size must be >= 1")

    @classmethod
    def quick(cls) -> BenchConfig:
        """Tiny settings that run in seconds (CI)."""
        return cls(score_tokens=512, prompt_tokens=16, new_tokens=16, train_steps=2,
                   n_warmup=1, n_repeats=2, peak_matmul_size=256)


# ------------------------------------------------------------------------------- measurement


def _bench_ids(model: LanguageModel, data, split: str
               ) -> tuple[np.ndarray, float | None, Corpus | None]:
    """The measured ids, UTF-8 bytes per token (None if unknown) and the corpus, if any."""
    if isinstance(data, (str, os.PathLike)):
        data = load_corpus(data)
    if isinstance(data, Corpus):
        name = next(s for s in (split, "test", "train") if s in data.splits)
        text = data.split(name)
        ids = model.tokenizer.encode_split(text)
        return ids, text.n_bytes / max(len(ids), 1), data
    ids = np.asarray(data, dtype=np.int64)
    try:
        per_token = len(model.tokenizer.decode(ids).encode("utf-8")) / max(len(ids), 1)
    except Exception:  # a tokenizer that cannot decode these ids: bytes/s is not reported
        per_token = None
    return ids, per_token, None


def _generate_greedy(model: LanguageModel, prompt: list[int], new_tokens: int):
    """Prefill then ``new_tokens - 1`` single-token steps; (prefill s, step latencies, state)."""
    ids = torch.tensor([[model.tokenizer.boundary_id, *prompt]], dtype=torch.long)
    device = model.device
    with torch.inference_mode():
        synchronize(device)
        started = time.perf_counter()
        logits, state = model.logits(ids)  # (1, T, V)
        token = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1): the first token
        synchronize(device)
        prefill_s = time.perf_counter() - started
        latencies = []
        for _ in range(new_tokens - 1):
            started = time.perf_counter()
            logits, state = model.logits(token, state)
            token = logits[:, -1].argmax(-1, keepdim=True)
            synchronize(device)
            latencies.append(time.perf_counter() - started)
    return prefill_s, latencies, state


def _train_rates(model: LanguageModel, corpus: Corpus | None, config: BenchConfig):
    """Training tokens/s per measured run (None if not measurable) and the train config."""
    if corpus is None or config.train_steps < 1:
        return None, None
    train_config = model.train_config() if isinstance(model, Trainable) else None
    n_train_ids = None
    rates = []
    for run in range(config.n_warmup + config.n_repeats):
        try:  # a new model or a copy, so the measured model is kept
            trained = (model.with_train_config(replace(train_config, progress=False))
                       if isinstance(model, Trainable) else copy.deepcopy(model))
            started = time.perf_counter()
            trained.fit(corpus, valid=False, budget=Budget(max_steps=config.train_steps))
        except LmbenchError:  # e.g. a quantized model
            return None, None
        wall_s = time.perf_counter() - started
        log = trained.training_log()
        if log and log.get("seconds"):
            rate = log["tokens"] / log["seconds"]
        else:  # one counting pass over the train split
            if n_train_ids is None:
                n_train_ids = len(model.tokenizer.encode_split(corpus.train))
            rate = n_train_ids / wall_s
        if run >= config.n_warmup:
            rates.append(rate)
    return Spread.of(rates), train_config


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q)) if values else float("nan")


def measure_throughput(model: LanguageModel, corpus_or_ids, config: BenchConfig = BenchConfig(),
                       *, label: str | None = None, run_id: str | None = None
                       ) -> ThroughputResult:
    """Measure ``model`` (see the module docstring) on a corpus (name, path or ``Corpus``: its
    ``config.split`` is scored, its train split trains) or on (N,) token ids (no training).

    Example::

        result = measure_throughput(model, "tinyshakespeare", BenchConfig.quick())
        result.decode_tokens_per_s.median, result.utilization["score"]
    """
    device = model.device
    peak = {"fp32": matmul_peak_flops(torch.float32, config.peak_matmul_size, device=device),
            "bf16": matmul_peak_flops(torch.bfloat16, config.peak_matmul_size, device=device)}
    ids, bytes_per_token, corpus = _bench_ids(model, corpus_or_ids, config.split)
    window = model.capabilities.max_window
    score_ids = ids[: config.score_tokens]
    prompt = ids[: min(config.prompt_tokens, (window or 10**9) - 1)].tolist()
    if len(score_ids) < 2 or not prompt:
        raise LmbenchError(f"bench needs at least 2 token ids to measure, got {len(ids)}")
    n_runs = config.n_warmup + config.n_repeats

    score_rates = []
    for run in range(n_runs):
        started = time.perf_counter()
        score_stream(model, score_ids, EvalConfig(progress=False))
        if run >= config.n_warmup:
            score_rates.append(len(score_ids) / (time.perf_counter() - started))

    prefill, ttft, decode, latencies = [], [], [], []
    for run in range(n_runs):
        prefill_s, steps, _ = _generate_greedy(model, prompt, config.new_tokens)
        if run >= config.n_warmup:
            prefill.append((len(prompt) + 1) / prefill_s)
            ttft.append(prefill_s)
            decode.append(len(steps) / sum(steps))
            latencies += steps

    # One untimed run for memory (following tensors slows every op down).
    weights = weight_bytes(model)
    if device.type == "cuda":  # the weights live there too, so they are in the peak
        reset_peak_memory(device)
        _, _, state = _generate_greedy(model, prompt, config.new_tokens)
        peak_tensors, source = peak_memory_bytes(device), "cuda.max_memory_allocated"
    else:
        with TensorMemoryTracker() as tracker:
            _, _, state = _generate_greedy(model, prompt, config.new_tokens)
        peak_tensors, source = weights + tracker.peak, "dispatch tracker"

    train, train_config = _train_rates(model, corpus, config)

    # FLOPs at the mean number of keys a query attends to in each workload.
    score_context = min(len(score_ids), window or EvalConfig().window_len) / 2
    decode_context = min(len(prompt) + 1 + config.new_tokens / 2, window or math.inf)
    score_flops = flops_per_token(model, score_context)

    def used(tokens_per_s: float, context: float | None, peak_name: str = "fp32",
             passes: int = 1) -> float | None:
        flops = flops_per_token(model, context)
        return None if flops is None else tokens_per_s * passes * flops / peak[peak_name]

    utilization = {
        "score": used(Spread.of(score_rates).median, score_context),
        "prefill": used(Spread.of(prefill).median, (len(prompt) + 1) / 2),
        "decode": used(Spread.of(decode).median, decode_context),
        "train": None,
    }
    if train is not None:  # forward + backward = 3 forward passes (Kaplan's 6N)
        seq_len = None if train_config is None else train_config.seq_len
        bf16 = train_config is not None and train_config.bf16 and supports_bf16(device)
        utilization["train"] = used(train.median, seq_len and seq_len / 2,
                                    "bf16" if bf16 else "fp32", passes=3)
    family = model.config().get("family", model.name)
    if run_id is None:
        run_id = new_run_id("ids" if corpus is None else corpus.name,
                            f"{label or model.name}-bench")
    return ThroughputResult(
        run_id=run_id, model=label or model.name, family=family, config=model.config(),
        n_params=model.n_params(),
        score_tokens_per_s=Spread.of(score_rates),
        score_bytes_per_s=(None if bytes_per_token is None
                           else Spread.of([r * bytes_per_token for r in score_rates])),
        prefill_tokens_per_s=Spread.of(prefill), decode_tokens_per_s=Spread.of(decode),
        time_to_first_token_s=Spread.of(ttft),
        token_latency_p50_s=_quantile(latencies, 0.5),
        token_latency_p95_s=_quantile(latencies, 0.95),
        train_tokens_per_s=train, peak_rss_bytes=peak_rss_bytes(), weight_bytes=weights,
        peak_tensor_bytes=peak_tensors, cache_bytes=nbytes_of(state),
        tensor_memory_source=source, flops_per_token=score_flops,
        matmul_peak_flops_per_s=peak, utilization=utilization,
        settings={**asdict(config), "prompt_tokens_used": len(prompt),
                  "score_tokens_used": len(score_ids),
                  "corpus": None if corpus is None else corpus.name},
        hardware=hardware(device), env=environment(), device=describe_device(device))


def write_throughput(result: ThroughputResult, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<run_id>/throughput.json`` atomically; returns its path."""
    path = contained(out_dir, safe_name(result.run_id, "run id"), "throughput.json")
    write_json_atomic(path, result.to_dict())
    return path


def read_throughput(path: str | Path) -> ThroughputResult:
    return ThroughputResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
