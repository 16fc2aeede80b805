"""Comparing two runs: a paired bootstrap over test blocks (Koehn 2004; Efron & Tibshirani 1993).

Two runs scored on the same split with the same tokenization have, for each block b of
``block_len`` consecutive tokens, NLL sums A_b and B_b over the same t_b tokens
(``EvalResult.block_nll_nats``). The statistic is the per-token NLL difference

    Δ = Σ_b A_b / Σ_b t_b  -  Σ_b B_b / Σ_b t_b        (nats per token; Δ < 0: A is better)

Blocks are resampled with replacement R times, the *same* blocks for both runs (the pairing: how
hard the text is cancels out, only the models' difference varies), giving Δ*_1..Δ*_R. Reported:

- the differences in perplexity, exp(mean_A) - exp(mean_B), and in bits per byte,
  Δ · tokens / (ln 2 · bytes), each with the 2.5 / 97.5 percentiles of its R resampled values
  (a 95% percentile interval);
- a two-sided p-value for "no difference", from the resampled differences shifted to the null
  (Berg-Kirkpatrick et al. 2012): p = (1 + #{r : |Δ*_r - Δ| >= |Δ|}) / (R + 1);
- throughput ratios A / B (scoring, fitting, and every figure both records have, such as
  ``lmbench bench``'s from a ``throughput.json`` sidecar);
- generation: A - B for every generation metric both runs have (the headline decoding of the
  generation benchmark, from a ``generation.json`` sidecar: MAUVE, judge PPL, distinct-n,
  seq-rep-4, ..., decode tokens/s), each value with its run's own 95% interval over its
  prompts. The difference gets no interval (the per-prompt values are not kept); a note says
  when the two were measured with different decodings, prompts or judges;
- tasks: for every task score both runs have (``tasks.json`` sidecars of ``lmbench
  eval-tasks``) that asked the same questions, the accuracy difference A - B with a paired
  bootstrap interval over the questions and McNemar's exact p-value
  (``lmbench.evaluation.task_significance``);
- notes on where each run's settings came from (a sweep's selected trial: the best of how many
  trials on valid, and its values; or settings taken from another sweep's selection), and, when
  both trained for a wall-clock budget on machines that differ, that their steps differ.

Resampling whole blocks (a block bootstrap, Künsch 1989) keeps the dependence between
neighbouring tokens, as the evaluator's own intervals do.

Runs with different tokenizers cannot be paired: a block is ``block_len`` tokens of each model's
own tokenization and carries no byte offsets, so block b of A and block b of B cover different
text. ``compare`` refuses them unless ``unpaired=True``; then each run's blocks are resampled
independently and only bits per byte (the unit they share) is compared. That interval ignores
the correlation through the shared text, so it is conservative (wider than a paired one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.limits import MAX_COMPARE_BOOTSTRAP, check_at_most
from lmbench.core.results import (
    EvalResult,
    GenerationResult,
    RunResult,
    describe_cpu,
    train_max_seconds,
)
from lmbench.evaluation.task_significance import TaskDifference, task_differences
from lmbench.storage.references import resolve_run

LN2 = math.log(2.0)
_CHUNK = 1000  # resamples drawn at once (bounds memory on long splits)


@dataclass(frozen=True)
class GenerationDifference:
    """One generation metric of both runs: values, A - B, and each run's own 95% interval over
    its prompts (None where its record has none)."""

    metric: str
    a: float
    b: float
    delta: float
    a_ci95: tuple[float, float] | None
    b_ci95: tuple[float, float] | None


@dataclass(frozen=True)
class Comparison:
    """The result of ``compare(a, b)``: differences are A - B (negative: A is better)."""

    run_a: str
    run_b: str
    corpus: str
    split: str
    paired: bool  # False: independent resampling, bits per byte only (module docstring)
    exact_likelihood: bool  # False: both are pseudo-likelihoods (pseudo-perplexity)
    n_blocks: int
    block_len: int
    n_bootstrap: int
    perplexity_a: float
    perplexity_b: float
    delta_perplexity: float | None  # None when unpaired (token units differ)
    delta_perplexity_ci95: tuple[float, float] | None
    bits_per_byte_a: float
    bits_per_byte_b: float
    delta_bits_per_byte: float
    delta_bits_per_byte_ci95: tuple[float, float]
    delta_nats_per_token: float | None
    delta_nats_per_token_ci95: tuple[float, float] | None
    p_value: float  # two-sided, for "no difference"
    throughput_ratios: dict[str, float]  # A / B
    generation_deltas: dict[str, float]  # A - B
    notes: tuple[str, ...] = ()
    # the decoding both runs' generation metrics come from (None: not one, or not recorded)
    generation_strategy: str | None = None
    generation: tuple[GenerationDifference, ...] = ()  # generation_deltas with the values
    tasks: tuple[TaskDifference, ...] = ()  # task accuracies, paired per question

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        """A short human-readable report."""
        kind = "pseudo-perplexity" if not self.exact_likelihood else "perplexity"
        method = (f"paired bootstrap over {self.n_blocks} blocks of {self.block_len} tokens"
                  if self.paired else "unpaired bootstrap (different tokenizers: bits per byte "
                  "only, conservative interval)")
        lines = [f"{self.corpus} {self.split}: A = {self.run_a}, B = {self.run_b}",
                 f"{method}, {self.n_bootstrap:,} resamples", "",
                 f"{'':18s}{'A':>12s}{'B':>12s}{'A - B':>12s}   95% interval"]
        if self.delta_perplexity is not None:
            low, high = self.delta_perplexity_ci95
            lines.append(f"{kind:18s}{self.perplexity_a:12.3f}{self.perplexity_b:12.3f}"
                         f"{self.delta_perplexity:+12.3f}   [{low:+.3f}, {high:+.3f}]")
        low, high = self.delta_bits_per_byte_ci95
        lines.append(f"{'bits per byte':18s}{self.bits_per_byte_a:12.5f}"
                     f"{self.bits_per_byte_b:12.5f}{self.delta_bits_per_byte:+12.5f}   "
                     f"[{low:+.5f}, {high:+.5f}]")
        better = "A" if self.delta_bits_per_byte < 0 else "B"
        lines += ["", f"p-value (two-sided, no difference): {self.p_value:.4g}"
                  + (f"; {better} is better at the 5% level" if self.p_value < 0.05 else "")]
        if self.throughput_ratios:
            lines.append("throughput A / B: " + ", ".join(
                f"{k} {v:.3g}x" for k, v in self.throughput_ratios.items()))
        if self.generation:
            strategy = f", {self.generation_strategy}" if self.generation_strategy else ""
            lines += ["", f"generation{strategy} (value [its run's own 95% interval over its "
                      "prompts]; the difference has none)",
                      f"{'':20s}  {'A':>30s}  {'B':>30s}  {'A - B':>11s}"]
            lines += [f"{d.metric:20s}  {_with_interval(d.a, d.a_ci95):>30s}  "
                      f"{_with_interval(d.b, d.b_ci95):>30s}  {d.delta:+11.4g}"
                      for d in self.generation]
        if self.tasks:
            lines += ["", "tasks (accuracy; A - B with a paired bootstrap 95% interval over the "
                      "questions; McNemar's exact p-value)",
                      f"{'':36s}{'A':>8s}{'B':>8s}{'A - B':>9s}   95% interval      p"]
            lines += [f"{d.key:36s}{d.a:8.3f}{d.b:8.3f}{d.delta:+9.3f}   "
                      f"[{d.delta_ci95[0]:+.3f}, {d.delta_ci95[1]:+.3f}]  {d.p_value:.3g}"
                      for d in self.tasks]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _with_interval(value: float, interval: tuple[float, float] | None) -> str:
    text = f"{value:.4g}"
    return text + (f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "")


def load_run(ref: RunResult | str | Path, results_dir: str | Path | None = None) -> RunResult:
    """A record from a ``RunResult`` or any run reference of ``lmbench.storage.references``
    (a run folder, a ``result.json``, a model saved in a run folder, a run id or label in
    ``results_dir``); the sidecars beside a record file are merged (``lmbench.storage.store``)."""
    return _load(ref, results_dir)[0]


def _load(ref: RunResult | str | Path, results_dir: str | Path | None
          ) -> tuple[RunResult, list[str]]:
    """``load_run``'s record and one line per sidecar of it that was skipped."""
    if isinstance(ref, RunResult):
        return ref, []
    run = resolve_run(ref, results_dir)
    return run.record, list(run.skipped)


