"""``lmbench bench``: throughput, latency, memory and FLOP utilisation of a model, written as a
``throughput.json`` sidecar beside its run (``lmbench.evaluation.throughput``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmbench.cli import MODEL_REFERENCE, RESULTS_HELP
from lmbench.core.errors import LmbenchError

if TYPE_CHECKING:  # the command imports them when it runs (the parser stays light)
    from lmbench.core.interface import LanguageModel
    from lmbench.evaluation.resources import Spread
    from lmbench.evaluation.throughput import ThroughputResult


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values as JSON when they parse (else strings), dotted keys nested:
    ``train.max_steps=20`` -> {"train": {"max_steps": 20}}."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise LmbenchError(f"option {pair!r} must look like KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        table = options
        for parent in parents:
            table = table.setdefault(parent, {})
        table[leaf] = value
    return options


def _models_to_bench(args) -> list[tuple[str, LanguageModel, Any, str | None, Path | None]]:
    """(label, fitted model, corpus, run id, folder) for each model named on the command line."""
    from lmbench.core.device import resolve_device
    from lmbench.core.interface import Budget
    from lmbench.data.corpora import load_corpus
    from lmbench.models.catalog import MODELS, build_model, load_model
    from lmbench.runs.config import load_config
    from lmbench.storage.references import corpus_of, resolve_model

    budget = Budget(max_steps=args.fit_steps)
    target = Path(args.model)
    if target.suffix == ".toml":
        run = load_config(target)
        device = resolve_device(args.device or run.device)
        corpus = load_corpus(args.corpus or run.corpus, args.data_dir or run.data_dir)
        return [(spec.label, build_model(spec.family, **spec.options).to(device).fit(
                 corpus, budget=budget), corpus, None, None) for spec in run.models]
    device = resolve_device(args.device or "auto")
    if args.model not in MODELS and not target.exists() and not args.results:
        if target.suffix:
            resolve_model(args.model)  # "model file not found"
        MODELS.get(args.model)  # "unknown model ... did you mean"
    if args.model not in MODELS or target.exists():  # a saved model or a run
        reference = resolve_model(args.model, args.results)
        corpus = load_corpus(corpus_of(reference, args.corpus, "bench"), args.data_dir)
        run = reference.run
        label = args.label or (run.record.model if run else reference.path.stem)
        return [(label, load_model(reference.path), corpus, run.record.run_id if run else None,
                 run.folder if run else None)]
    if not args.corpus:
        raise LmbenchError(f"bench of the {args.model!r} family needs --corpus to fit on")
    corpus = load_corpus(args.corpus, args.data_dir)
    model = build_model(args.model, **_parse_options(args.option)).to(device).fit(
        corpus, budget=budget)
    return [(args.label or args.model, model, corpus, None, None)]


def _summary(result: ThroughputResult) -> str:
    def rate(spread: Spread | None, unit: str) -> str:
        if spread is None:
            return "-"
        return f"{spread.median:,.0f} {unit} ({spread.low:,.0f}-{spread.high:,.0f})"

    util = {k: "-" if v is None else f"{v:.2%}" for k, v in result.utilization.items()}
    return "\n".join([
        f"{result.model}: {result.n_params:,} params, "
        f"{'-' if result.flops_per_token is None else f'{result.flops_per_token:,.0f}'} "
        "FLOPs/token",
        f"  score     {rate(result.score_tokens_per_s, 'tok/s')}, "
        f"{rate(result.score_bytes_per_s, 'B/s')}, utilisation {util['score']}",
        f"  prefill   {rate(result.prefill_tokens_per_s, 'tok/s')}, time to first token "
        f"{result.time_to_first_token_s.median * 1e3:.2f} ms",
        f"  decode    {rate(result.decode_tokens_per_s, 'tok/s')}, latency p50 "
        f"{result.token_latency_p50_s * 1e3:.2f} ms, p95 {result.token_latency_p95_s * 1e3:.2f}"
        f" ms, utilisation {util['decode']}",
        f"  train     {rate(result.train_tokens_per_s, 'tok/s')}, utilisation {util['train']}",
        f"  memory    peak RSS {result.peak_rss_bytes / 2**20:,.1f} MiB, weights "
        f"{result.weight_bytes / 2**20:,.2f} MiB, peak tensors "
        f"{result.peak_tensor_bytes / 2**20:,.2f} MiB, cache {result.cache_bytes / 2**10:,.1f} KiB",
        f"  peak      fp32 {result.matmul_peak_flops_per_s['fp32'] / 1e9:,.1f} GFLOP/s, bf16 "
        f"{result.matmul_peak_flops_per_s['bf16'] / 1e9:,.1f} GFLOP/s on "
        f"{result.device or 'cpu'}, {result.hardware['cpu']} ({result.hardware['threads']} "
        "threads)",
    ])


def _bench(args: argparse.Namespace) -> None:
    from lmbench.evaluation.throughput import BenchConfig, measure_throughput, write_throughput

    config = BenchConfig.quick() if args.quick else BenchConfig()
    overrides = {name: getattr(args, name) for name in
                 ("score_tokens", "prompt_tokens", "new_tokens", "train_steps", "n_repeats",
                  "n_warmup", "split") if getattr(args, name) is not None}
    config = replace(config, **overrides)
    for label, model, corpus, run_id, folder in _models_to_bench(args):
        result = measure_throughput(model, corpus, config, label=label, run_id=run_id)
        out = Path(args.out) if args.out else (folder.parent if folder else Path("runs"))
        path = write_throughput(result, out)
        print(json.dumps(result.to_dict(), indent=2) if args.json else _summary(result))
        print(f"written to {path}")


def add_commands(subparsers) -> None:
    """Register ``lmbench bench`` on the CLI's subparsers (``cli.build_parser``)."""
    bench = subparsers.add_parser(
        "bench", help="throughput, latency, memory and FLOP utilisation of a model",
        description="Throughput, latency, memory and FLOP utilisation of a model.")
    bench.add_argument("model", help=f"{MODEL_REFERENCE}; a run file (.toml: each of its "
                       "models, fitted for --fit-steps); or a family name (fitted on --corpus)")
    bench.add_argument("--results", help=RESULTS_HELP)
    bench.add_argument("--corpus", help="corpus name or path to fit on and measure with (default "
                       "for a saved model: its run's corpus)")
    bench.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                       help="family option, JSON value, dotted for nested: -o n_layer=2 "
                       "-o train.batch_size=8")
    bench.add_argument("--fit-steps", type=int, default=100,
                       help="training steps when fitting a family or a run file's models")
    bench.add_argument("--label", help="name of the model in the record")
    bench.add_argument("--split", help="split to measure on (default valid)")
    bench.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    bench.add_argument("--score-tokens", type=int, help="tokens scored per scoring measurement")
    bench.add_argument("--prompt-tokens", type=int, help="prompt length for prefill and decode")
    bench.add_argument("--new-tokens", type=int,
                       help="tokens decoded per decode measurement (at most 100,000)")
    bench.add_argument("--train-steps", type=int, help="training steps measured; 0 skips it")
    bench.add_argument("--repeats", dest="n_repeats", type=int,
                       help="measured repeats of each figure (median and range)")
    bench.add_argument("--warmup", dest="n_warmup", type=int,
                       help="unmeasured warm-up repeats before them")
    bench.add_argument("--out", help="results folder (default: the run folder of a saved model "
                       "that sits in one, else runs)")
    bench.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    bench.add_argument("--json", action="store_true", help="print the whole record as JSON")
    bench.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: a run file's "
                       "device, else auto)")
    bench.set_defaults(handler=_bench)
