"""An 8-model run file sequentially (the local executor) against Ray with 2 workers, in one run.

    python benchmarks/ray_runs.py --data-dir ../shared --out reports/ray_runs
    python benchmarks/ray_runs.py --corpus treebank --models 3 --out /tmp/ray_smoke  # a smoke run

``benchmarks/ray_runs.toml`` (the quick leaderboard's shape with smaller step budgets; every
model declares one CPU, so one torch thread) is run twice into fresh folders: once by the local
executor, one model after another, and once by ``lmbench.runs.ray_executor.RayExecutor`` on a
local 2-CPU Ray cluster on 127.0.0.1 (two models at a time). Reported: both wall times, the
speedup (sequential / Ray, with and without the cluster's start-up), and whether every metric
of every model is identical (the total NLL and every per-block NLL of each split). Target:
>= 1.6x with identical metrics. A speedup below 2 comes from the cluster's start-up, from
each worker reading the corpus again, and from the two workers finishing at different times
(the longest model bounds the Ray run). Writes ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.results import environment
from lmbench.runs.config import load_config
from lmbench.runs.ray_executor import RayExecutor
from lmbench.runs.runner import run

HERE = Path(__file__).resolve().parent
TARGET_SPEEDUP = 1.6


def _metrics(records) -> dict:
    return {r.model: {split: {"nll_nats": m.nll_nats, "block_nll_nats": list(m.block_nll_nats),
                              "perplexity": m.perplexity, "bits_per_byte": m.bits_per_byte}
                      for split, m in r.metrics.items()} for r in records}


def markdown(report: dict) -> str:
    lines = ["# Ray executor: an 8-model run file, sequential vs 2 Ray workers", "",
             f"Command: `{' '.join(report['argv'])}`", "",
             f"Run file `{report['run_file']}` on `{report['corpus']}`, "
             f"{report['n_models']} models, one CPU (one torch thread) each.", "",
             "| executor | wall s |", "|---|---:|",
             f"| local (sequential) | {report['sequential_s']:.1f} |",
             f"| Ray, 2 workers (cluster running) | {report['ray_s']:.1f} |",
             f"| Ray, 2 workers (with the cluster's start, {report['ray_start_s']:.1f} s) | "
             f"{report['ray_s'] + report['ray_start_s']:.1f} |", "",
             f"Speedup: **{report['speedup']:.2f}x** (target >= {TARGET_SPEEDUP}x: "
             f"{'met' if report['speedup'] >= TARGET_SPEEDUP else 'missed'}); "
             f"{report['speedup_with_start']:.2f}x counting the cluster's start.", "",
             f"Every metric identical (total and per-block NLL of every split of every model): "
             f"**{report['identical']}**.", "", "| model | split | perplexity | bits/byte |",
             "|---|---|---:|---:|"]
    for model, splits in report["metrics"].items():
        for split, m in splits.items():
            lines.append(f"| {model} | {split} | {m['perplexity']:.2f} | "
                         f"{m['bits_per_byte']:.4f} |")
    lines += ["", "Training s per model, sequential / on its Ray worker: " + ", ".join(
        f"{k} {v:.1f} / {report['fit_s_ray'][k]:.1f}" for k, v in report["fit_s"].items())
        + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-file", default=str(HERE / "ray_runs.toml"))
    parser.add_argument("--corpus", help="another corpus than the run file's (name or path)")
    parser.add_argument("--models", type=int, help="only the first N models (a smoke run)")
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the Ray cluster")
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    config = load_config(args.run_file)
    config = dataclasses.replace(config, data_dir=args.data_dir, device="cpu",
                                 corpus=args.corpus or config.corpus,
                                 models=config.models[: args.models])
    quiet = lambda line: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="ray_runs-") as folder:
        started = time.perf_counter()
        sequential = run(config, Path(folder) / "local", log=quiet)
        sequential_s = time.perf_counter() - started
        with RayExecutor(num_cpus=args.workers) as executor:
            started = time.perf_counter()
            executor.connect()
            ray_start_s = time.perf_counter() - started
            started = time.perf_counter()
            parallel = run(config, Path(folder) / "ray", log=quiet, executor=executor)
            ray_s = time.perf_counter() - started
    local_metrics, ray_metrics = _metrics(sequential), _metrics(parallel)
    report = {"argv": [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
              "run_file": os.path.relpath(args.run_file), "corpus": config.corpus,
              "n_models": len(config.models), "workers": args.workers,
              "sequential_s": sequential_s, "ray_s": ray_s, "ray_start_s": ray_start_s,
              "speedup": sequential_s / ray_s,
              "speedup_with_start": sequential_s / (ray_s + ray_start_s),
              "target_speedup": TARGET_SPEEDUP, "identical": local_metrics == ray_metrics,
              "fit_s": {r.model: r.fit_s for r in sequential},
              "fit_s_ray": {r.model: r.fit_s for r in parallel},
              "metrics": {model: {split: {k: v for k, v in m.items() if k != "block_nll_nats"}
                                  for split, m in splits.items()}
                          for model, splits in local_metrics.items()},
              "env": environment()}
    text = markdown(report)
    print(text)
    if args.out:
        write_text_atomic(Path(f"{args.out}.md"), text)
        write_json_atomic(Path(f"{args.out}.json"), report)
    print(json.dumps({k: report[k] for k in ("sequential_s", "ray_s", "speedup", "identical")}))
    return report


if __name__ == "__main__":
    main()
