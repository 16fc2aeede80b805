"""The ``trials`` subcommand: every trial of the sweeps in a results folder, with its values,
its valid-split selection metric and which trial each sweep selected; ``lmbench.cli.main``
registers it with ``add_commands(subparsers)``.

    lmbench trials runs/sweep
    lmbench trials runs/sweep --label gpt-60s --format csv
"""

from __future__ import annotations

import argparse
import sys

from lmbench.core.errors import LmbenchError


def add_commands(subparsers) -> None:
    """Register ``trials`` on an ``argparse`` subparsers object."""
    trials = subparsers.add_parser(
        "trials", help="list every trial of the sweeps under a results folder")
    trials.add_argument("results", help="results folder (lmbench run --out)")
    trials.add_argument("--label", help="only the sweep of this [[models]] label")
    trials.add_argument("--format", choices=("markdown", "csv"), default="markdown",
                        help="output format (default: markdown)")
    trials.set_defaults(handler=_trials)


def _trials(args: argparse.Namespace) -> None:
    from lmbench.reports.tables import csv_cell, sweep_markdown, trials_table
    from lmbench.storage.store import ResultStore

    store = ResultStore(args.results)
    records = store.records()
    for problem in store.problems():
        print(f"lmbench: warning: {problem}", file=sys.stderr)
    table = trials_table(records)
    if table.empty:
        raise LmbenchError(f"{args.results}: no sweep trials found")
    if args.label is not None:
        labels = sorted(set(table["sweep"]))
        table = table[table["sweep"] == args.label]
        if table.empty:
            raise LmbenchError(f"--label {args.label!r}: no sweep of that label in "
                               f"{args.results} (sweeps: {', '.join(labels)})")
    if args.format == "csv":
        sys.stdout.write(table.map(csv_cell).to_csv(index=False))
    else:
        print(sweep_markdown(table))