def compare(a: RunResult | str | Path, b: RunResult | str | Path, split: str = "test", *,
            n_bootstrap: int = 10_000, seed: int = 0, unpaired: bool = False,
            results_dir: str | Path | None = None) -> Comparison:
    """Compare run A with run B on ``split``; see the module docstring for the test.

    Example::

        c = lmbench.compare("runs/quick/brown-kn5-...", "runs/quick/brown-unigram-...")
        c.delta_perplexity, c.delta_perplexity_ci95, c.p_value
        print(c.to_text())
    """
    if n_bootstrap < 1:
        raise LmbenchError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    check_at_most(n_bootstrap, MAX_COMPARE_BOOTSTRAP, "n_bootstrap")
    if seed < 0:
        raise LmbenchError(f"seed must be >= 0, got {seed}")
    (run_a, skipped_a), (run_b, skipped_b) = _load(a, results_dir), _load(b, results_dir)
    ma, mb = _split_metrics(run_a, split), _split_metrics(run_b, split)
    if run_a.corpus != run_b.corpus or ma.n_bytes != mb.n_bytes:
        raise LmbenchError(f"runs scored different texts: {run_a.run_id} on {run_a.corpus} "
                           f"{split} ({ma.n_bytes:,} bytes), {run_b.run_id} on {run_b.corpus} "
                           f"{split} ({mb.n_bytes:,} bytes)")
    if ma.exact_likelihood != mb.exact_likelihood:
        raise LmbenchError("one run has an exact likelihood and the other a pseudo-likelihood "
                           "(masked LM); their perplexities are not comparable")
    for run, m in ((run_a, ma), (run_b, mb)):
        if not math.isfinite(m.nll_nats):
            raise LmbenchError(f"run {run.run_id} gave some {split} token probability 0 (NLL "
                               "is infinite); differences with it are undefined")
    same, why = _same_tokenization(run_a, run_b, ma, mb)
    notes = [] if why is None or not same else [why]
    if not same and not unpaired:
        raise LmbenchError(
            f"cannot pair the test blocks: {why}. Blocks are {ma.block_len} tokens of each "
            "model's own tokenization with no byte offsets, so they cover different text. "
            "Compare runs with the same tokenizer and vocabulary, or pass --unpaired "
            "(unpaired=True) for a conservative bits-per-byte comparison")
    rng = np.random.default_rng(seed)
    if same and not unpaired:
        stats = _paired(ma, mb, n_bootstrap, rng)
    else:
        stats = _unpaired(ma, mb, n_bootstrap, rng)
        notes.append("unpaired: blocks resampled independently; the interval is conservative")
    strategy, generation, generation_notes = _generation(run_a, run_b)
    tasks, task_notes = task_differences(run_a, run_b, seed=seed)
    notes += _provenance_notes(run_a, run_b) + generation_notes + task_notes
    notes += skipped_a + skipped_b
    return Comparison(
        run_a=run_a.run_id, run_b=run_b.run_id, corpus=run_a.corpus, split=split,
        paired=same and not unpaired, exact_likelihood=ma.exact_likelihood,
        n_blocks=len(ma.block_nll_nats), block_len=ma.block_len, n_bootstrap=n_bootstrap,
        perplexity_a=ma.perplexity, perplexity_b=mb.perplexity,
        bits_per_byte_a=ma.bits_per_byte, bits_per_byte_b=mb.bits_per_byte,
        throughput_ratios=_throughput_ratios(run_a, run_b, ma, mb),
        generation_deltas={d.metric: d.delta for d in generation}, notes=tuple(notes),
        generation_strategy=strategy, generation=generation, tasks=tasks, **stats)


