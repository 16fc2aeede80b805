"""``lmbench run --ddp`` under torchrun: each neural model of the run file trained by every
process together (``lmbench.training.distributed``), rank 0 scoring and writing the records.

    torchrun --nproc_per_node=2 --master-addr 127.0.0.1 --master-port 29500 \\
        -m lmbench run baselines/quick.toml --out runs/quick --ddp

Families that do not train a network (n-grams) are fitted by every rank and written by rank 0.
A mistake is reported once, by rank 0 (every rank exits with status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Callable

import torch.distributed as dist

from lmbench.core.device import resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Trainable
from lmbench.core.results import RunResult
from lmbench.models import build_model
from lmbench.runs.config import RunConfig
from lmbench.runs.runner import LocalExecutor, run
from lmbench.training.distributed import DistributedTraining


def run_distributed(config: RunConfig, args: argparse.Namespace, log: Callable[[str], None]
                    ) -> list[RunResult] | None:
    """``run`` with every rank of the torchrun job; the records on rank 0, None elsewhere."""
    device = resolve_device(config.device)
    if device.type == "cuda":  # one GPU per process
        config = dataclasses.replace(config, device=f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
        device = resolve_device(config.device)
    if _loopback(os.environ.get("MASTER_ADDR", "")) and sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo's sockets stay on loopback
    parallel = DistributedTraining.from_environment(device)
    try:
        for spec in config.models:
            model = build_model(spec.family, **spec.options)
            if isinstance(model, Trainable):
                parallel.check_batch_size(model.train_config().batch_size,
                                          f"[[models]] {spec.label!r} train.batch_size")
        records = run(config, args.out, save_models=args.save_models,
                      log=log if parallel.is_writer else lambda _: None, retrain=args.retrain,
                      keep_checkpoints=args.keep_checkpoints, executor=LocalExecutor(parallel))
    except LmbenchError:
        if parallel.is_writer:
            raise
        sys.exit(2)  # rank 0 prints the one line
    finally:
        dist.destroy_process_group()
    return records if parallel.is_writer else None


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
