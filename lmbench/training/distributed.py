"""Data-parallel training of one model across processes: ``torch.distributed`` with
DistributedDataParallel (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training"), launched by ``torchrun``.

``DistributedTraining`` is a value passed to the trainer (``train(..., parallel=...)``), never a
patch: with it, each of the ``world_size`` ranks

- reads the same global batch ``batches(step)`` (a pure function of the seed and the step,
  ``lmbench.training.batching``) and keeps its rows ``[r B/W, (r + 1) B/W)`` (``shard``), so a
  run on W processes and a run on one process at the same global batch B see the same data;
- runs forward and backward through ``DistributedDataParallel``, whose all-reduce averages the
  gradients over ranks; with equal shards the average of the ranks' mean losses is the mean
  loss of the global batch, so every rank applies the single-process step (up to the order of
  floating-point sums), clipping included (the clipped norm is of the averaged gradient);
- reports the loss averaged over ranks (the curve is the global batch's), counts the global
  batch's tokens, and, under a time budget, stops when the slowest rank's clock says so (every
  rank takes the same number of steps, or the collectives would wait forever);
- draws dropout from a generator seeded by (seed, rank, step), so a resumed run draws what an
  uninterrupted one does without storing every rank's generator;
- leaves checkpoints and records to rank 0 (``is_writer``); every rank resumes from rank 0's
  checkpoint, and DDP's construction broadcasts rank 0's weights.

``check_replicas`` compares a SHA-256 of every rank's parameters with rank 0's after every
optimizer step and raises naming the step where they differ (the test and the benchmark use it;
it costs one small all-gather per step). The backend is gloo on the CPU and nccl on CUDA; under
torchrun the rendezvous comes from the environment (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lmbench.core.errors import LmbenchError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedTraining:
    """This process's place in a data-parallel job (module docstring)."""

    rank: int
    world_size: int
    local_rank: int = 0
    check_replicas: bool = False  # compare every rank's parameters after every step

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes checkpoints and records (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device, *, check_replicas: bool = False,
                         option: str = "--ddp") -> DistributedTraining:
        """Join the process group that ``torchrun`` describes in the environment (gloo on the
        CPU, nccl on CUDA); ``LmbenchError`` naming ``option`` when not under torchrun."""
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise LmbenchError(f"{option} needs torchrun's environment ({', '.join(missing)} "
                               "unset): launch with torchrun --nproc_per_node=N -m lmbench run "
                               f"... {option}")
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, init_method="env://")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=int(os.environ["LOCAL_RANK"]), check_replicas=check_replicas)

    def check_batch_size(self, batch_size: int, where: str = "train.batch_size") -> None:
        """``LmbenchError`` unless the global batch splits evenly over the ranks."""
        if batch_size % self.world_size:
            raise LmbenchError(f"{where} = {batch_size} does not split over {self.world_size} "
                               "processes (torchrun --nproc_per_node): use a multiple of "
                               f"{self.world_size}")

    def shard(self, batch):
        """This rank's rows of a global batch (a frozen dataclass of batch-first tensors, as
        every batch of ``lmbench.training.batching`` is): every tensor field with the batch's
        B rows keeps rows ``[r B/W, (r + 1) B/W)``; other fields are kept as they are."""
        values = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
        tensors = [v for v in values.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
        n_rows = tensors[0].shape[0]
        self.check_batch_size(n_rows)
        size = n_rows // self.world_size
        start = self.rank * size
        return dataclasses.replace(batch, **{
            name: value[start:start + size] for name, value in values.items()
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n_rows})

    def wrap(self, network: torch.nn.Module) -> torch.nn.Module:
        """``network`` in DistributedDataParallel (construction broadcasts rank 0's weights)."""
        device = next(network.parameters()).device
        ids = [device.index if device.index is not None else self.local_rank] \
            if device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=ids)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over ranks (a detached copy)."""
        total = value.detach().clone().float().reshape(1)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[0] / self.world_size

    def maximum(self, value: float) -> float:
        """The largest of a number over ranks (the slowest clock)."""
        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else None
        largest = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        return float(largest[0])

    def step_seed(self, seed: int, step: int) -> int:
        """The dropout generator's seed at ``step`` on this rank."""
        return int(np.random.SeedSequence([seed, self.rank, step]).generate_state(1)[0])

    def after_step(self, network: torch.nn.Module, step: int) -> None:
        """With ``check_replicas``: ``LmbenchError`` if this rank's parameters differ from
        rank 0's after ``step``."""
        if not self.check_replicas:
            return
        digest = hashlib.sha256()
        for tensor in network.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
                          .numpy().tobytes())
        words = np.frombuffer(digest.digest(), dtype=np.int64).copy()  # (4,)
        mine = torch.from_numpy(words)
        if dist.get_backend() == "nccl":
            mine = mine.to(torch.device("cuda", self.local_rank))
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        differing = [rank for rank, other in enumerate(gathered)
                     if not torch.equal(other, gathered[0])]
        if differing:
            raise LmbenchError(f"after step {step} the parameters of rank(s) "
                               f"{', '.join(map(str, differing))} differ from rank 0's")