def _provenance_notes(run_a: RunResult, run_b: RunResult) -> list[str]:
    """Where each run's settings came from (a sweep's selection says of how many trials), and,
    when both trained for a wall-clock budget on machines that differ, that they bought
    different steps."""
    notes = []
    for name, run in (("A", run_a), ("B", run_b)):
        sweep, shown = run.sweep, ""
        if sweep is not None:
            shown = ", ".join(f"{key} = {value!r}" for key, value in sweep.params.items())
            if sweep.selected:
                notes.append(f"{name} is the selected trial of the sweep {sweep.label!r}: the "
                             f"{sweep.choice_text()} on valid (trial {sweep.trial}; {shown})")
            else:
                notes.append(f"{name} is trial {sweep.trial} of {sweep.n_trials} of the sweep "
                             f"{sweep.label!r} ({shown}), not its selected trial")
        elif run.settings_from is not None:
            taken = ", ".join(f"{key} = {value!r}"
                              for key, value in run.settings_from.params.items())
            notes.append(f"{name} ran once with the settings of the selected trial of the "
                         f"sweep {run.settings_from.sweep!r} ({taken})")
    machines = (describe_cpu(run_a.env), describe_cpu(run_b.env))
    timed = all(train_max_seconds(run.config) is not None for run in (run_a, run_b))
    if timed and len(set(machines)) > 1:
        notes.append(f"both trained for a wall-clock budget, on different machines (A: "
                     f"{machines[0]}; B: {machines[1]}), so the steps each bought differ")
    return notes


