"""DDP training throughput at 1 and 2 processes (one thread each), in one run.

    python benchmarks/ddp_scaling.py --data-dir ../shared --out reports/ddp_scaling
    python benchmarks/ddp_scaling.py --steps 4 --out /tmp/ddp_smoke            # a smoke run

A GPT (nanoGPT's baby shape: 4 layers, 4 heads, 128 wide, 64-token context) on Tiny Shakespeare
characters trains ``--steps`` steps at a global batch of ``--batch-size`` sequences, twice: in
one process (no DDP: the reference) and as two processes under ``torch.distributed`` (gloo on
127.0.0.1, ``GLOO_SOCKET_IFNAME=lo``; each rank one torch thread and half the global batch,
``lmbench.training.distributed``). Both see the same batches (a pure function of seed and step).
Reported: training tokens/s of each (global tokens over the trainer's training seconds, so
start-up and the final scoring are left out), the scaling (2-process / 1-process tokens/s;
target >= 1.5x), the mean training loss of each run and their relative difference, the largest
weight difference between the runs, and whether the two ranks' final weights are bitwise equal
(the unit tests also compare them after every step). Writes ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.results import environment
from lmbench.data.corpora import load_corpus
from lmbench.models import build_model
from lmbench.training.distributed import DistributedTraining

TARGET_SCALING = 1.5
REPO = Path(__file__).resolve().parents[1]


def _model(steps: int, batch_size: int):
    torch.manual_seed(0)
    return build_model("gpt", n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0,
                       tokenizer="char", train={
                           "batch_size": batch_size, "seq_len": 64, "learning_rate": 1e-3,
                           "warmup_steps": 10, "max_steps": steps, "eval_every": steps,
                           "bf16": False, "progress": False})


def worker(corpus: str, data_dir: str | None, out: Path, steps: int, batch_size: int) -> None:
    """One process of a run (the reference when WORLD_SIZE is unset)."""
    torch.set_num_threads(1)
    parallel = None
    if "WORLD_SIZE" in os.environ:
        parallel = DistributedTraining.from_environment(torch.device("cpu"))
    model = _model(steps, batch_size)
    model.fit(load_corpus(corpus, data_dir), valid=False, parallel=parallel)
    log = model.training_log()
    weights = model.network().state_dict()
    digest = hashlib.sha256()
    for value in weights.values():
        digest.update(value.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    rank = 0 if parallel is None else parallel.rank
    torch.save(weights, out / f"weights-{rank}.pt")
    (out / f"result-{rank}.json").write_text(json.dumps({
        "tokens": log["tokens"], "seconds": log["seconds"], "steps": log["steps"],
        "tokens_per_s": log["tokens"] / log["seconds"],
        "train_loss": log["curve"][-1]["train_loss"], "sha256": digest.hexdigest()}))
    if parallel is not None:
        torch.distributed.destroy_process_group()


def _launch(args, out: Path, world: int | None) -> None:
    out.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, __file__, "--worker", str(out), "--corpus", args.corpus,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    processes = []
    for rank in range(world or 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
            [str(REPO), os.environ.get("PYTHONPATH", "")])}  # this checkout's lmbench
        if world is not None:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
        processes.append(subprocess.Popen(command, env=env))
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a worker failed (exit {process.returncode})")


def markdown(report: dict) -> str:
    one, two = report["one_process"], report["two_processes"]
    return "\n".join([
        "# DDP scaling: tokens/s at 1 and 2 processes (one thread each)", "",
        f"Command: `{' '.join(report['argv'])}`", "",
        f"GPT 4x128 (4 heads, 64-token context) on `{report['corpus']}` characters, "
        f"{report['steps']} steps at a global batch of {report['batch_size']} x 64 tokens; "
        "gloo on 127.0.0.1.", "",
        "| processes | training tokens/s | training s | mean train loss |",
        "|---:|---:|---:|---:|",
        f"| 1 | {one['tokens_per_s']:,.0f} | {one['seconds']:.1f} | {one['train_loss']:.6f} |",
        f"| 2 | {two['tokens_per_s']:,.0f} | {two['seconds']:.1f} | {two['train_loss']:.6f} |",
        "", f"Scaling: **{report['scaling']:.2f}x** (target >= {TARGET_SCALING}x: "
        f"{'met' if report['scaling'] >= TARGET_SCALING else 'missed'}); efficiency "
        f"{report['scaling'] / 2:.0%} of linear.", "",
        f"Loss agreement: relative difference {report['loss_rel_diff']:.2e}; largest weight "
        f"difference between the 1- and 2-process runs {report['max_weight_diff']:.2e}; the two "
        f"ranks' final weights bitwise equal: **{report['ranks_identical']}**.", ""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="tinyshakespeare", help="corpus name or path")
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (sequences)")
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.corpus, args.data_dir, Path(args.worker), args.steps, args.batch_size)
        return {}
    with tempfile.TemporaryDirectory(prefix="ddp_scaling-") as folder:
        single, double = Path(folder) / "one", Path(folder) / "two"
        _launch(args, single, None)
        _launch(args, double, 2)
        one = json.loads((single / "result-0.json").read_text())
        ranks = [json.loads((double / f"result-{r}.json").read_text()) for r in range(2)]
        reference = torch.load(single / "weights-0.pt")
        ddp = torch.load(double / "weights-0.pt")
        max_diff = max(float((reference[k] - ddp[k]).abs().max()) for k in reference)
    report = {"argv": [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
              "corpus": args.corpus, "steps": args.steps, "batch_size": args.batch_size,
              "one_process": one, "two_processes": ranks[0],
              "scaling": ranks[0]["tokens_per_s"] / one["tokens_per_s"],
              "target_scaling": TARGET_SCALING,
              "loss_rel_diff": abs(ranks[0]["train_loss"] - one["train_loss"])
              / abs(one["train_loss"]),
              "max_weight_diff": max_diff,
              "ranks_identical": ranks[0]["sha256"] == ranks[1]["sha256"],
              "env": environment()}
    text = markdown(report)
    print(text)
    if args.out:
        write_text_atomic(Path(f"{args.out}.md"), text)
        write_json_atomic(Path(f"{args.out}.json"), report)
    print(json.dumps({k: report[k] for k in ("scaling", "loss_rel_diff", "ranks_identical")}))
    return report


if __name__ == "__main__":
    main()
