"""One rank of the DDP tests (tests/training/test_distributed.py): trains the test's tiny GPT on
a corpus folder under torch.distributed (gloo, loopback), checking every rank's parameters
against rank 0's after every step, and writes this rank's final weights and log.

    RANK=r WORLD_SIZE=2 LOCAL_RANK=r MASTER_ADDR=127.0.0.1 MASTER_PORT=p GLOO_SOCKET_IFNAME=lo \\
        python tests/training/ddp_job.py CORPUS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lmbench.data.corpora import load_corpus
from lmbench.models import build_model
from lmbench.training.distributed import DistributedTraining

GPT = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": 0.0,
       "tokenizer": "word"}
TRAIN = {"batch_size": 4, "seq_len": 16, "learning_rate": 3e-3, "warmup_steps": 2,
         "max_steps": 40, "eval_every": 20, "eval_tokens": 300, "checkpoint_every": 2,
         "bf16": False, "progress": False}


def tiny_gpt(max_steps: int = TRAIN["max_steps"]):
    """The model every test trains (one process or several)."""
    torch.manual_seed(0)
    return build_model("gpt", **GPT, train={**TRAIN, "max_steps": max_steps})


def main(corpus_dir: str, out_dir: str, max_steps: int) -> None:
    torch.set_num_threads(1)
    parallel = DistributedTraining.from_environment(torch.device("cpu"), check_replicas=True)
    model = tiny_gpt(max_steps)
    model.fit(load_corpus(corpus_dir), checkpoint_dir=Path(out_dir) / "checkpoint",
              parallel=parallel)
    out = Path(out_dir)
    torch.save(model.network().state_dict(), out / f"weights-{parallel.rank}.pt")
    (out / f"log-{parallel.rank}.json").write_text(json.dumps(model.training_log()))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