def _split_metrics(run: RunResult, split: str) -> EvalResult:
    if split not in run.metrics:
        raise LmbenchError(f"run {run.run_id} has no {split!r} split "
                           f"(it has: {', '.join(run.metrics)})")
    metrics = run.metrics[split]
    if len(metrics.block_nll_nats) != math.ceil(metrics.n_tokens / metrics.block_len):
        raise LmbenchError(f"run {run.run_id}: {len(metrics.block_nll_nats)} blocks do not "
                           f"cover {metrics.n_tokens} tokens of {metrics.block_len}")
    return metrics


def _same_tokenization(run_a: RunResult, run_b: RunResult, ma: EvalResult, mb: EvalResult
                       ) -> tuple[bool, str | None]:
    """Whether blocks align, and why not (or a note on how it was decided)."""
    if ma.n_tokens != mb.n_tokens or ma.block_len != mb.block_len:
        return False, (f"A has {ma.n_tokens:,} tokens in blocks of {ma.block_len}, B "
                       f"{mb.n_tokens:,} in blocks of {mb.block_len}")
    if run_a.tokenizer and run_b.tokenizer:
        if run_a.tokenizer.get("sha256") != run_b.tokenizer.get("sha256"):
            return False, (f"A's tokenizer is {_describe(run_a)}, B's is {_describe(run_b)}")
        return True, None
    keys = ("tokenizer", "tokenizer_options")
    if any(run_a.config.get(k) != run_b.config.get(k) for k in keys):
        return False, f"A's tokenizer is {_describe(run_a)}, B's is {_describe(run_b)}"
    return True, ("a record has no tokenizer fingerprint; matched on tokenizer name, options "
                  "and token count")


def _describe(run: RunResult) -> str:
    if run.tokenizer:
        return (f"{run.tokenizer.get('name')} (vocab {run.tokenizer.get('vocab_size')}, "
                f"{str(run.tokenizer.get('sha256'))[:10]})")
    return f"{run.config.get('tokenizer')} {run.config.get('tokenizer_options') or ''}".strip()


def _block_tokens(m: EvalResult) -> np.ndarray:
    tokens = np.full(len(m.block_nll_nats), float(m.block_len))
    tokens[-1] = m.n_tokens - m.block_len * (len(tokens) - 1)
    return tokens


def _resampled_means(blocks: np.ndarray, tokens: np.ndarray, picks: np.ndarray) -> np.ndarray:
    return blocks[picks].sum(axis=1) / tokens[picks].sum(axis=1)  # (R,) nats per token


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _p_value(resampled: np.ndarray, observed: float) -> float:
    extreme = np.abs(resampled - observed) >= abs(observed) - 1e-12 * max(1.0, abs(observed))
    return float((1 + extreme.sum()) / (len(resampled) + 1))


def _draw(rng: np.random.Generator, n_blocks: int, n_bootstrap: int):
    for start in range(0, n_bootstrap, _CHUNK):
        yield rng.integers(0, n_blocks, size=(min(_CHUNK, n_bootstrap - start), n_blocks))


def _paired(ma: EvalResult, mb: EvalResult, n_bootstrap: int, rng) -> dict:
    a, b = np.asarray(ma.block_nll_nats), np.asarray(mb.block_nll_nats)
    tokens = _block_tokens(ma)
    mean_a, mean_b = [], []
    for picks in _draw(rng, len(a), n_bootstrap):  # the same picks for both runs: paired
        mean_a.append(_resampled_means(a, tokens, picks))
        mean_b.append(_resampled_means(b, tokens, picks))
    mean_a, mean_b = np.concatenate(mean_a), np.concatenate(mean_b)
    delta = mean_a - mean_b
    observed = (ma.nll_nats - mb.nll_nats) / ma.n_tokens
    tokens_per_byte = ma.n_tokens / ma.n_bytes
    return {
        "delta_perplexity": ma.perplexity - mb.perplexity,
        "delta_perplexity_ci95": _interval(np.exp(mean_a) - np.exp(mean_b)),
        "delta_bits_per_byte": observed * tokens_per_byte / LN2,
        "delta_bits_per_byte_ci95": _interval(delta * tokens_per_byte / LN2),
        "delta_nats_per_token": observed,
        "delta_nats_per_token_ci95": _interval(delta),
        "p_value": _p_value(delta, observed),
    }


