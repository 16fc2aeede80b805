"""``lmbench tasks`` (list the tasks) and ``lmbench eval-tasks`` (ask a model a task's questions
and grade the answers; ``lmbench.tasks``), written as a ``tasks.json`` sidecar beside its run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmbench.cli import MODEL_REFERENCE, RESULTS_HELP
from lmbench.core.errors import LmbenchError


def _list_tasks(args: argparse.Namespace) -> None:
    from lmbench.tasks.catalog import TASKS

    for name, builder in TASKS.items():
        print(f"  {name:20s} {(builder.__doc__ or '').strip().splitlines()[0]}")
    print("  PATH.toml            a task of your own: JSONL documents and a TOML description "
          "(lmbench.tasks.user_task)")


def _task_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names):
        raise LmbenchError(f"--tasks {text!r}: give task names separated by commas, e.g. "
                           "--tasks addition,last-letter")
    return list(dict.fromkeys(names))


def _summary_line(score) -> str:
    metric = score.metric
    value = score.metrics[metric]
    low, high = score.ci95.get(metric, (value, value))
    text = (f"{score.key:36s} {metric} {value:.4f} (95% CI {low:.4f}-{high:.4f}), "
            f"n = {score.n_examples}")
    if score.kind == "generate":
        text += f", flexible {score.metrics['exact_match_flexible']:.4f}"
    if score.kind == "multiple_choice":
        text += f", acc_norm {score.metrics['acc_norm']:.4f}"
    if score.prefill_tokens_uncached:
        text += (f"; prefill {score.prefill_tokens:,} tokens ({score.prefill_tokens_uncached:,} "
                 f"without the cached preamble), {score.wall_s / max(1, score.n_examples):.3f} "
                 "s/question")
    return text


def _eval_tasks(args: argparse.Namespace) -> None:
    from lmbench.core.device import describe_device, resolve_device
    from lmbench.core.io import check_writable
    from lmbench.models.catalog import load_model
    from lmbench.storage.references import resolve_model
    from lmbench.tasks.catalog import load_task
    from lmbench.tasks.evaluator import evaluate_task
    from lmbench.tasks.prompting import PromptConfig, preamble
    from lmbench.tasks.records import write_task_results

    names = _task_names(args.tasks)
    if args.limit is not None and args.limit < 1:
        raise LmbenchError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise LmbenchError(f"--batch-size must be >= 1, got {args.batch_size}")
    config = PromptConfig(num_fewshot=args.num_fewshot, cot=args.cot,
                          self_consistency=args.self_consistency, temperature=args.temperature,
                          seed=args.seed)
    reference = resolve_model(args.model, args.results)
    tasks = [load_task(name, args.data_dir) for name in names]
    for task in tasks:  # every mistake is found before anything runs or is written
        if task.kind != "rolling":
            preamble(task, config)
    run = reference.run
    out = Path(args.out) if args.out else (run.folder.parent if run and run.folder
                                           else Path("runs"))
    check_writable(out)
    device = resolve_device(args.device)
    model = load_model(reference.path).to(device)
    label = args.label or (run.record.model if run else reference.path.stem)
    run_id = run.record.run_id if run else label
    evaluations = []
    for task in tasks:
        evaluation = evaluate_task(model, task, config, limit=args.limit,
                                   use_prefix_cache=not args.no_prefix_cache,
                                   batch_size=args.batch_size)
        evaluations.append(evaluation)
        if not args.json:
            print(_summary_line(evaluation.score))
    path = write_task_results(out, run_id, label, evaluations, family=model.family,
                              device=describe_device(model.device))
    if args.json:
        print(json.dumps([e.score.to_dict() for e in evaluations], indent=2))
    print(f"written to {path}")


def add_commands(subparsers) -> None:
    """Register ``lmbench tasks`` and ``lmbench eval-tasks`` (``cli.build_parser``)."""
    listing = subparsers.add_parser("tasks", help="list the tasks eval-tasks can run",
                                    description="List the shipped tasks.")
    listing.set_defaults(handler=_list_tasks)

    ev = subparsers.add_parser(
        "eval-tasks", help="ask a saved model a task's questions and grade its answers",
        description="Evaluate a saved model on tasks: zero- or few-shot, chain of thought, "
        "self-consistency. Writes <out>/<run_id>/tasks.json (merged with earlier evaluations) "
        "and a JSONL file of per-example results per task under <out>/<run_id>/tasks/.")
    ev.add_argument("model", help=MODEL_REFERENCE)
    ev.add_argument("--tasks", required=True,
                    help="comma-separated task names (lmbench tasks) or task .toml files")
    ev.add_argument("--num-fewshot", type=int, default=0,
                    help="exemplars from each task's train split (default 0)")
    ev.add_argument("--cot", action="store_true",
                    help="chain of thought: exemplars with worked steps; with 0 shots, "
                    "\"Let's think step by step.\"")
    ev.add_argument("--self-consistency", type=int, default=1, metavar="N",
                    help="majority vote over N sampled chains (default 1: one greedy answer)")
    ev.add_argument("--temperature", type=float, default=0.7,
                    help="temperature of the self-consistency samples (default 0.7)")
    ev.add_argument("--seed", type=int, default=1234,
                    help="seed of the few-shot draw and of the samples (default 1234)")
    ev.add_argument("--limit", type=int, help="ask at most this many questions per task")
    ev.add_argument("--batch-size", type=int, default=1,
                    help="answer this many questions of one length together (default 1; "
                    "answers equal up to float rounding)")
    ev.add_argument("--no-prefix-cache", action="store_true",
                    help="read every prompt whole instead of caching the shared preamble")
    ev.add_argument("--results", help=RESULTS_HELP)
    ev.add_argument("--label", help="name of the model in the results")
    ev.add_argument("--out", help="results folder (default: the run folder of a saved model "
                    "that sits in one, else runs)")
    ev.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    ev.set_defaults(handler=_eval_tasks)
