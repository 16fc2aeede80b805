"""The task evaluator: a model answers a task's questions through the ``LanguageModel``
interface alone, and each answer is graded.

Every family works the same way: the text of a prompt meets the model only as
``tokenizer.encode(preamble) + tokenizer.encode(question)`` (the two encoded apart in both
paths below, so they read the same ids), and the model is asked through ``logits`` /
``token_logprobs`` only.

The preamble (instruction and k exemplars, ``lmbench.tasks.prompting``) is the same for every
question. With ``use_prefix_cache`` (the default) it is read once
(``prefix_cache.cache_prefix``), each question is read after it, and the answer is drawn from
there (``sample_batch_after``: ``batch_size`` questions of one length at a time); multiple
choice scores each choice after the cached question (``suffix_logprobs``). Without it every
prompt is read whole, as ``sampling.sample_batch`` does. ``prefill_tokens`` counts the ids read
to reach every question's first new token (and, for multiple choice, to score every choice);
``prefill_tokens_uncached`` what reading every prompt whole reads. Both paths give the same
answers (up to float rounding of the split reads for neural models) while a prompt fits the
model's window.

95% intervals: Wilson's score interval for each accuracy (Wilson 1927; lm-eval reports a
standard error instead); a bootstrap over documents (1,000 resamples, seed 0) for perplexity.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.core.results import TaskScore
from lmbench.evaluation.scoring import score_stream
from lmbench.inference.prefix_cache import (
    cache_prefix,
    extend_cache,
    sample_batch_after,
    suffix_logprobs,
)
from lmbench.inference.sampling import SamplingConfig, prompt_reads, sample_batch
from lmbench.tasks.prompting import PromptConfig, majority_vote, preamble, question, uses_chain
from lmbench.tasks.synthetic import normalize_answer
from lmbench.tasks.task import Task, compile_regex, extract

Z95 = 1.959963984540054
N_BOOTSTRAP = 1000


@dataclass(frozen=True)
class TaskEvaluation:
    """A ``TaskScore`` and its per-example records (the JSONL lines: prompt, output, extracted
    answers, correct)."""

    score: TaskScore
    examples: tuple[dict[str, Any], ...]


def wilson_interval(n_correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval of a proportion ``n_correct / n`` (``(0, 1)`` when n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = n_correct / n, Z95 * Z95
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if n_correct == 0 else max(0.0, center - half)
    return low, 1.0 if n_correct == n else min(1.0, center + half)


def _fingerprint(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def _encode(model: LanguageModel, text: str) -> list[int]:
    return list(model.tokenizer.encode(text)) if text else []


def evaluate_task(model: LanguageModel, task: Task, config: PromptConfig | None = None, *,
                  split: str = "test", limit: int | None = None,
                  use_prefix_cache: bool = True, batch_size: int = 1) -> TaskEvaluation:
    """Ask ``model`` every question of ``task``'s ``split`` (the first ``limit``) and grade it.

    Args:
        model: any fitted ``LanguageModel``.
        task: a ``Task`` (``lmbench.tasks.catalog.load_task`` builds the shipped ones).
        config: zero-/few-shot, chain of thought, self-consistency (``PromptConfig``; None:
            zero-shot, direct).
        split: the split whose documents are asked.
        limit: at most this many documents (None: all).
        use_prefix_cache: read the shared preamble once (module docstring).
        batch_size: generation tasks: answer up to this many questions of one length together
            (lm-eval's ``--batch_size``); each question's self-consistency samples are rows of
            the same batch. The answers are those of ``batch_size=1`` up to float rounding of
            the batched reads (exact for n-grams).

    Returns:
        The score (metrics, 95% intervals, per-example correctness, prefill counts) and the
        per-example records.
    """
    config = PromptConfig() if config is None else config
    if limit is not None and limit < 1:
        raise LmbenchError(f"limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise LmbenchError(f"batch_size must be >= 1, got {batch_size}")
    docs = task.split(split)[: limit if limit is not None else None]
    if task.kind == "rolling":
        config = PromptConfig(seed=config.seed)  # scored as text: no prompt, no exemplars
    start = time.perf_counter()
    if task.kind == "generate":
        metrics, examples, counts = _generate(model, task, config, docs, use_prefix_cache,
                                              batch_size)
    elif task.kind == "multiple_choice":
        metrics, examples, counts = _multiple_choice(model, task, config, docs, use_prefix_cache)
    else:
        metrics, examples, counts = _rolling(model, task, docs)
    wall_s = time.perf_counter() - start
    values = {name: value for name, (value, _) in metrics.items()}
    intervals = {name: ci for name, (_, ci) in metrics.items() if ci is not None}
    text = [preamble(task, config) if task.kind != "rolling" else ""]
    text += [e["prompt"] + "\x00" + str(e["target"]) for e in examples]
    score = TaskScore(
        task=task.name, kind=task.kind, metric=task.metric, mode=config.mode,
        num_fewshot=config.num_fewshot, split=split, n_examples=len(docs), metrics=values,
        ci95=intervals, fingerprint=_fingerprint(text), prompt=config.to_dict(),
        correct=tuple(bool(e["correct"]) for e in examples) if task.kind != "rolling" else (),
        prefill_tokens=counts[0], prefill_tokens_uncached=counts[1], wall_s=wall_s)
    return TaskEvaluation(score, tuple(examples))


def _accuracy(flags: list[bool]) -> tuple[float, tuple[float, float]]:
    return (sum(flags) / len(flags) if flags else 0.0), wilson_interval(sum(flags), len(flags))


def _length_batches(q_ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Document indices in batches of at most ``batch_size``, each of one question length (rows
    of a batch advance in lockstep), in order of each length's first question."""
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(q_ids):
        by_length.setdefault(len(ids), []).append(index)
    return [indices[i: i + batch_size] for indices in by_length.values()
            for i in range(0, len(indices), batch_size)]


def _generate(model: LanguageModel, task: Task, config: PromptConfig, docs, use_cache: bool,
              batch_size: int):
    chain = uses_chain(task, config)
    stops = task.cot_stop if chain else task.stop
    max_new = task.cot_max_new_tokens if chain else task.max_new_tokens
    strict, flexible = compile_regex(task.strict_regex, "strict_regex"), compile_regex(
        task.flexible_regex, "flexible_regex")
    n_samples = config.self_consistency
    sampler = (SamplingConfig(temperature=0) if n_samples == 1 else
               SamplingConfig(temperature=config.temperature, top_k=config.top_k))
    pre_text = preamble(task, config)
    pre_ids = _encode(model, pre_text)
    cache = cache_prefix(model, pre_ids) if use_cache else None
    q_texts = [question(task, doc, config) for doc in docs]
    q_ids = [_encode(model, text) for text in q_texts]
    seeds = [[config.seed + 1_000 * index + s for s in range(n_samples)]  # a function of the
             for index in range(len(docs))]                             # example and sample only
    prefill = 1 + len(pre_ids) if use_cache else 0
    uncached = sum(1 + len(pre_ids) + len(ids) for ids in q_ids)
    outputs_of: list[list[str]] = [[] for _ in docs]
    for batch in _length_batches(q_ids, batch_size):
        if use_cache:
            drawn = sample_batch_after(model, cache, [q_ids[i] for i in batch], max_new,
                                       seeds=[seeds[i] for i in batch], sampler=sampler,
                                       stop_strings=stops)
            prefill += sum(len(q_ids[i]) for i in batch)
        else:
            flat = sample_batch(model, [pre_ids + q_ids[i] for i in batch], max_new,
                                sampler=sampler, seeds=[s for i in batch for s in seeds[i]],
                                stop_strings=stops, rows_per_prompt=n_samples)
            drawn = [flat[n_samples * j: n_samples * (j + 1)] for j in range(len(batch))]
            prefill += prompt_reads(model, n_samples) * sum(1 + len(pre_ids) + len(q_ids[i])
                                                            for i in batch)
        for i, samples in zip(batch, drawn):
            outputs_of[i] = [sample.text for sample in samples]
    examples = []
    for index, doc in enumerate(docs):
        q_text, outputs = q_texts[index], outputs_of[index]
        strict_answers = [normalize_answer(extract(strict, o, last=False)) for o in outputs]
        flexible_answers = [normalize_answer(extract(flexible, o, last=True)) for o in outputs]
        gold = normalize_answer(str(doc[task.target]))
        record = {"index": index, "prompt": pre_text + q_text, "target": str(doc[task.target]),
                  "output": outputs[0], "extracted": majority_vote(strict_answers),
                  "extracted_flexible": majority_vote(flexible_answers)}
        record["correct"] = record["extracted"] == gold
        record["correct_flexible"] = record["extracted_flexible"] == gold
        if n_samples > 1:
            record["samples"] = outputs
        examples.append(record)
    metrics = {"exact_match": _accuracy([e["correct"] for e in examples]),
               "exact_match_flexible": _accuracy([e["correct_flexible"] for e in examples])}
    return metrics, examples, (prefill, uncached)


def _choice_logprob_uncached(model: LanguageModel, context: list[int], choice: list[int]
                             ) -> float:
    ids = [model.tokenizer.boundary_id, *context, *choice]
    inputs = torch.tensor([ids[:-1]], dtype=torch.long)  # (1, T)
    targets = torch.tensor([[-1] * len(context) + choice], dtype=torch.long)  # (1, T)
    with torch.inference_mode():
        logprobs, _ = model.token_logprobs(inputs, targets)  # (1, T)
    return float(logprobs.double().sum())


def _multiple_choice(model: LanguageModel, task: Task, config: PromptConfig, docs,
                     use_cache: bool):
    uses_chain(task, config)  # refuses chain of thought here
    pre_text = preamble(task, config)
    pre_ids = _encode(model, pre_text)
    cache = cache_prefix(model, pre_ids) if use_cache else None
    prefill, uncached = (1 + len(pre_ids) if use_cache else 0), 0
    examples = []
    for index, doc in enumerate(docs):
        q_text = question(task, doc, config)
        q_ids = _encode(model, q_text)
        choices = [task.target_delimiter + c for c in doc[task.choices_field]]
        choice_ids = [_encode(model, c) for c in choices]
        if any(not ids for ids in choice_ids):
            raise LmbenchError(f"task {task.name!r}: document {index} has a choice that encodes "
                               "to no tokens")
        uncached += sum(1 + len(pre_ids) + len(q_ids) + len(c) - 1 for c in choice_ids)
        if use_cache:
            asked = extend_cache(model, cache, q_ids)
            prefill += len(q_ids) + sum(len(c) - 1 for c in choice_ids)
            scores = [float(suffix_logprobs(model, asked, c).sum()) for c in choice_ids]
        else:
            prefill += sum(1 + len(pre_ids) + len(q_ids) + len(c) - 1 for c in choice_ids)
            scores = [_choice_logprob_uncached(model, pre_ids + q_ids, c) for c in choice_ids]
        per_char = [s / max(1, len(c)) for s, c in zip(scores, choices)]
        gold = int(doc[task.target])
        pick, pick_norm = int(np.argmax(scores)), int(np.argmax(per_char))
        examples.append({"index": index, "prompt": pre_text + q_text, "target": gold,
                         "output": doc[task.choices_field][pick], "extracted": pick,
                         "logprobs": scores, "correct": pick == gold,
                         "correct_norm": pick_norm == gold})
    metrics = {"acc": _accuracy([e["correct"] for e in examples]),
               "acc_norm": _accuracy([e["correct_norm"] for e in examples])}
    return metrics, examples, (prefill, uncached)


def _rolling(model: LanguageModel, task: Task, docs):
    nll, n_tokens, n_bytes, examples = [], [], [], []
    for index, doc in enumerate(docs):
        text = str(doc[task.target])
        ids = np.asarray(_encode(model, text), dtype=np.int64)
        if len(ids) == 0:
            raise LmbenchError(f"task {task.name!r}: document {index} encodes to no tokens")
        token_nll = score_stream(model, ids)
        nll.append(float(token_nll.sum()))
        n_tokens.append(len(ids))
        n_bytes.append(len(text.encode("utf-8")))
        examples.append({"index": index, "prompt": "", "target": text, "output": "",
                         "nll_nats": nll[-1], "n_tokens": len(ids)})
    nll_a, tokens_a, bytes_a = np.array(nll), np.array(n_tokens), np.array(n_bytes)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(docs), size=(N_BOOTSTRAP, len(docs)))  # (R, n)
    resampled = np.exp(nll_a[picks].sum(1) / tokens_a[picks].sum(1))  # (R,)
    bpb = nll_a[picks].sum(1) / (math.log(2) * bytes_a[picks].sum(1))  # (R,)
    metrics = {
        "perplexity": (math.exp(nll_a.sum() / tokens_a.sum()),
                       tuple(float(v) for v in np.percentile(resampled, [2.5, 97.5]))),
        "bits_per_byte": (float(nll_a.sum() / (math.log(2) * bytes_a.sum())),
                          tuple(float(v) for v in np.percentile(bpb, [2.5, 97.5])))}
    total = int(tokens_a.sum())
    return metrics, examples, (total, total)
