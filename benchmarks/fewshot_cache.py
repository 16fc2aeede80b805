"""Few-shot evaluation with the k-shot preamble cached versus read again for every question.

    python benchmarks/fewshot_cache.py [--shots 8] [--questions 40] [--batch-sizes 1,20]
        [--out reports/fewshot_cache]

Trains a small char gpt (4 layers, 4 heads, 128 wide, block_size 512) for a fixed step budget
on 3-digit addition text (``Q: What is 48 plus 76?\\nA: 124``, the train split of the shipped
``addition`` task), then evaluates the task's first ``--questions`` test questions at k =
``--shots`` with ``lmbench.tasks.evaluator.evaluate_task`` twice at each batch size (questions
answered together): with the preamble read once through the prefix cache
(``use_prefix_cache=True``) and with every prompt read whole. It
reports prefill tokens and seconds per question for both (best of ``--repeats`` timed passes
after a warm-up), asserts the two give identical outputs, and prints the ratios against the
issue's targets (>= 3x fewer prefill tokens, >= 2x less time per question). Accuracy is
reported too (it does not depend on the cache). Writes ``<out>.md`` and ``<out>.json``;
``--quick`` is a tiny smoke run (one thread). Exit status 1 if the outputs differ (cached
against whole, or batched against one at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.models import build_model
from lmbench.tasks.catalog import load_task
from lmbench.tasks.evaluator import evaluate_task
from lmbench.tasks.prompting import PromptConfig

TOKEN_TARGET, TIME_TARGET = 3.0, 2.0


def train_gpt(task, quick: bool):
    docs = task.splits["train"]
    text = "".join(task.prompt(d) + task.target_text(d) + "\n\n" for d in docs)
    corpus = Corpus("addition", {s: _lines_split(s, text) for s in ("train", "valid", "test")})
    shape = (dict(n_layer=1, n_head=2, n_embd=32) if quick
             else dict(n_layer=4, n_head=4, n_embd=128))
    train = {"max_steps": 5 if quick else 600, "batch_size": 4,
             "seq_len": 64 if quick else 512, "warmup_steps": 2 if quick else 50,
             "learning_rate": 3e-3, "progress": False, "bf16": False, "seed": 0}
    model = build_model("gpt", block_size=512, tokenizer="char", train=train, **shape)
    return model.fit(corpus, valid=False)


def timed(model, task, config, questions: int, use_cache: bool, repeats: int, batch_size: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = evaluate_task(model, task, config, limit=questions, use_prefix_cache=use_cache,
                               batch_size=batch_size)
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(model, task, config, questions: int, repeats: int, batch_size: int) -> dict:
    """Both paths at one batch size: prefill tokens, seconds per question, identical outputs."""
    for use_cache in (True, False):  # warm-up: allocator, kernels, this batch shape
        evaluate_task(model, task, config, limit=min(questions, batch_size),
                      use_prefix_cache=use_cache, batch_size=batch_size)
    cached_s, cached = timed(model, task, config, questions, True, repeats, batch_size)
    uncached_s, uncached = timed(model, task, config, questions, False, repeats, batch_size)
    n = cached.score.n_examples

    def side(result, seconds: float) -> dict:
        return {"prefill_tokens": result.score.prefill_tokens,
                "prefill_tokens_per_question": result.score.prefill_tokens / n,
                "s_per_question": seconds / n, "wall_s": seconds,
                "exact_match": result.score.metrics["exact_match"]}

    return {"batch_size": batch_size, "n_questions": n, "cached": side(cached, cached_s),
            "uncached": side(uncached, uncached_s),
            "token_ratio": uncached.score.prefill_tokens / cached.score.prefill_tokens,
            "time_ratio": uncached_s / cached_s,
            "identical": ([e["output"] for e in cached.examples]
                          == [e["output"] for e in uncached.examples]),
            "outputs": [e["output"] for e in cached.examples]}


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def markdown(record: dict) -> str:
    lines = [
        "# Few-shot evaluation with the cached preamble", "",
        f"{record['model']}, trained {record['train_steps']} steps on 3-digit addition; "
        f"{record['shots']}-shot, {record['questions']} test questions, greedy, best of "
        f"{record['repeats']} timed passes, {record['threads']} threads. "
        f"Command: `{record['command']}`", "",
        "| batch | path | prefill tokens | prefill tokens / question | s / question | "
        "exact match |", "|---:|---|---:|---:|---:|---:|"]
    for run in record["batches"]:
        for name, side in (("preamble cached", run["cached"]),
                           ("every prompt whole", run["uncached"])):
            lines.append(f"| {run['batch_size']} | {name} | {side['prefill_tokens']:,} | "
                         f"{side['prefill_tokens_per_question']:.1f} | "
                         f"{side['s_per_question']:.4f} | {side['exact_match']:.3f} |")
    lines.append("")
    for run in record["batches"]:
        lines.append(
            f"- {run['batch_size']} question(s) per batch: prefill tokens "
            f"{run['token_ratio']:.1f}x fewer (target >= {TOKEN_TARGET:g}x: "
            f"{_verdict(run['token_ratio'], TOKEN_TARGET)}); time per question "
            f"{run['time_ratio']:.2f}x less (target >= {TIME_TARGET:g}x: "
            f"{_verdict(run['time_ratio'], TIME_TARGET)}); identical outputs: "
            f"{run['identical']}.")
    lines += [
        f"- Batched against one at a time, the cached outputs are identical: "
        f"{record['batched_equals_one_at_a_time']}.", "",
        "The cached path reads the instruction-free k-shot preamble once "
        "(`lmbench.inference.prefix_cache.cache_prefix`), copies its state into one row per "
        "question and reads the questions after it (`sample_batch_after`); the other reads "
        "boundary, preamble and question whole for every question (`sampling.sample_batch`). "
        "Both paths decode the same way, a batch of questions of one length in lockstep "
        "(`evaluate_task(..., batch_size=B)`, lm-eval's `--batch_size`). One question at a time, "
        "each generated token costs a full model call whatever its width, and that per-token "
        "cost, which the cache cannot remove, caps the time ratio; in a batch it is shared by "
        "B questions, so the preamble's prefill, which only the cache removes, is most of "
        "what is left.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,20",
                        help="comma-separated questions per batch (default 1,20)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="tiny model and few questions")
    parser.add_argument("--out", default="reports/fewshot_cache",
                        help="writes OUT.md and OUT.json (default reports/fewshot_cache)")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.quick:
        args.questions, args.repeats, args.threads = 3, 1, args.threads or 1
        batch_sizes = [1, 3]
    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task("addition", n_train=200, n_test=max(args.questions, 1))
    started = time.perf_counter()
    model = train_gpt(task, args.quick)
    train_s = time.perf_counter() - started
    print(f"trained in {train_s:.1f} s; evaluating", file=sys.stderr)
    config = PromptConfig(num_fewshot=args.shots)
    runs = [measure(model, task, config, args.questions, args.repeats, b) for b in batch_sizes]
    record = {
        "model": f"char gpt, {model.n_params():,} parameters", "train_steps":
        model.training_log()["steps"] if model.training_log() else None, "train_s": train_s,
        "shots": args.shots, "questions": runs[0]["n_questions"],
        "repeats": args.repeats, "threads": torch.get_num_threads(),
        "command": "python benchmarks/fewshot_cache.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "batches": [{k: v for k, v in run.items() if k != "outputs"} for run in runs],
        "batched_equals_one_at_a_time": all(run["outputs"] == runs[0]["outputs"]
                                            for run in runs),
        "targets": {"token_ratio": TOKEN_TARGET, "time_ratio": TIME_TARGET}}
    best = max(record["batches"], key=lambda run: run["time_ratio"])
    record.update(cached=best["cached"], uncached=best["uncached"],
                  token_ratio=best["token_ratio"], time_ratio=best["time_ratio"],
                  identical=all(run["identical"] for run in record["batches"]),
                  best_batch_size=best["batch_size"])
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), record)
    write_text_atomic(out.with_suffix(".md"), markdown(record))
    print(markdown(record))
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["identical"] and result["batched_equals_one_at_a_time"] else 1)
