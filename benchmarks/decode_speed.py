"""Decode tokens/s of every model in a run file, one table: ``reports/decode_speed.md``.

    python benchmarks/decode_speed.py benchmarks/decode_families.toml --data-dir ../shared \
        --out reports/decode_speed

Each model is fitted for ``--fit-steps`` steps (speed does not depend on training) and measured
by ``lmbench.evaluation.throughput.measure_throughput``: greedy decoding with batch 1 through
the model's own incremental state (KV cache, hidden state, n-gram history), a
``--prompt-tokens`` prompt then ``--new-tokens`` new tokens, median of ``--repeats`` runs after
one warm-up, with the per-token latency p50 / p95, prefill tokens/s and scoring tokens/s beside
it. Run it alone: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.results import environment
from lmbench.data.corpora import load_corpus
from lmbench.evaluation.throughput import BenchConfig, measure_throughput
from lmbench.models import build_model
from lmbench.runs.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="run file listing the models")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", required=True, help="report path without suffix")
    parser.add_argument("--fit-steps", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    started = time.perf_counter()
    run = load_config(args.config)
    corpus = load_corpus(run.corpus, args.data_dir)
    bench = BenchConfig(score_tokens=4096, prompt_tokens=args.prompt_tokens,
                        new_tokens=args.new_tokens, train_steps=0, n_warmup=1,
                        n_repeats=args.repeats, split="test")
    rows = []
    for spec in run.models:
        model = build_model(spec.family, **spec.options).fit(
            corpus, valid=False, budget=Budget(max_steps=args.fit_steps))
        result = measure_throughput(model, corpus, bench, label=spec.label)
        rows.append(result.to_dict())
        print(f"{spec.label}: decode {result.decode_tokens_per_s.median:,.0f} tok/s, "
              f"p50 {result.token_latency_p50_s * 1e3:.2f} ms", flush=True)
    wall_s = time.perf_counter() - started
    lines = [f"# Decode speed per family ({run.corpus}, batch 1, greedy)", "",
             f"Command: `{command}` ({wall_s / 60:.1f} min, run alone on "
             f"{rows[0]['hardware']['cpu']}, {rows[0]['hardware']['threads']} threads).", "",
             f"Prompt of {args.prompt_tokens} tokens, then {args.new_tokens} new tokens through "
             "the model's incremental state; median [min-max] of "
             f"{args.repeats} runs after a warm-up. The batched generation benchmark "
             "(reports/generation_*.md) reports tokens/s of whole batches instead. Where prompt + "
             "new tokens exceed a model's window (gpt and moe: block 128; bert: 32), the steps "
             "past it recompute the last window (a sliding window), as generation does.", "",
             "| model | family | params | decode tok/s | latency p50 ms | p95 ms | "
             "prefill tok/s | score tok/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = r["decode_tokens_per_s"]
        lines.append(
            f"| {r['model']} | {r['family']} | {r['n_params']:,} | {d['median']:,.0f} "
            f"[{d['low']:,.0f}-{d['high']:,.0f}] | {r['token_latency_p50_s'] * 1e3:.2f} | "
            f"{r['token_latency_p95_s'] * 1e3:.2f} | {r['prefill_tokens_per_s']['median']:,.0f} "
            f"| {r['score_tokens_per_s']['median']:,.0f} |")
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json_atomic(out.with_suffix(".json"), {"command": command, "wall_s": wall_s,
                                                 "rows": rows, "env": environment()})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LmbenchError as error:
        sys.exit(f"decode_speed: error: {error}")
