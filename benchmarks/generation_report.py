"""Holtzman et al. 2019-style generation report for saved models on one corpus.

    python benchmarks/generation_report.py --corpus brown --model-file runs/<id>/model.npz \
        --judge-file runs/<best>/model.npz --data-dir ../shared --out reports/generation_brown \
        --attach-to-runs

Takes prompts from the corpus's held-out split (500 prompts of 32 tokens continued for 128 by
default; ``--quick``: 12 prompts of 8 tokens continued for 24, beam and best-of-N of 2, cheap
intervals), decodes them with greedy, beam, pure sampling, temperature 0.7, top-k 40, top-p 0.95
and best-of-N, and measures each row against the human continuation
(``lmbench.evaluation.generation_bench``). Writes ``<out>.md`` (a table per model plus samples
side by side), ``<out>.json`` (the record) and ``<out>.samples.jsonl`` (every continuation).
``--model-file`` may be repeated; every model and the judge must share one tokenizer with the
judge (default judge: each model itself).

``--attach-to-runs`` also writes, for each ``--model-file`` saved in a run folder
(``<store>/<run_id>/model.npz`` beside its ``result.json``), that model's results as
``<store>/<run_id>/generation.json`` (atomically; the schema is
``lmbench.evaluation.generation_results``'s), which ``lmbench leaderboard`` and ``lmbench
compare`` read with the record; other model files are named on stderr and left alone.
``--from-report <out>.json`` attaches the results of an earlier run of this script instead of
running the benchmark again (the same ``--model-file`` paths name the runs; implies
``--attach-to-runs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import NamedTuple

from lmbench.core.errors import LmbenchError
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.evaluation.generation_bench import (
    GenerationBenchConfig,
    quick_config,
    run_generation_bench,
)
from lmbench.evaluation.generation_results import run_sidecar
from lmbench.models import load_model
from lmbench.storage.store import RECORD_NAME, read_run, write_sidecar


def model_label(path: Path) -> str:
    """``runs/<run-id>/model.npz`` -> ``<run-id>``; any other file -> its stem."""
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


class AttachTarget(NamedTuple):
    """A ``--model-file`` saved in a run folder: where its generation results go (a NamedTuple:
    the tests load this script without registering it as a module, which a dataclass needs)."""

    label: str  # the model's label in the report
    run_dir: Path
    run_id: str  # the record's own run id


def attach_targets(model_files: list[str]) -> tuple[list[AttachTarget], list[str]]:
    """The model files saved in run folders, and one line for each of the others (checked
    before the benchmark runs, so a wrong path costs nothing)."""
    targets, others = [], []
    for name in model_files:
        path = Path(name)
        if path.name != "model.npz" or not (path.parent / RECORD_NAME).is_file():
            others.append(f"{path}: not <store>/<run_id>/model.npz beside a {RECORD_NAME}; "
                          "no generation.json attached")
            continue
        record, _ = read_run(path.parent / RECORD_NAME)
        targets.append(AttachTarget(model_label(path), path.parent, record.run_id))
    return targets, others


def judge_file_of(report: dict, given: str | None) -> str | None:
    """The judge's model file: the one given, else the one in the report's recorded command."""
    if given or not report.get("command"):
        return given
    words = shlex.split(report["command"])
    for i, word in enumerate(words[:-1]):
        if word == "--judge-file":
            return words[i + 1]
    return None


def attach(report: dict, targets: list[AttachTarget], judge_file: str | None) -> list[Path]:
    """Write each target's ``generation.json``; returns the paths written."""
    return [write_sidecar(t.run_dir, "generation",
                          run_sidecar(report, t.label, t.run_id, judge_file)) for t in targets]


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
    parser.add_argument("--attach-to-runs", action="store_true",
                        help="also write <store>/<run_id>/generation.json for each model file "
                             "saved in a run folder (read by lmbench leaderboard and compare)")
    parser.add_argument("--from-report", metavar="JSON",
                        help="do not run the benchmark: attach the results of an earlier run "
                             "(its <out>.json) to the runs of the --model-file paths")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/generation_report.py",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        labels = [model_label(Path(f)) for f in args.model_file]
        if len(set(labels)) < len(labels):
            raise LmbenchError(f"two --model-file paths give the same label: {labels}")
        targets, others = ([], [])
        if args.attach_to_runs or args.from_report:
            targets, others = attach_targets(args.model_file)
        for line in others:
            print(f"generation_report: {line}", file=sys.stderr)
        if args.from_report:
            report = _read_report(Path(args.from_report))
            paths = attach(report, targets, judge_file_of(report, args.judge_file))
            print("attached: " + (", ".join(map(str, paths)) or "nothing"), file=sys.stderr)
            return 0
        judge = load_model(args.judge_file) if args.judge_file else None
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
    record = report.to_dict()
    write_text_atomic(Path(f"{out}.md"), markdown + "\n")
    write_json_atomic(Path(f"{out}.json"), record)
    write_text_atomic(Path(f"{out}.samples.jsonl"),
                      "".join(json.dumps(generation) + "\n" for generation in report.generations()))
    print(markdown)
    print(f"\n{time.perf_counter() - started:.1f} s; written {out}.md, {out}.json, "
          f"{out}.samples.jsonl", file=sys.stderr)
    try:
        for path in attach(record, targets, args.judge_file):
            print(f"attached {path}", file=sys.stderr)
    except LmbenchError as error:
        print(f"generation_report: error: {error}", file=sys.stderr)
        return 2
    return 0


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LmbenchError(f"{path}: not a generation report's JSON ({error})") from None
    if not isinstance(report, dict) or not isinstance(report.get("models"), list):
        raise LmbenchError(f"{path}: not a generation report's JSON (no 'models' list)")
    return report


if __name__ == "__main__":
    sys.exit(main())