def _unpaired(ma: EvalResult, mb: EvalResult, n_bootstrap: int, rng) -> dict:
    resampled = []
    for m in (ma, mb):
        blocks, tokens = np.asarray(m.block_nll_nats), _block_tokens(m)
        means = np.concatenate([_resampled_means(blocks, tokens, picks)
                                for picks in _draw(rng, len(blocks), n_bootstrap)])
        resampled.append(means * m.n_tokens / (LN2 * m.n_bytes))  # bits per byte
    delta = resampled[0] - resampled[1]
    observed = ma.bits_per_byte - mb.bits_per_byte
    return {
        "delta_perplexity": None, "delta_perplexity_ci95": None,
        "delta_bits_per_byte": observed, "delta_bits_per_byte_ci95": _interval(delta),
        "delta_nats_per_token": None, "delta_nats_per_token_ci95": None,
        "p_value": _p_value(delta, observed),
    }


# lmbench bench's figures (throughput.json) that measure what a record's own scoring does
_SAME_AS = {"score_tokens_per_s": "scoring_tokens_per_s",
            "score_bytes_per_s": "scoring_bytes_per_s"}


def _throughput_ratios(run_a: RunResult, run_b: RunResult, ma: EvalResult, mb: EvalResult
                       ) -> dict[str, float]:
    ratios = {}
    if ma.tokens_per_s > 0 and mb.tokens_per_s > 0:
        ratios["scoring_tokens_per_s"] = ma.tokens_per_s / mb.tokens_per_s
        # bytes/s compares across tokenizers (a token is not the same unit for both)
        ratios["scoring_bytes_per_s"] = (ma.tokens_per_s * ma.n_bytes / ma.n_tokens) / (
            mb.tokens_per_s * mb.n_bytes / mb.n_tokens)
    if run_a.fit_s > 0 and run_b.fit_s > 0:
        ratios["fit_s"] = run_a.fit_s / run_b.fit_s
    extra_a = run_a.throughput.figures() if run_a.throughput else {}
    extra_b = run_b.throughput.figures() if run_b.throughput else {}
    for key in sorted(set(extra_a) & set(extra_b)):
        if _SAME_AS.get(key) in ratios:  # one key per quantity: the records' scoring speed wins
            continue
        if extra_b[key] != 0:
            ratios[key] = extra_a[key] / extra_b[key]
    return {k: v for k, v in ratios.items() if math.isfinite(v)}


# A generation sidecar's settings that decide what its metrics measure (its "config")
_GENERATION_SETTINGS = ("split", "n_prompts", "prompt_len", "continuation_len", "seed",
                        "metric_unit", "batch_size")


def _generation(run_a: RunResult, run_b: RunResult
                ) -> tuple[str | None, tuple[GenerationDifference, ...], list[str]]:
    """The decoding both runs' generation metrics come from (None: not one), the differences of
    the metrics both have, and notes on what the two were measured with when that differs."""
    ga, gb = run_a.generation, run_b.generation
    if ga is None or gb is None:
        return None, (), []
    ma, mb = ga.metrics, gb.metrics
    keys = [k for k in sorted(set(ma) & set(mb)) if ma[k] is not None and mb[k] is not None]
    if not keys:
        return None, (), []
    differences = tuple(GenerationDifference(
        k, float(ma[k]), float(mb[k]), float(ma[k] - mb[k]), _generation_interval(ga, k),
        _generation_interval(gb, k)) for k in keys)
    notes = []
    sa, sb = ga.strategy, gb.strategy
    if sa != sb:
        notes.append("the generation metrics come from different decodings (A: "
                     f"{sa or 'as recorded'}, B: {sb or 'as recorded'})")
    if ga.config is not None and gb.config is not None:
        ca, cb = asdict(ga.config), asdict(gb.config)
        differ = [f"{k} {ca[k]!r} vs {cb[k]!r}" for k in _GENERATION_SETTINGS if ca[k] != cb[k]]
        if differ:
            notes.append("the generation benchmark's settings differ (A vs B: "
                         + ", ".join(differ) + ")")
    if "judge_perplexity" in keys and ga.judge is not None and gb.judge is not None:
        judge_a, judge_b = _judge(ga, run_a), _judge(gb, run_b)
        if judge_a != judge_b:
            notes.append(f"judge PPL comes from different judges (A: {judge_a}, B: {judge_b}), "
                         "so its difference is not the models' alone")
    return (sa if sa == sb else None), differences, notes


def _generation_interval(generation: GenerationResult, key: str
                         ) -> tuple[float, float] | None:
    """The 95% interval of ``key`` in the row of the run's headline decoding, if recorded."""
    for row in generation.rows:
        entry = row.metrics.get(key) if row.label == generation.strategy else None
        if entry is not None and None not in entry.ci95:
            return float(entry.ci95[0]), float(entry.ci95[1])
    return None


def _judge(generation: GenerationResult, run: RunResult) -> str:
    """Who judged a run's generations: a model file, or the run's own model."""
    if generation.judge_file:
        return generation.judge_file
    return f"its own model ({run.run_id})"
