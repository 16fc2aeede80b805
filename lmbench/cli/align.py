"""``lmbench align PIPELINE.toml --out DIR``: run a post-training pipeline (base, SFT, reward
model, DPO / IPO, PPO, GRPO, best-of-N), one record and one saved model per model stage.

    lmbench align baselines/align_addition.toml --out runs/align
    lmbench leaderboard runs/align          # every stage ranked beside the others
    lmbench generate runs/align/<run-id>/model.npz "Q: What is 12 plus 30?\nA:"

The file format and the outputs are ``lmbench.alignment.pipeline``'s. The whole file is checked
before anything trains; a mistake is one ``lmbench: error: ...`` line and exit status 2.
``add_commands`` adds the subcommand to the CLI's subparsers.
"""

from __future__ import annotations

import argparse
import sys


def _align(args: argparse.Namespace) -> None:
    from lmbench.alignment.pipeline import prepare, run_pipeline

    config = prepare(args.pipeline, args.data_dir)
    summaries = run_pipeline(config, args.out, log=lambda line: print(line, file=sys.stderr))
    for name, summary in summaries.items():
        metrics = summary.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        where = summary.get("run_id", "(no model)")
        print(f"{name:>12} {summary['method']:<10} {where}  {shown}")
    print(f"\nresults written under {args.out} (stage summaries in "
          f"{args.out}/.align/{config.name}/)")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``align`` to ``lmbench``'s subcommands."""
    align = subparsers.add_parser(
        "align", help="run a post-training pipeline file (SFT, reward model, DPO, PPO, GRPO, ...)",
        description="Run the stages of a TOML pipeline file: each model stage writes a record "
        "and model.npz under --out, so leaderboard, compare and generate work on every stage.")
    align.add_argument("pipeline", help="pipeline file, e.g. baselines/align_addition.toml")
    align.add_argument("--out", default="runs/align", help="results folder (default: "
                       "%(default)s)")
    align.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    align.set_defaults(handler=_align)
