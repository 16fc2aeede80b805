"""Holtzman et al. 2019-style generation report for saved models on one corpus.

    python benchmarks/generation_report.py --corpus brown --model-file runs/<id>/model.npz \
        --judge-file runs/<best>/model.npz --data-dir ../shared --out reports/generation_brown

Takes prompts from the corpus's held-out split (500 prompts of 32 tokens continued for 128 by
default; ``--quick``: 12 prompts of 8 tokens continued for 24, beam and best-of-N of 2, cheap
intervals), decodes them with greedy, beam, pure sampling, temperature 0.7, top-k 40, top-p 0.95
and best-of-N, and measures each row against the human continuation
(``lmbench.evaluation.generation_bench``). Writes ``<out>.md`` (a table per model plus samples
side by side), ``<out>.json`` (the record) and ``<out>.samples.jsonl`` (every continuation).
``--model-file`` may be repeated; every model and the judge must share one tokenizer with the
judge (default judge: each model itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from lmbench.errors import LmbenchError
from lmbench.evaluation.generation_bench import (
    GenerationBenchConfig,
    quick_config,
    run_generation_bench,
)
from lmbench.models import load_model
from lmbench.results import write_json_atomic


def model_label(path: Path) -> str:
    """``runs/<run-id>/model.npz`` -> ``<run-id>``; any other file -> its stem."""
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="brown",
                        help="brown, tinyshakespeare, or any corpus name or path")
    parser.add_argument("--model-file", action="append", required=True,
                        help="a saved model (.npz or .arpa); repeat for several")
    parser.add_argument("--judge-file", help="reference model scoring every row (judge PPL, "
                        "best-of-N by judge, MAUVE features with --features judge)")
    parser.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    parser.add_argument("--out", help="output path prefix (default reports/generation_<corpus>)")
    parser.add_argument("--quick", action="store_true", help="few, short prompts: a smoke run")
    parser.add_argument("--features", choices=("tfidf", "judge"), help="MAUVE features")
    parser.add_argument("--n-prompts", type=int)
    parser.add_argument("--prompt-len", type=int)
    parser.add_argument("--continuation-len", type=int)
    parser.add_argument("--seed", type=int)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/generation_report.py",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        judge = load_model(args.judge_file) if args.judge_file else None
        labels = [model_label(Path(f)) for f in args.model_file]
        if len(set(labels)) < len(labels):
            raise LmbenchError(f"two --model-file paths give the same label: {labels}")
        models = {label: load_model(f) for label, f in zip(labels, args.model_file, strict=True)}
        overrides = {k: v for k, v in (("features", args.features), ("n_prompts", args.n_prompts),
                                       ("prompt_len", args.prompt_len), ("seed", args.seed),
                                       ("continuation_len", args.continuation_len))
                     if v is not None}
        config = quick_config(**overrides) if args.quick else GenerationBenchConfig(**overrides)
        config = dataclasses.replace(config, judge=judge)
        started = time.perf_counter()
        report = run_generation_bench(models, args.corpus, config, data_dir=args.data_dir,
                                      command=command,
                                      log=lambda line: print(line, file=sys.stderr, flush=True))
    except LmbenchError as error:
        print(f"generation_report: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or f"reports/generation_{Path(report.corpus).name}")
    markdown = report.to_markdown()
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text(markdown + "\n", encoding="utf-8")
    write_json_atomic(Path(f"{out}.json"), report.to_dict())
    with open(f"{out}.samples.jsonl", "w", encoding="utf-8") as lines:
        for record in report.generations():
            lines.write(json.dumps(record) + "\n")
    print(markdown)
    print(f"\n{time.perf_counter() - started:.1f} s; written {out}.md, {out}.json, "
          f"{out}.samples.jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
