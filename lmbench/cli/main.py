"""The lmbench command line: run, evaluate, leaderboard, compare, generate, bench, data, models.

Every user mistake ends with one line ``lmbench: error: ...`` on stderr and exit status 2;
nothing half-written is left behind (results are written to a temporary file, then renamed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings

from lmbench.cli import MODEL_REFERENCE, RESULTS_HELP
from lmbench.core.errors import LmbenchError, LmbenchWarning
from lmbench.core.version import __version__


def _run(args: argparse.Namespace) -> None:
    from lmbench.reports.tables import leaderboard_table, to_markdown
    from lmbench.runs.config import load_config
    from lmbench.runs.runner import run

    config = load_config(args.config)
    if args.only is not None:
        config = dataclasses.replace(config, models=_only(config.models, args.only, args.config))
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    if args.device:
        config = dataclasses.replace(config, device=args.device)
    if args.address and args.executor != "ray":
        raise LmbenchError("--address is for --executor ray (a Ray cluster's head, HOST:PORT)")
    if args.ddp and args.executor != "local":
        raise LmbenchError("--ddp trains one model across torchrun's processes; it runs with "
                           "--executor local only")
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.executor == "ray":
        try:
            from lmbench.runs.ray_executor import RayExecutor
        except ModuleNotFoundError as error:
            if error.name != "ray":
                raise
            raise LmbenchError("--executor ray needs Ray: pip install 'lmbench[ray]'") from None

        with RayExecutor(args.address) as executor:
            records = run(config, args.out, save_models=args.save_models, log=log,
                          retrain=args.retrain, keep_checkpoints=args.keep_checkpoints,
                          executor=executor)
    elif args.ddp:
        from lmbench.cli.distributed import run_distributed

        records = run_distributed(config, args, log)
        if records is None:  # a rank other than 0: rank 0 reports
            return
    else:
        records = run(config, args.out, save_models=args.save_models, log=log,
                      retrain=args.retrain, keep_checkpoints=args.keep_checkpoints)
    records = [r for r in records if r.sweep is None or r.sweep.selected]
    split = "test" if "test" in config.splits else config.splits[-1]
    print(f"\n{config.corpus}, {split} split:\n")
    print(to_markdown(leaderboard_table(records, split)))
    print(f"\nresults written under {args.out}")
    for record in records:
        if record.undertrained:
            print(f"lmbench: warning: {record.model} is undertrained: {record.undertrained}; "
                  "give it a step budget (train.max_steps) or more time", file=sys.stderr)


def _only(models: tuple, only: str, path: str) -> tuple:
    """The models of a run file whose labels ``--only`` names (comma-separated), in file order."""
    wanted = [label.strip() for label in only.split(",")]
    if not all(wanted):
        raise LmbenchError(f"--only {only!r}: give model labels separated by commas")
    labels = [spec.label for spec in models]
    unknown = [label for label in wanted if label not in labels]
    if unknown:
        raise LmbenchError(f"--only: {path} has no model labelled {unknown[0]!r}; its labels: "
                           + ", ".join(labels))
    return tuple(spec for spec in models if spec.label in wanted)


def _evaluate(args: argparse.Namespace) -> None:
    from lmbench.evaluation.scoring import EvalConfig, evaluate
    from lmbench.models import load_model
    from lmbench.storage.references import corpus_of, resolve_model

    reference = resolve_model(args.model, args.results)
    corpus = corpus_of(reference, args.corpus, "evaluate")
    model = load_model(reference.path).to(args.device)
    config = EvalConfig(memory_budget_bytes=int(args.memory_budget_mib * 2**20))
    result = evaluate(model, corpus, args.split, config, data_dir=args.data_dir)
    if args.json:
        print(json.dumps({k: v for k, v in result.to_dict().items() if k != "block_nll_nats"},
                         indent=2))
        return
    low, high = result.perplexity_ci95
    print(f"{corpus} {args.split}: perplexity {result.perplexity:.2f} (95% CI {low:.2f}-"
          f"{high:.2f}), bits/byte {result.bits_per_byte:.4f}, <unk> rate {result.unk_rate:.2%}, "
          f"{result.n_tokens:,} tokens at {result.tokens_per_s:,.0f} tokens/s")


def _data(args: argparse.Namespace) -> None:
    from lmbench.data.corpora import CORPORA, data_root, load_corpus

    if args.action == "fetch":
        from lmbench.data.fetch import fetch

        root = fetch(args.name, args.data_dir)
        print(f"{args.name}: available under {root}")
        return
    print(f"data root: {data_root(args.data_dir)}  (words, not counting the end-of-sentence "
          "</s> the word track also predicts)")
    for name in CORPORA:
        try:
            corpus = load_corpus(name, args.data_dir)
            sizes = ", ".join(f"{s} {sum(map(len, sp.sentences)):,} words" for s, sp in
                              corpus.splits.items())
            print(f"  {name:16s} ok       {sizes}")
        except LmbenchError:
            print(f"  {name:16s} missing  (lmbench data fetch {name})")


def _models(args: argparse.Namespace) -> None:
    import typing

    from lmbench.core.tokenizers import TOKENIZERS
    from lmbench.models import MODELS
    from lmbench.peft import METHODS, supported_methods

    methods = supported_methods()

    train_class = None
    for name, cls in MODELS.items():
        hints = typing.get_type_hints(cls.config_class)
        options = []
        for f in dataclasses.fields(cls.config_class):
            if dataclasses.is_dataclass(hints[f.name]):
                train_class = hints[f.name]
                options.append(f"{f.name}.* (below)")
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            choices = f.metadata.get("choices") or (TOKENIZERS.names() if f.name == "tokenizer"
                                                    else None)
            options.append(f"{f.name}={default!r}" + (f" ({' | '.join(choices)})" if choices
                                                       else ""))
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0].replace('``', '')}\n"
              f"    options: {', '.join(options)}\n"
              f"    peft: {', '.join(methods.get(name, ())) or 'none'}")
        for key, text in cls.notes().items():
            print(f"    note on {key}: {text}")
    if train_class is not None:
        keys = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(train_class))
        print(f"train.* (the neural families' train table; a budget stops at the first limit "
              f"reached):\n    {keys}")
    print("peft methods (a run file's [peft] table, lmbench finetune --method):")
    for name, config_class in METHODS.items():
        keys = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(config_class))
        print(f"  {name}: {keys}")


class _PlainFormatter(argparse.HelpFormatter):
    """Help text without reStructuredText's double backticks (docstrings double as help)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.replace("``", ""))

    def _expand_help(self, action: argparse.Action) -> str:
        return super()._expand_help(action).replace("``", "")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subcommands (built with ``type(self)``) share the plain
    formatter."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _PlainFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lmbench {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="train and evaluate the models of a TOML run file",
        description="Train and evaluate the models of a TOML run file. Everything is checked "
        "before training: keys, values, names, that --out can be written, and model sizes "
        "(refused above $LMBENCH_MAX_PARAMS parameters; default: the smaller of 1e9 and this "
        "machine's memory / 16 bytes).")
    run.add_argument("config", help="run file, e.g. baselines/quick.toml")
    run.add_argument("--out", default="runs", help="folder for <run-id>/result.json records")
    run.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    run.add_argument("--save-models", action="store_true", help="also write <run-id>/model.npz")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the run file's "
                     "device, else auto)")
    run.add_argument("--only", metavar="LABELS",
                     help="run only these models of the file (comma-separated labels), e.g. one "
                     "rung of a ladder in this sitting; records of the others are left as they "
                     "are")
    run.add_argument("--retrain", action="store_true",
                     help="train models that already have a record under --out (default: skip)")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep <out>/checkpoints/ of finished models (default: removed)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default): here, one model after another; ray: every model "
                     "and sweep trial a Ray task with its resources table (extra 'ray')")
    run.add_argument("--address", help="with --executor ray: a running Ray cluster's head, "
                     "HOST:PORT (default: start a local one on 127.0.0.1)")
    run.add_argument("--ddp", action="store_true",
                     help="under torchrun --nproc_per_node=N: train each neural model with "
                     "DistributedDataParallel across the N processes, the global batch split "
                     "over them; rank 0 writes (docs/scaling.md)")
    run.set_defaults(handler=_run)

    ev = commands.add_parser("evaluate", help="score a saved model (.npz or .arpa) on a corpus")
    ev.add_argument("model", help=MODEL_REFERENCE)
    ev.add_argument("--results", help=RESULTS_HELP)
    ev.add_argument("--corpus", help="corpus name or path (default: the run's own corpus)")
    ev.add_argument("--split", default="test", help="split to score (default: test)")
    ev.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    ev.add_argument("--memory-budget-mib", type=float, default=1024.0,
                    help="most MiB of logits one model call may hold (default: 1024)")
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    ev.set_defaults(handler=_evaluate)

    from lmbench.cli.reports import add_commands as add_report_commands

    add_report_commands(commands)  # leaderboard, compare

    data = commands.add_parser("data", help="list corpora, or fetch one (needs internet)")
    data.add_argument("action", choices=("list", "fetch"),
                      help="list: the corpora and their split sizes; fetch: download NAME")
    data.add_argument("name", nargs="?", help="corpus to fetch")
    data.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    data.set_defaults(handler=_data)

    from lmbench.cli.generation import add_commands as add_generation_commands

    add_generation_commands(commands)  # generate

    from lmbench.cli.bench import add_commands as add_bench_commands

    add_bench_commands(commands)  # bench

    from lmbench.cli.finetune import add_commands as add_finetune_commands

    add_finetune_commands(commands)  # finetune

    from lmbench.cli.sweeps import add_commands as add_sweep_commands

    add_sweep_commands(commands)  # trials

    from lmbench.cli.tasks import add_commands as add_task_commands

    add_task_commands(commands)  # tasks, eval-tasks

    from lmbench.cli.align import add_commands as add_align_commands

    add_align_commands(commands)  # align

    models = commands.add_parser("models", help="list model families and their options")
    models.set_defaults(handler=_models)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None,
                  _default=warnings.showwarning) -> None:
    """lmbench's own warnings as one ``lmbench: warning: ...`` line; others as Python shows them."""
    if issubclass(category, LmbenchWarning):
        print(f"lmbench: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
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
    except BrokenPipeError:  # the reader left (lmbench compare --json | head): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush of stdout fails silently
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
