"""The evaluator: the one place perplexity and bits per byte are computed.

A split is encoded by the model's tokenizer into one stream x_1..x_N. Token x_i is predicted from
the boundary id followed by x_1..x_{i-1}, as much of it as the model can use. Every token is
scored exactly once, and the sums are taken before dividing (Σ nats / Σ units; lm-evaluation-
harness ``weighted_perplexity``, nanochat ``evaluate_bpb``):

    perplexity     = exp(NLL / N)                   NLL = -Σ ln p(x_i | context), in nats
    bits_per_byte  = NLL / (ln 2 · bytes)           bytes: UTF-8 bytes of the split's raw text
    word_perplexity = exp(NLL / words)              words: the corpus's words + one per sentence

Windows (``plan_windows``), from the model's ``Capabilities`` only:

- ``carries_state``: consecutive chunks of ``window_len`` tokens, all scored, the state (an RNN's
  hidden state) passed from each chunk to the next, so context is never cut.
- otherwise, windows of L = ``max_window`` (or ``window_len``) tokens. The first scores all its
  tokens; each next one starts C tokens before the previous end, C = min(max_context, L // 2),
  and scores only the tokens after that end (stride L - C). Every scored token after the first
  window sees at least C tokens of context. For an order-n n-gram C = n - 1, so scoring is exact.
  Example, L = 8, C = 4, N = 14: windows [0, 8) scoring 0..7, [4, 12) scoring 8..11,
  [8, 14) scoring 12..13.

Memory: a call's (B, T, V) float32 logits are kept under ``EvalConfig.memory_budget_bytes``
(``fit_to_budget``): fewer windows per call first (the windows, so the numbers, stay as they
are), then shorter windows, never shorter than twice ``max_context`` (so an n-gram is still
scored exactly) nor than one token. Only a model whose one window of that length is over the
budget is scored differently from an unbounded budget.

Confidence intervals: the per-token NLL is cut into blocks of ``block_len`` consecutive tokens,
blocks are resampled with replacement ``n_bootstrap`` times, and the 2.5 / 97.5 percentiles of
exp(Σ NLL / Σ tokens) give the 95% interval (a block bootstrap, Künsch 1989; blocks keep the
dependence between neighbouring tokens). The bits-per-byte interval rescales each resampled
per-token NLL by the split's tokens per byte.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Capabilities, LanguageModel
from lmbench.core.limits import MAX_EVAL_BOOTSTRAP, check_at_most
from lmbench.core.results import EvalResult
from lmbench.data.corpora import Corpus, Split, load_corpus


@dataclass(frozen=True)
class EvalConfig:
    """How a split is scored (module docstring).

    ``window_len`` x ``batch_size`` are upper bounds: each model call's (B, T, V) float32 logits
    stay under ``memory_budget_bytes`` (1 GiB by default), by fewer windows per call first, then
    shorter windows (``fit_to_budget``), for every model, built-in or not.
    """

    window_len: int = 8192  # tokens per window for models without a max_window
    batch_size: int = 8  # windows per model call, at most
    block_len: int = 1024  # tokens per bootstrap block
    n_bootstrap: int = 1000  # bootstrap resamples, at most MAX_EVAL_BOOTSTRAP (100,000)
    seed: int = 0  # bootstrap seed, >= 0
    progress: bool = True  # tqdm bar on a terminal; else a line on stderr every 10% or 30 s
    memory_budget_bytes: int = 2**30  # B x T x V x 4 bytes of logits per call, at most

    def __post_init__(self) -> None:
        for name in ("window_len", "batch_size", "block_len", "n_bootstrap",
                     "memory_budget_bytes"):
            if getattr(self, name) < 1:
                raise LmbenchError(f"eval.{name} must be >= 1, got {getattr(self, name)}")
        check_at_most(self.n_bootstrap, MAX_EVAL_BOOTSTRAP, "eval.n_bootstrap")
        if self.seed < 0:
            raise LmbenchError(f"eval.seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class Window:
    start: int  # first input position
    end: int  # one past the last position
    score_from: int  # first position whose target is scored


def plan_windows(n_tokens: int, capabilities: Capabilities, window_len: int) -> list[Window]:
    """Windows covering positions 0..n_tokens-1, each scored exactly once (module docstring)."""
    length = capabilities.max_window or window_len
    if capabilities.carries_state:
        return [Window(s, min(s + length, n_tokens), s) for s in range(0, n_tokens, length)]
    context = length // 2
    if capabilities.max_context is not None:
        context = min(capabilities.max_context, context)
    windows = [Window(0, min(length, n_tokens), 0)]
    while windows[-1].end < n_tokens:
        start = windows[-1].end - context
        windows.append(Window(start, min(start + length, n_tokens), windows[-1].end))
    return windows


def fit_to_budget(capabilities: Capabilities, vocab_size: int, config: EvalConfig
                  ) -> tuple[int, int]:
    """(window length, windows per call) whose (B, T, V) float32 logits fit
    ``config.memory_budget_bytes``: the configured ones when they fit, else fewer windows per
    call, then shorter windows, down to 2 x ``max_context`` (1 token for a model that carries
    its state between windows, or whose context is unbounded)."""
    length = capabilities.max_window or config.window_len
    # Stateful models run one stream in order; others batch windows side by side.
    batch = 1 if capabilities.carries_state else config.batch_size
    fitting = max(1, config.memory_budget_bytes // (4 * vocab_size))  # tokens of logits a call
    if batch * length <= fitting:
        return length, batch
    if length <= fitting:
        return length, fitting // length
    floor = 1
    if not capabilities.carries_state and capabilities.max_context is not None:
        floor = min(length, 2 * capabilities.max_context)
    return max(fitting, floor), 1


def score_stream(model: LanguageModel, ids: np.ndarray, config: EvalConfig = EvalConfig(),
                 description: str = "scoring") -> np.ndarray:
    """(N,) token ids -> (N,) float64 NLL in nats of each token, each scored exactly once."""
    ids = np.asarray(ids, dtype=np.int64)
    inputs = np.concatenate(([model.tokenizer.boundary_id], ids[:-1]))
    capabilities = model.capabilities
    length, batch_size = fit_to_budget(capabilities, model.tokenizer.vocab_size, config)
    windows = plan_windows(len(ids), replace(capabilities, max_window=length), length)
    nll = np.full(len(ids), np.nan)
    state = None
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    progress = _progress(batches, config.progress, description)
    with torch.inference_mode():
        for batch in progress:
            width = max(w.end - w.start for w in batch)
            input_ids = np.full((len(batch), width), model.tokenizer.boundary_id, np.int64)
            target_ids = np.full((len(batch), width), -1, np.int64)
            for row, w in enumerate(batch):
                input_ids[row, : w.end - w.start] = inputs[w.start : w.end]
                scored = slice(w.score_from - w.start, w.end - w.start)
                target_ids[row, scored] = ids[w.score_from : w.end]
            logprobs, new_state = model.token_logprobs(
                torch.from_numpy(input_ids), torch.from_numpy(target_ids), state)
            logprobs = logprobs.double().cpu().numpy()  # from the model's device
            if np.isnan(logprobs).any() or np.isposinf(logprobs).any():  # -inf is p = 0: valid
                raise LmbenchError(f"model {model.name!r} returned NaN or +inf log-probabilities "
                                   f"(tokens {batch[0].start}..{batch[-1].end}); it is broken")
            if capabilities.carries_state:
                state = new_state
            for row, w in enumerate(batch):
                nll[w.score_from : w.end] = -logprobs[row, w.score_from - w.start : w.end - w.start]
    if np.isnan(nll).any():
        raise AssertionError("a token was left unscored; plan_windows is broken")
    return nll


def evaluate(model: LanguageModel, corpus: Corpus | str, split: str = "test",
             config: EvalConfig = EvalConfig(), data_dir=None) -> EvalResult:
    """Score ``split`` of ``corpus`` with ``model``; see the module docstring for the maths.
    Scoring runs where the model computes (``model.to("cuda")`` first to score on a GPU).

    Example::

        result = lmbench.evaluate(model, "brown", split="test")
        result.perplexity, result.bits_per_byte, result.perplexity_ci95
    """
    if isinstance(corpus, str):
        corpus = load_corpus(corpus, data_dir)
    text_split = corpus.split(split)
    if not model.tokenizer.is_fitted:
        raise LmbenchError(f"model {model.name!r} is not fitted; call fit(corpus) first")
    ids = model.tokenizer.encode_split(text_split)
    if ids.size == 0:
        raise LmbenchError(f"split {split!r} of corpus {corpus.name!r} encodes to no tokens")
    started = time.perf_counter()
    nll = score_stream(model, ids, config, f"scoring {corpus.name} {split}")
    wall_s = time.perf_counter() - started
    return summarize(model, corpus.name, text_split, ids, nll, wall_s, config)


def summarize(model: LanguageModel, corpus_name: str, split: Split, ids: np.ndarray,
              nll: np.ndarray, wall_s: float, config: EvalConfig) -> EvalResult:
    """Sums, the block bootstrap and the result record for one scored split."""
    n_tokens = len(ids)
    n_blocks = math.ceil(n_tokens / config.block_len)
    block_of = np.arange(n_tokens) // config.block_len
    block_nll = np.bincount(block_of, weights=nll, minlength=n_blocks)
    block_tokens = np.bincount(block_of, minlength=n_blocks).astype(np.float64)
    rng = np.random.default_rng(config.seed)
    picks = rng.integers(0, n_blocks, size=(config.n_bootstrap, n_blocks))
    mean_nll = block_nll[picks].sum(axis=1) / block_tokens[picks].sum(axis=1)  # nats / token
    low, high = np.percentile(mean_nll, [2.5, 97.5])
    tokens_per_byte = n_tokens / split.n_bytes
    unk_id = model.tokenizer.unk_id
    return EvalResult(
        model=model.name, corpus=corpus_name, split=split.name,
        nll_nats=float(nll.sum()), n_tokens=n_tokens, n_bytes=split.n_bytes,
        n_words=split.n_words, n_unk=int((ids == unk_id).sum()) if unk_id is not None else 0,
        exact_likelihood=model.capabilities.exact_likelihood,
        perplexity_ci95=(math.exp(low), math.exp(high)),
        bits_per_byte_ci95=(low * tokens_per_byte / math.log(2),
                            high * tokens_per_byte / math.log(2)),
        wall_s=wall_s, tokens_per_s=n_tokens / wall_s if wall_s > 0 else float("inf"),
        block_len=config.block_len, block_nll_nats=tuple(block_nll.tolist()),
    )


def _progress(batches: list[list[Window]], enabled: bool, description: str):
    """The batches, with a tqdm bar on a terminal, else a line on stderr every 10% or 30 s."""
    if not enabled or len(batches) < 2:
        return batches
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(batches, desc=description, unit="batch", leave=False)
    return _progress_lines(batches, description)


def _progress_lines(batches: list[list[Window]], description: str, every_s: float = 30.0):
    total = sum(w.end - w.score_from for batch in batches for w in batch)
    started = shown_at = time.perf_counter()
    done, next_share = 0, 0.1
    for batch in batches:
        yield batch
        done += sum(w.end - w.score_from for w in batch)
        now = time.perf_counter()
        if done / total >= next_share or now - shown_at >= every_s or done == total:
            print(f"{description}: {done:,} / {total:,} tokens ({done / total:.0%}), "
                  f"{done / max(now - started, 1e-9):,.0f} tokens/s", file=sys.stderr, flush=True)
            shown_at, next_share = now, math.floor(done / total * 10 + 1) / 10
