"""The ``leaderboard``, ``ladder`` and ``compare`` subcommands; ``lmbench.cli.main`` registers
them with ``add_commands(subparsers)``.

    lmbench leaderboard runs/quick --format html --out reports/leaderboard.html
    lmbench ladder reports/ladder_runs/brown --out reports/ladder_brown.md
    lmbench compare runs/quick/brown-kn5-... runs/quick/brown-unigram-...
    lmbench compare RUN_ID_A RUN_ID_B --results runs/quick --json

Mistakes raise ``LmbenchError`` (one ``lmbench: error:`` line, exit status 2, from ``cli.main``);
files skipped while reading a results folder are warned about on stderr, one line each.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lmbench.cli import RESULTS_HELP, RUN_REFERENCE
from lmbench.core.errors import LmbenchError
from lmbench.core.limits import MAX_COMPARE_BOOTSTRAP

FORMATS = ("markdown", "csv", "html")


def add_commands(subparsers) -> None:
    """Register ``leaderboard``, ``ladder`` and ``compare`` on an ``argparse`` subparsers
    object."""
    board = subparsers.add_parser(
        "leaderboard", help="rank the result records under a folder (Markdown, CSV or HTML)")
    board.add_argument("results", help="results folder (lmbench run --out), read recursively")
    board.add_argument("--split", default="test", help="split to rank (default: test)")
    board.add_argument("--format", choices=FORMATS,
                       help="output format (default: from --out's suffix, else markdown)")
    board.add_argument("--out", help="write to this file (atomically) instead of stdout")
    board.add_argument("--published", help="published reference figures (TOML; default: "
                                           "the repository's baselines/published.toml)")
    board.add_argument("--no-published", action="store_true",
                       help="leave published reference rows out")
    board.add_argument("--title", default="lmbench leaderboard", help="page / document title")
    board.set_defaults(handler=_leaderboard)

    ladder = subparsers.add_parser(
        "ladder", help="test quality against training budget per model series (Markdown, with "
                       "an SVG plot per corpus beside --out)")
    ladder.add_argument("results", help="results folder of a ladder run file, read recursively")
    ladder.add_argument("--split", default="test", help="split to show (default: test)")
    ladder.add_argument("--out", help="write the Markdown here (atomically) and each corpus's "
                                      "plot as <out stem>[-<corpus>].svg beside it; default: "
                                      "the Markdown on stdout, no plot")
    ladder.add_argument("--published", help="published reference figures (TOML; default: "
                                            "the repository's baselines/published.toml)")
    ladder.add_argument("--no-published", action="store_true",
                        help="leave published reference rows out")
    ladder.add_argument("--title", default="lmbench ladder", help="document title")
    ladder.set_defaults(handler=_ladder)

    cmp = subparsers.add_parser(
        "compare", help="paired bootstrap of two runs: differences with 95%% intervals, p-value")
    cmp.add_argument("run_a", help=f"A: {RUN_REFERENCE}")
    cmp.add_argument("run_b", help=f"B: {RUN_REFERENCE}")
    cmp.add_argument("--results", help=RESULTS_HELP)
    cmp.add_argument("--split", default="test", help="split to compare (default: test)")
    cmp.add_argument("--n-bootstrap", type=int, default=10_000,
                     help=f"resamples (default 10000, at most {MAX_COMPARE_BOOTSTRAP:,})")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    cmp.add_argument("--unpaired", action="store_true",
                     help="allow runs with different tokenizers: independent resampling, bits "
                          "per byte only (a conservative test)")
    cmp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp.set_defaults(handler=_compare)


def _leaderboard(args: argparse.Namespace) -> None:
    from lmbench.core.io import write_text_atomic
    from lmbench.reports.published import load_references
    from lmbench.reports.tables import (
        csv_report,
        leaderboard_table,
        markdown_report,
        published_table,
    )
    from lmbench.storage.store import ResultStore

    store = ResultStore(args.results)
    records = store.records()
    for problem in store.problems():
        print(f"lmbench: warning: {problem}", file=sys.stderr)
    if not records:
        raise LmbenchError(f"{args.results}: no run records found")
    references = [] if args.no_published else load_references(args.published)
    fmt = args.format or _format_of(args.out)
    if fmt == "html":
        from lmbench.reports.html import render_html

        text = render_html(records, references, store.problems(), args.split, args.title,
                           command=shlex.join(["lmbench", *sys.argv[1:]]) if args.out else None)
    else:
        table = leaderboard_table(records, args.split)
        if table.empty:
            raise LmbenchError(f"{args.results}: no record scored the {args.split!r} split")
        corpora = sorted(set(table["corpus"]))
        published = published_table(references, corpora)
        text = (csv_report(table, published) if fmt == "csv" else
                markdown_report(table, published, store.problems(), args.split, args.title))
        if fmt == "markdown":
            from lmbench.reports.task_tables import tasks_markdown

            sections = tasks_markdown(records)
            text = text.rstrip("\n") + "\n\n" + sections if sections else text
    if args.out:
        write_text_atomic(Path(args.out), text)
        print(f"{fmt} leaderboard of {len(records)} records written to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _ladder(args: argparse.Namespace) -> None:
    from lmbench.core.io import write_text_atomic
    from lmbench.reports.ladder import ladder_markdown, ladder_points, ladder_svg
    from lmbench.reports.published import load_references
    from lmbench.reports.tables import published_table
    from lmbench.storage.store import ResultStore

    store = ResultStore(args.results)
    records = store.records()
    for problem in store.problems():
        print(f"lmbench: warning: {problem}", file=sys.stderr)
    points = ladder_points(records, args.split)
    if not points:
        raise LmbenchError(f"{args.results}: no record scored the {args.split!r} split")
    references = [] if args.no_published else load_references(args.published)
    plots = {}
    if args.out:
        out = Path(args.out)
        corpora = sorted({p.corpus for p in points})
        published = published_table(references, corpora)
        for corpus in corpora:
            svg = ladder_svg(points, published, corpus)
            if svg:
                name = f"{out.stem}.svg" if len(corpora) == 1 else f"{out.stem}-{corpus}.svg"
                write_text_atomic(out.with_name(name), svg)
                plots[corpus] = name
    text = ladder_markdown(records, references, args.split, args.title, plots,
                           command=shlex.join(["lmbench", *sys.argv[1:]]) if args.out else None)
    if args.out:
        write_text_atomic(Path(args.out), text)
        print(f"ladder of {len(points)} points written to {args.out}"
              + (f" (plots: {', '.join(plots.values())})" if plots else ""), file=sys.stderr)
    else:
        sys.stdout.write(text)


def _compare(args: argparse.Namespace) -> None:
    from lmbench.evaluation.significance import compare

    result = compare(args.run_a, args.run_b, args.split, n_bootstrap=args.n_bootstrap,
                     seed=args.seed, unpaired=args.unpaired, results_dir=args.results)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_text())


def _format_of(out: str | None) -> str:
    suffix = Path(out).suffix.lower() if out else ""
    return {".html": "html", ".htm": "html", ".csv": "csv"}.get(suffix, "markdown")

