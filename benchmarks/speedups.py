"""Inference speedups side by side on Tiny Shakespeare characters, each a ratio measured in one run.

    python benchmarks/speedups.py --data-dir ../shared --out reports/speedups
    python benchmarks/speedups.py --quick --corpus tests/some_folder   # seconds, tiny sizes

Sections (each timed as the median of ``--repeats`` runs after one warm-up):

1. KV cache: greedy decoding of ``--new-tokens`` ids with the cache against re-reading the whole
   prefix at every step (``generate(use_cache=False)``), on a gpt of the target's shape whose
   block holds prompt + new tokens (so the cache never slides); outputs must be identical.
2. Speculative greedy decoding (``lmbench.inference.speculative``) against target-only greedy
   decoding, for several gamma, with a small gpt draft and char n-gram drafts: acceptance rate,
   target calls, wall-clock speedup; outputs must be identical.
3. Quantization: int8 dynamic and bf16 against fp32: scoring tokens/s on the valid split, and
   the perplexity change (the evaluator on the whole valid split).
4. Distillation: a small student trained ``--student-steps`` steps on the target's soft targets
   (T = 2, alpha = 0.5) against the same student trained from scratch for the same steps.
5. Attention backends: explicit formula against ``scaled_dot_product_attention``, time and peak
   tensor memory against context length.

The target is nanoGPT's CPU baby GPT (4 layers, 4 heads, 128 wide), trained for
``--train-seconds``; ``--block-size`` sets its context (64 as in ``gpt_shakespeare.py``; past
the block every step recomputes a full window, which the cache cannot help). Writes
``<out>.json`` and ``<out>.md``; the last line of stdout is the whole report as compact JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import lmbench
from lmbench.core.interface import Budget
from lmbench.core.results import describe_cpu, environment
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.attention import attention_table, benchmark_attention
from lmbench.inference.quantize import QuantConfig, quantize
from lmbench.inference.sampling import SamplingConfig, generate
from lmbench.inference.speculative import speculative_generate
from lmbench.training.distill import DistillConfig, distill

GREEDY = SamplingConfig(temperature=0)


@dataclass(frozen=True)
class Settings:
    corpus: str = "tinyshakespeare"
    n_layer: int = 4  # the target (nanoGPT's baby GPT)
    n_embd: int = 128
    block_size: int = 64
    train_seconds: float = 60.0  # target training budget
    draft_seconds: float = 20.0  # small gpt draft training budget
    draft_n_embd: int = 32  # small gpt draft: 1 layer, 2 heads
    ngram_orders: tuple[int, ...] = (4, 6)  # char n-gram drafts (modified Kneser-Ney)
    gammas: tuple[int, ...] = (2, 3, 4, 6, 8)
    prompt_tokens: int = 32
    new_tokens: int = 256
    n_prompts: int = 3
    score_tokens: int = 20_000  # valid ids timed for scoring throughput
    student_n_embd: int = 48  # distillation student: 1 layer, 2 heads
    student_steps: int = 600
    attention_lengths: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    repeats: int = 3

    @classmethod
    def quick(cls, corpus: str) -> Settings:
        return cls(corpus=corpus, n_layer=1, n_embd=32, block_size=32, train_seconds=1.0,
                   draft_seconds=0.5, draft_n_embd=16, ngram_orders=(3,), gammas=(2, 4),
                   prompt_tokens=8, new_tokens=24, n_prompts=1, score_tokens=400,
                   student_n_embd=16, student_steps=4, attention_lengths=(32, 64), repeats=1)


def _train(settings: Settings, batch_size: int = 12) -> dict:
    return {"batch_size": batch_size, "seq_len": settings.block_size, "learning_rate": 4e-3,
            "warmup_steps": 30, "max_steps": None, "max_seconds": settings.train_seconds,
            "eval_every": 10**9, "bf16": True, "progress": False}


def _timed(function, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _gpt(settings: Settings, corpus, *, n_layer, n_embd, n_head, seconds, block_size=None,
         tokenizer=None, fit=True):
    options = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
               "block_size": block_size or settings.block_size,
               "train": {**_train(settings), "max_seconds": seconds}}
    model = lmbench.build_model("gpt", **options)
    if tokenizer is not None:
        model.tokenizer = tokenizer
    if fit:
        model.fit(corpus, valid=False, budget=Budget(max_seconds=seconds))
    return model


# ------------------------------------------------------------------------------------ sections


def kv_cache_section(settings: Settings, corpus, prompts, tokenizer) -> dict:
    block = settings.prompt_tokens + settings.new_tokens + 1  # the cache never slides
    model = _gpt(settings, corpus, n_layer=settings.n_layer, n_embd=settings.n_embd,
                 n_head=max(1, settings.n_embd // 32), seconds=1.0, block_size=block,
                 tokenizer=tokenizer, fit=False)  # never trained: the budget only has to be valid
    model.net = model.build_network(tokenizer.vocab_size).eval()  # timing needs no training
    prompt, n = prompts[0], settings.new_tokens
    cached_s, cached = _timed(lambda: generate(model, prompt, n, sampler=GREEDY), settings.repeats)
    plain_s, plain = _timed(lambda: generate(model, prompt, n, sampler=GREEDY, use_cache=False),
                            settings.repeats)
    return {"new_tokens": n, "block_size": block, "cached_s": cached_s, "recompute_s": plain_s,
            "speedup": plain_s / cached_s, "identical": cached == plain}


def speculative_section(settings: Settings, target, drafts: dict, prompts) -> dict:
    n = settings.new_tokens
    baseline_s, expected = _timed(
        lambda: [generate(target, p, n, sampler=GREEDY) for p in prompts], settings.repeats)
    rows = []
    for name, draft in drafts.items():
        for gamma in settings.gammas:
            seconds, runs = _timed(
                lambda draft=draft, gamma=gamma: [
                    speculative_generate(target, draft, p, n, gamma) for p in prompts],
                settings.repeats)
            accepted = sum(s.n_accepted for _, s in runs)
            drafted = sum(s.n_drafted for _, s in runs)
            rows.append({"draft": name, "gamma": gamma, "seconds": seconds,
                         "speedup": baseline_s / seconds, "acceptance_rate": accepted / drafted,
                         "target_calls": sum(s.n_target_calls for _, s in runs),
                         "identical": [ids for ids, _ in runs] == expected})
    best = max(rows, key=lambda r: r["speedup"] if r["identical"] else 0)
    return {"target_only_s": baseline_s, "new_tokens": n, "n_prompts": len(prompts),
            "rows": rows, "best": best}


def quantization_section(settings: Settings, model, corpus) -> dict:
    ids = model.tokenizer.encode_split(corpus.split("valid"))[: settings.score_tokens]
    config = EvalConfig(progress=False, n_bootstrap=1)
    rows = {}
    for kind in ("fp32", "int8-dynamic", "bf16"):
        variant = model if kind == "fp32" else quantize(model, QuantConfig(kind))
        seconds, _ = _timed(lambda variant=variant: score_stream(variant, ids, config),
                            settings.repeats)
        result = lmbench.evaluate(variant, corpus, "valid", config)
        rows[kind] = {"score_tokens_per_s": len(ids) / seconds, "perplexity": result.perplexity}
    for row in rows.values():
        row["speedup"] = row["score_tokens_per_s"] / rows["fp32"]["score_tokens_per_s"]
        row["perplexity_change"] = row["perplexity"] / rows["fp32"]["perplexity"] - 1
    return rows


def distillation_section(settings: Settings, teacher, corpus) -> dict:
    steps = settings.student_steps
    train = {**_train(settings), "max_seconds": None, "max_steps": steps}

    def student():
        model = lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=settings.student_n_embd,
                                    block_size=settings.block_size, train=train)
        model.tokenizer = teacher.tokenizer
        return model

    rows = {}
    for name in ("scratch", "distilled"):
        started = time.perf_counter()
        if name == "scratch":
            model = student().fit(corpus, valid=False, budget=Budget(max_steps=steps))
        else:
            config = DistillConfig(temperature=2.0, alpha=0.5, budget=Budget(max_steps=steps))
            model = distill(teacher, student(), corpus, config)
        result = lmbench.evaluate(model, corpus, "valid", EvalConfig(progress=False,
                                                                     n_bootstrap=1))
        rows[name] = {"perplexity": result.perplexity, "bits_per_byte": result.bits_per_byte,
                      "train_s": time.perf_counter() - started, "n_params": model.n_params()}
    rows["teacher_perplexity"] = lmbench.evaluate(
        teacher, corpus, "valid", EvalConfig(progress=False, n_bootstrap=1)).perplexity
    rows["distilled_beats_scratch"] = (rows["distilled"]["perplexity"]
                                       < rows["scratch"]["perplexity"])
    return rows


# -------------------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    kv, spec, quant, dist = (report[k] for k in ("kv_cache", "speculative", "quantization",
                                                 "distillation"))
    lines = [f"# Inference speedups ({report['corpus']}, characters)", "",
             f"Command: `python {' '.join(report['argv'])}`", "",
             f"Machine: {describe_cpu(report['env'])}, torch "
             f"{report['env']['torch']}.", "",
             "## KV cache", "",
             f"{kv['new_tokens']} new tokens: cached {kv['cached_s']:.3f} s, recomputed "
             f"{kv['recompute_s']:.3f} s: **{kv['speedup']:.1f}x** (identical output: "
             f"{kv['identical']}).", "",
             "## Speculative greedy decoding", "",
             f"Target-only greedy: {spec['target_only_s']:.3f} s for {spec['n_prompts']} x "
             f"{spec['new_tokens']} tokens.", "",
             "| draft | gamma | acceptance | target calls | s | speedup | identical |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['draft']} | {r['gamma']} | {r['acceptance_rate']:.1%} | {r['target_calls']}"
              f" | {r['seconds']:.3f} | {r['speedup']:.2f}x | {r['identical']} |"
              for r in spec["rows"]]
    lines += ["", "## Quantization (scoring, valid split)", "",
              "| weights | tokens/s | speedup | perplexity | change |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {r['score_tokens_per_s']:,.0f} | {r['speedup']:.2f}x | "
              f"{r['perplexity']:.3f} | {r['perplexity_change']:+.2%} |" for k, r in quant.items()]
    lines += ["", f"## Distillation ({report['settings']['student_steps']} steps each)", "",
              "| student | valid perplexity | bits/byte | train s |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {dist[k]['perplexity']:.3f} | {dist[k]['bits_per_byte']:.4f} | "
              f"{dist[k]['train_s']:.1f} |" for k in ("scratch", "distilled")]
    lines += ["", f"Teacher perplexity {dist['teacher_perplexity']:.3f}; distilled beats "
              f"scratch: {dist['distilled_beats_scratch']}.", "",
              "## Attention backends (causal, fp32)", "", report["attention_table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="tinyshakespeare", help="corpus name or path")
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds (tests)")
    parser.add_argument("--train-seconds", type=float, help="target training budget")
    parser.add_argument("--block-size", type=int, help="target context")
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--student-steps", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    settings = Settings.quick(args.corpus) if args.quick else Settings(corpus=args.corpus)
    overrides = {k: getattr(args, k) for k in ("train_seconds", "block_size", "new_tokens",
                                               "student_steps", "repeats")
                 if getattr(args, k) is not None}
    settings = replace(settings, **overrides)

    corpus = lmbench.load_corpus(settings.corpus, args.data_dir)
    target = _gpt(settings, corpus, n_layer=settings.n_layer, n_embd=settings.n_embd,
                  n_head=max(1, settings.n_embd // 32), seconds=settings.train_seconds)
    tokenizer = target.tokenizer
    valid = tokenizer.encode_split(corpus.split("valid"))
    offsets = np.linspace(0, len(valid) - settings.prompt_tokens - 1, settings.n_prompts)
    prompts = [valid[int(o): int(o) + settings.prompt_tokens].tolist() for o in offsets]

    drafts = {f"gpt 1x{settings.draft_n_embd}": _gpt(
        settings, corpus, n_layer=1, n_embd=settings.draft_n_embd, n_head=2,
        seconds=settings.draft_seconds, tokenizer=tokenizer)}
    for order in settings.ngram_orders:
        ngram = lmbench.build_model("ngram", order=order, tokenizer="char")
        ngram.tokenizer = tokenizer
        drafts[f"ngram {order}"] = ngram.fit(corpus)

    report = {"argv": [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
              "corpus": corpus.name,
              "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
              "target": {"n_params": target.n_params(), "config": target.config()},
              "kv_cache": kv_cache_section(settings, corpus, prompts, tokenizer),
              "speculative": speculative_section(settings, target, drafts, prompts),
              "quantization": quantization_section(settings, target, corpus),
              "distillation": distillation_section(settings, target, corpus)}
    rows = benchmark_attention(settings.attention_lengths, n_repeats=max(settings.repeats, 1))
    report["attention"] = [{"backend": r.backend, "context_len": r.context_len,
                            "ms": r.seconds.median * 1e3, "peak_bytes": r.peak_bytes,
                            "max_abs_diff": r.max_abs_diff} for r in rows]
    report["attention_table"] = attention_table(rows)
    report["env"] = environment()
    text = markdown(report)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text, encoding="utf-8")
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, separators=(",", ":")))
    return report


if __name__ == "__main__":
    main()
