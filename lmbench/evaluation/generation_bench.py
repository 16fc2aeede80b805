"""The generation benchmark: Holtzman et al. 2019's table ("The Curious Case of Neural Text
Degeneration", Table 1) for any model on any corpus.

Prompts. The model's tokenizer encodes the held-out split (``split``, default test) into one
stream, which is cut into consecutive slots of ``prompt_len + continuation_len`` tokens; the
seed picks ``n_prompts`` slots without replacement (all of them if there are fewer). A slot's
first ``prompt_len`` tokens are the prompt and the rest, the text that really followed, is the
human reference: its statistics form the "human" row. Prompts are token positions of the stream
(for the word track, word positions: a prompt may start mid-sentence), so models sharing a
tokenizer get identical prompts, and slots never overlap, so prompts are independent for the
intervals.

Decoding. Each ``Strategy`` continues every prompt by ``continuation_len`` tokens (no stop ids).
All prompts have ``prompt_len`` tokens, so they are decoded ``batch_size`` at a time: sampling
through ``lmbench.inference.sampling.sample_batch``, beam search and best-of-N through
``lmbench.inference.decoding.beam_search_batch`` and ``best_of_n_batch`` (a batch of B prompts
is B rows of one model call per token; B x width for beam search, B x N for best-of-N). Prompt
j uses seed ``seed + 1000 j`` under every strategy, whatever batch it falls in (best-of-N draws
seeds ``seed + 1000 j`` .. ``+ N - 1``), and every row draws with a generator of its own, so the
output does not depend on ``batch_size`` except through float rounding of a neural model's
batched logits (none for n-gram models). Decode speed (``decode tok/s``) is continuation tokens
generated per second of wall time for the strategy, at that batch size: a throughput, not the
latency of one stream (``lmbench bench`` measures batch-1 decoding). The pure-sampling row (one
batched model call per token, continuing the model's state) is the family's decode throughput.

Metrics, per row, on ``metric_unit`` = "words" (the decoded text split into words, punctuation
runs and line breaks; for word models exactly their tokens) or "tokens" (the model's ids):
distinct-1/2/3, Self-BLEU-4, seq-rep-4, rep/128, Zipf coefficient (``generation_metrics``);
judge perplexity (the judge's per-token perplexity of the continuation after its prompt, summed
then divided; the judge is ``config.judge``, by default the model itself, and must share its
tokenizer); MAUVE against the human continuations (``mauve_features``: TF-IDF + SVD fitted on
the training split, or the judge's ``embed``, falling back to TF-IDF without it); copying (the
share of generated ``copy_n``-grams found in the training split and the longest copied span,
through an ``NGramIndex``); corpus BLEU-4 against the human continuations. Intervals are 95%
over prompts (``generation_stats``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.core.limits import MAX_BEAM_WIDTH, MAX_BEST_OF, check_at_most
from lmbench.core.results import environment
from lmbench.core.tokenizers import same_vocabulary
from lmbench.data.corpora import Corpus, load_corpus
from lmbench.evaluation import generation_stats as stats
from lmbench.evaluation.generation_metrics import NGramIndex
from lmbench.evaluation.generation_results import (
    PURE_SAMPLING,
    GenerationReport,
    ModelGenerations,
    Row,
)
from lmbench.evaluation.generation_stats import Estimate, IntervalConfig, estimate
from lmbench.evaluation.mauve_features import TfidfSvd, compute_mauve, embed_features, has_embed
from lmbench.inference.decoding import (
    beam_search_batch,
    best_of_n_batch,
    continuation_logprobs,
    judge_perplexity,
    mean_logprob,
    sequence_logprob,
)
from lmbench.inference.sampling import SamplingConfig, build_sampler, sample_batch

RANKERS = ("sequence_logprob", "mean_logprob", "judge_perplexity")
_WORDS = re.compile(r"<unk>|<bos>|\w+(?:'\w+)?|[^\w\s]+|\n")


def text_words(text: str) -> list[str]:
    """Words, punctuation runs and line breaks of ``text`` (``<unk>`` kept whole)."""
    return _WORDS.findall(text)


@dataclass(frozen=True)
class Strategy:
    """One row of the table: sampling (``sampling``), beam search (``beam_width``; the
    sampling config's processors then only rank) or best-of-N (``best_of`` samples drawn with
    ``sampling``, the best by ``rank_by``)."""

    label: str
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    beam_width: int | None = None  # at most lmbench.core.limits.MAX_BEAM_WIDTH (256)
    length_penalty: float = 1.0  # beam search: exponent of the length normalisation
    best_of: int | None = None  # at most lmbench.core.limits.MAX_BEST_OF (1024)
    rank_by: str = "mean_logprob"  # best-of-N: sequence_logprob | mean_logprob | judge_perplexity

    def __post_init__(self) -> None:
        if self.beam_width is not None and self.best_of is not None:
            raise LmbenchError(f"strategy {self.label!r}: choose beam_width or best_of, not both")
        for name in ("beam_width", "best_of"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise LmbenchError(f"strategy {self.label!r}: {name} must be an integer >= 1")
        check_at_most(self.beam_width or 1, MAX_BEAM_WIDTH, f"strategy {self.label!r}: beam_width")
        check_at_most(self.best_of or 1, MAX_BEST_OF, f"strategy {self.label!r}: best_of")
        if self.rank_by not in RANKERS:
            raise LmbenchError(f"strategy {self.label!r}: rank_by must be one of {RANKERS}")

    def describe(self) -> str:
        changed = [f"{f.name}={getattr(self.sampling, f.name)}" for f in fields(SamplingConfig)
                   if getattr(self.sampling, f.name) != f.default]
        knobs = ", ".join(changed)
        if self.beam_width is not None:
            return (f"beam search, width {self.beam_width}, length penalty {self.length_penalty}"
                    + (f", processors {knobs}" if knobs else ""))
        sampled = f"sampling with {knobs}" if knobs else PURE_SAMPLING
        if self.sampling.temperature == 0:
            sampled = "greedy (argmax)" + (f" with {knobs}" if len(changed) > 1 else "")
        if self.best_of is not None:
            return f"best of {self.best_of} draws of {sampled}, ranked by {self.rank_by}"
        return sampled


DEFAULT_STRATEGIES = (
    Strategy("greedy", SamplingConfig(temperature=0)),
    Strategy("beam", beam_width=5),
    Strategy("pure sampling"),
    Strategy("temperature 0.7", SamplingConfig(temperature=0.7)),
    Strategy("top-k 40", SamplingConfig(top_k=40)),
    Strategy("top-p 0.95", SamplingConfig(top_p=0.95)),
    Strategy("best-of-N", best_of=4),
)


@dataclass(frozen=True)
class GenerationBenchConfig:
    n_prompts: int = 500  # prompts drawn from the split (fewer if it holds fewer slots)
    prompt_len: int = 32  # prompt tokens (model tokens)
    continuation_len: int = 128  # tokens generated, and tokens of human reference
    split: str = "test"
    seed: int = 0  # picks the prompts, seeds decoding and the intervals
    strategies: tuple[Strategy, ...] = DEFAULT_STRATEGIES
    judge: LanguageModel | None = field(default=None, repr=False, compare=False)  # None: self
    features: str = "tfidf"  # MAUVE features: tfidf | judge (the judge's embed hook)
    feature_dim: int = 128  # TF-IDF + SVD dimensions
    feature_docs: int = 5000  # training pieces the TF-IDF + SVD is fitted on, at most
    metric_unit: str = "words"  # words | tokens
    copy_n: int = 8  # n of the copied n-grams
    repetition_window: int = 128  # the l of rep/l
    n_bootstrap: int = 1000
    n_groups: int = 20  # jackknife groups (distinct-n, Zipf, MAUVE)
    n_samples_shown: int = 3  # prompts shown side by side in the Markdown
    # Prompts decoded together (rows of one model call; x width for beam search, x N for
    # best-of-N). Seeds stay seed + 1000 j per prompt, so only float rounding depends on it.
    batch_size: int = 50

    def __post_init__(self) -> None:
        for name in ("n_prompts", "continuation_len", "feature_dim", "feature_docs", "copy_n",
                     "repetition_window", "batch_size"):
            if getattr(self, name) < 1:
                raise LmbenchError(f"generation bench: {name} must be >= 1")
        if self.prompt_len < 0:
            raise LmbenchError("generation bench: prompt_len must be >= 0")
        if self.features not in ("tfidf", "judge"):
            raise LmbenchError(f"features must be 'tfidf' or 'judge', got {self.features!r}")
        if self.metric_unit not in ("words", "tokens"):
            raise LmbenchError(f"metric_unit must be 'words' or 'tokens', got {self.metric_unit!r}")
        labels = [s.label for s in self.strategies]
        if not labels or len(set(labels) | {"human"}) != len(labels) + 1:
            raise LmbenchError(f"strategy labels must be unique and not 'human', got {labels}")


def quick_config(**overrides) -> GenerationBenchConfig:
    """A few short prompts and cheap intervals: every row, in seconds, for smoke tests."""
    strategies = tuple(replace(s, beam_width=2) if s.beam_width else
                       replace(s, best_of=2) if s.best_of else s for s in DEFAULT_STRATEGIES)
    values = dict(n_prompts=12, prompt_len=8, continuation_len=24, strategies=strategies,
                  feature_dim=32, feature_docs=400, n_bootstrap=200, n_groups=4,
                  n_samples_shown=2)
    return GenerationBenchConfig(**{**values, **overrides})


# --------------------------------------------------------------------------- prompts, decoding


def cut_prompts(n_tokens: int, config: GenerationBenchConfig) -> np.ndarray:
    """Sorted start positions of the chosen slots (module docstring)."""
    span = config.prompt_len + config.continuation_len
    n_slots = n_tokens // span
    if n_slots < 2:
        raise LmbenchError(f"the {config.split} split has {n_tokens} tokens: fewer than 2 slots "
                           f"of {span} (prompt_len + continuation_len)")
    rng = np.random.default_rng(config.seed)
    slots = rng.choice(n_slots, size=min(config.n_prompts, n_slots), replace=False)
    return np.sort(slots) * span


def decode_batch(model: LanguageModel, strategy: Strategy, prompts: list[list[int]], n_new: int,
                 seeds: list[int], judge: LanguageModel) -> list[list[int]]:
    """The continuations of ``prompts`` (all of one length) by ``strategy``, decoded as one
    batch; prompt j is seeded by ``seeds[j]``."""
    if strategy.beam_width is not None:
        processors = build_sampler(strategy.sampling).processors
        found = beam_search_batch(model, prompts, n_new, strategy.beam_width,
                                  strategy.length_penalty, processors=processors)
    elif strategy.best_of is not None:
        scorer = {"sequence_logprob": sequence_logprob, "mean_logprob": mean_logprob,
                  "judge_perplexity": judge_perplexity(judge)}[strategy.rank_by]
        found = best_of_n_batch(model, prompts, strategy.best_of, scorer, max_new_tokens=n_new,
                                sampler=strategy.sampling, seeds=seeds)
    else:
        found = sample_batch(model, prompts, n_new, sampler=strategy.sampling, seeds=seeds)
    return [f.ids for f in found]


# ------------------------------------------------------------------------------- the bench


class _ModelBench:
    """Everything shared by one model's rows: prompts, judge, copy index, featurizer."""

    def __init__(self, model: LanguageModel, corpus: Corpus, config: GenerationBenchConfig,
                 log: Callable[[str], None]) -> None:
        self.model, self.config, self.log = model, config, log
        self.judge = config.judge or model
        if not same_vocabulary(self.judge.tokenizer, model.tokenizer):
            raise LmbenchError(f"the judge ({self.judge.name}) must share the tokenizer of the "
                               f"model it judges ({model.name}, {model.tokenizer.name})")
        tokenizer = model.tokenizer
        stream = tokenizer.encode_split(corpus.split(config.split))
        self.starts = cut_prompts(len(stream), config)
        P, C = config.prompt_len, config.continuation_len
        self.prompts = [stream[s : s + P].tolist() for s in self.starts]
        self.human = [stream[s + P : s + P + C].tolist() for s in self.starts]
        train = tokenizer.encode_split(corpus.train)
        self.index = NGramIndex(self.units(train), config.copy_n)
        self.features = config.features
        if config.features == "judge" and not has_embed(self.judge):
            self.features = f"tfidf (the {self.judge.name} judge has no embed hook)"
        if self.features != "judge":
            # continuation-sized pieces of the training split, evenly spaced
            pieces = np.array_split(train, max(1, len(train) // C))
            step = max(1, len(pieces) // config.feature_docs)
            docs = [tokenizer.decode(p) for p in pieces[::step][: config.feature_docs]]
            self.featurizer = TfidfSvd(config.feature_dim, config.seed).fit(docs)
        self.human_features = self.featurize(self.human)
        self.intervals = IntervalConfig(config.n_bootstrap, config.n_groups, config.seed)

    def units(self, ids) -> list:
        if self.config.metric_unit == "tokens":
            return list(map(int, ids))
        return text_words(self.model.tokenizer.decode(ids))

    def featurize(self, sequences: list[list[int]]) -> np.ndarray:
        if self.features == "judge":
            return embed_features(self.judge, sequences)
        return self.featurizer([self.model.tokenizer.decode(s) for s in sequences])

    def row(self, label: str, description: str, sequences: list[list[int]],
            wall_s: float | None) -> Row:
        c, n = self.config, len(sequences)
        human = label == "human"
        units = [self.units(s) for s in sequences]

        def est(statistic, method="bootstrap", bounds=(0.0, math.inf)) -> Estimate:
            return estimate(statistic, n, method, self.intervals, bounds)

        metrics: dict[str, Estimate] = {}
        nll = [-sum(continuation_logprobs(self.judge, prompt, s))
               for prompt, s in zip(self.prompts, sequences, strict=True)]
        metrics["judge_perplexity"] = est(stats.perplexity_statistic(
            np.array(nll), np.array([len(s) for s in sequences])))
        metrics["self_bleu_4"] = est(stats.mean_statistic(stats.self_bleu_scores(units, 4)))
        metrics["zipf_coefficient"] = est(stats.zipf_statistic(units), "jackknife")
        metrics[f"repetition_rate_{c.repetition_window}"] = est(stats.ratio_statistic(
            *stats.repetition_counts(units, c.repetition_window)))
        for order in (1, 2, 3):
            metrics[f"distinct_{order}"] = est(stats.distinct_statistic(units, order),
                                               "jackknife", (0.0, 1.0))
        metrics["seq_rep_4"] = est(stats.mean_statistic(stats.seq_rep_values(units, 4)))
        metrics["mauve"] = stats.NAN if human else est(
            self._mauve_statistic(self.featurize(sequences)), "jackknife", (0.0, 1.0))
        metrics[f"copy_rate_{c.copy_n}"] = est(stats.ratio_statistic(
            *stats.copy_counts(units, self.index)))
        metrics["longest_copy"] = est(stats.max_statistic(
            [self.index.longest_span(u) for u in units]))
        metrics["bleu_4"] = stats.NAN if human else est(stats.bleu_statistic(
            units, [self.units(h) for h in self.human], 4), bounds=(0.0, 1.0))
        return Row(label, description, metrics, sum(map(len, sequences)), wall_s)

    def _mauve_statistic(self, q: np.ndarray) -> stats.Statistic:
        p, n = self.human_features, len(q)
        buckets = max(2, round(n / 10))  # MAUVE's rule, fixed at the full n for every replicate

        def statistic(weights: np.ndarray) -> np.ndarray:
            keep = [np.repeat(np.arange(n), w.astype(np.int64)) for w in weights]
            return np.array([compute_mauve(p[k], q[k], num_buckets=buckets, seed=self.config.seed)
                             for k in keep])

        return statistic

    def run(self, label: str) -> ModelGenerations:
        model, c = self.model, self.config
        tokenizer = model.tokenizer
        texts = {"prompt": tuple(tokenizer.decode(p) for p in self.prompts),
                 "human": tuple(tokenizer.decode(h) for h in self.human)}
        rows = [self.row("human", "the text that followed the prompt in the corpus", self.human,
                         None)]
        for strategy in c.strategies:
            self.log(f"[{label}] {strategy.label}: {len(self.prompts)} prompts x "
                     f"{c.continuation_len} tokens, {c.batch_size} prompts per batch")
            started = time.perf_counter()
            sequences: list[list[int]] = []
            for first in range(0, len(self.prompts), c.batch_size):
                batch = self.prompts[first : first + c.batch_size]
                seeds = [c.seed + 1000 * j for j in range(first, first + len(batch))]
                sequences += decode_batch(model, strategy, batch, c.continuation_len, seeds,
                                          self.judge)
            wall_s = time.perf_counter() - started  # the whole row: every batch
            texts[strategy.label] = tuple(tokenizer.decode(s) for s in sequences)
            rows.append(self.row(strategy.label, strategy.describe(), sequences, wall_s))
        return ModelGenerations(label, model.name, tokenizer.name, self.judge.name,
                                self.features, tuple(map(int, self.starts)), tuple(rows), texts)


def run_generation_bench(models: Mapping[str, LanguageModel], corpus: Corpus | str,
                         config: GenerationBenchConfig = GenerationBenchConfig(), *,
                         data_dir=None, command: str | None = None,
                         log: Callable[[str], None] = lambda line: None) -> GenerationReport:
    """Decode every prompt with every strategy for each of ``models`` (label -> fitted model)
    and measure the rows (module docstring).

    Example::

        report = run_generation_bench({"kn3": model}, "brown", quick_config())
        print(report.to_markdown())
    """
    if isinstance(corpus, str):
        corpus = load_corpus(corpus, data_dir)
    if not models:
        raise LmbenchError("the generation bench needs at least one model")
    results = tuple(_ModelBench(model, corpus, config, log).run(label)
                    for label, model in models.items())
    return GenerationReport(corpus.name, config, results, environment(), command)
