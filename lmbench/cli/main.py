"""The ``lmbench`` command line: run, evaluate, leaderboard, compare, generate, bench, data, models.

Every user mistake ends with one line ``lmbench: error: ...`` on stderr and exit status 2;
nothing half-written is left behind (results are written to a temporary file, then renamed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from lmbench.core.errors import LmbenchError


def _run(args: argparse.Namespace) -> None:
    from lmbench.reports.tables import leaderboard_table, to_markdown
    from lmbench.runs.config import load_config
    from lmbench.runs.runner import run

    config = load_config(args.config)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    records = run(config, args.out, save_models=args.save_models,
                  log=lambda line: print(line, file=sys.stderr), retrain=args.retrain,
                  keep_checkpoints=args.keep_checkpoints)
    split = "test" if "test" in config.splits else config.splits[-1]
    print(f"\n{config.corpus}, {split} split:\n")
    print(to_markdown(leaderboard_table(records, split)))
    print(f"\nresults written under {args.out}")
    for record in records:
        if record.undertrained:
            print(f"lmbench: warning: {record.model} is undertrained: {record.undertrained}; "
                  "give it a step budget (train.max_steps) or more time", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> None:
    from lmbench.evaluation.scoring import evaluate
    from lmbench.models import load_model

    model = load_model(args.model)
    result = evaluate(model, args.corpus, args.split, data_dir=args.data_dir)
    if args.json:
        print(json.dumps({k: v for k, v in result.to_dict().items() if k != "block_nll_nats"},
                         indent=2))
        return
    low, high = result.perplexity_ci95
    print(f"{args.corpus} {args.split}: perplexity {result.perplexity:.2f} (95% CI {low:.2f}-"
          f"{high:.2f}), bits/byte {result.bits_per_byte:.4f}, <unk> rate {result.unk_rate:.2%}, "
          f"{result.n_tokens:,} tokens at {result.tokens_per_s:,.0f} tokens/s")


def _data(args: argparse.Namespace) -> None:
    from lmbench.data.corpora import CORPORA, data_root, load_corpus

    if args.action == "fetch":
        from lmbench.data.fetch import fetch

        root = fetch(args.name, args.data_dir)
        print(f"{args.name}: available under {root}")
        return
    print(f"data root: {data_root(args.data_dir)}")
    for name in CORPORA:
        try:
            corpus = load_corpus(name, args.data_dir)
            sizes = ", ".join(f"{s} {sp.n_words:,} words" for s, sp in corpus.splits.items())
            print(f"  {name:16s} ok       {sizes}")
        except LmbenchError:
            print(f"  {name:16s} missing  (lmbench data fetch {name})")


def _models(args: argparse.Namespace) -> None:
    from lmbench.models import MODELS

    for name, cls in MODELS.items():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.config_class)
                            if f.default is not dataclasses.MISSING)
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}\n    options: {options}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train and evaluate the models of a TOML run file")
    run.add_argument("config", help="run file, e.g. baselines/quick.toml")
    run.add_argument("--out", default="runs", help="folder for <run-id>/result.json records")
    run.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    run.add_argument("--save-models", action="store_true", help="also write <run-id>/model.npz")
    run.add_argument("--retrain", action="store_true",
                     help="train models that already have a record under --out (default: skip)")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep <out>/checkpoints/ of finished models (default: removed)")
    run.set_defaults(handler=_run)

    ev = commands.add_parser("evaluate", help="score a saved model (.npz or .arpa) on a corpus")
    ev.add_argument("model", help="model file written by --save-models / model.save, or .arpa")
    ev.add_argument("--corpus", required=True, help="corpus name or path")
    ev.add_argument("--split", default="test")
    ev.add_argument("--data-dir")
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.set_defaults(handler=_evaluate)

    from lmbench.cli.reports import add_commands as add_report_commands

    add_report_commands(commands)  # leaderboard, compare

    data = commands.add_parser("data", help="list corpora, or fetch one (needs internet)")
    data.add_argument("action", choices=("list", "fetch"))
    data.add_argument("name", nargs="?", help="corpus to fetch")
    data.add_argument("--data-dir")
    data.set_defaults(handler=_data)

    from lmbench.cli.generation import add_commands as add_generation_commands

    add_generation_commands(commands)  # generate

    from lmbench.cli.bench import add_commands as add_bench_commands

    add_bench_commands(commands)  # bench

    models = commands.add_parser("models", help="list model families and their options")
    models.set_defaults(handler=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "data" and args.action == "fetch" and not args.name:
        parser.error("data fetch needs a corpus name")
    try:
        args.handler(args)
    except LmbenchError as error:
        print(f"lmbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmbench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
