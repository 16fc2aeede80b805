"""Measurement primitives for benchmarks: spreads of repeated timings, the machine's matmul peak,
FLOPs per token, and memory (process RSS, weight bytes, live tensor bytes).

- ``matmul_peak_flops``: an (n x n) @ (n x n) product costs 2 n^3 FLOPs (n^3 multiply-adds);
  the fastest of a few runs gives the peak FLOP/s that utilisation is measured against (the
  denominator of the model FLOPs utilisation of Chowdhery et al. 2022, PaLM, appendix B).
- ``flops_per_token``: a ``CountsFlops`` family's own ``flops_per_token(context_len)`` (gpt,
  moe: Kaplan et al. 2020, Table 1, with the attention term) or 2 x n_params for other neural
  (``Trainable``) models (each weight in one multiply-add); None for count-based models.
- ``TensorMemoryTracker``: the peak of live tensor bytes inside a block on any device (on CUDA
  ``torch.cuda.max_memory_allocated`` says the same more cheaply).

Timings on a GPU wait for the queued kernels (``lmbench.core.device.synchronize``) before the
clock is read; the peak and ``hardware`` are those of the device the model computes on.
"""

from __future__ import annotations

import resource
import sys
import time
import weakref
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lmbench.core.device import describe_device, synchronize
from lmbench.core.interface import CountsFlops, LanguageModel, Trainable
from lmbench.core.results import Spread, environment  # noqa: F401 (Spread: imported from here)

CPU = torch.device("cpu")


class TensorMemoryTracker(TorchDispatchMode):
    """Live bytes of the tensors allocated inside the ``with`` block, and their peak.

    Every tensor an aten op returns is followed through a weak reference; a storage counts once
    (views share it) and only if no input of the op already held it (a view of a weight is not
    an allocation). Tensors made outside torch's dispatcher (``torch.from_numpy``) are not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, live tensors]
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_address(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._follow(tensor, inputs)
        return out

    def _follow(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        address = _address(tensor)
        if address == 0:
            return
        entry = self.live.get(address)
        if entry is None:
            if address in inputs:
                return
            entry = self.live[address] = [_storage_bytes(tensor), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(tensor, self._release, address)

    def _release(self, address: int) -> None:
        entry = self.live.get(address)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self.live[address]
                self.current -= entry[0]


def _address(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # quantized and other storage-less tensors
        return tensor.data_ptr()


def _storage_bytes(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return tensor.numel() * tensor.element_size()


def nbytes_of(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the tensors and arrays reachable from ``obj`` (modules through their
    ``state_dict``; containers, dataclasses and plain objects through their fields), each
    storage once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = _address(obj)
        if key in seen:
            return 0
        seen.add(key)
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        key = obj.__array_interface__["data"][0]
        if key in seen:
            return 0
        seen.add(key)
        return obj.nbytes
    if isinstance(obj, torch.nn.Module):
        return nbytes_of(list(obj.state_dict(keep_vars=True).values()), seen)
    if isinstance(obj, dict):
        return sum(nbytes_of(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes_of(v, seen) for v in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes_of(getattr(obj, f.name), seen) for f in fields(obj))
    return 0


def weight_bytes(model: LanguageModel) -> int:
    """Bytes of a model's weights or tables (its tokenizer excluded): the tensors and arrays
    reachable from its attributes, and a ``Trainable``'s network."""
    network = [model.network()] if isinstance(model, Trainable) else []
    return nbytes_of([v for k, v in vars(model).items() if k != "tokenizer"] + network)


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


# ----------------------------------------------------------------------------------- hardware


def matmul_peak_flops(dtype: torch.dtype, size: int = 1024, repeats: int = 3,
                      device: torch.device = CPU) -> float:
    """FLOP/s of the fastest of ``repeats`` (size x size) @ (size x size) products, 2 size^3,
    on ``device``."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def hardware(device: torch.device = CPU) -> dict[str, Any]:
    """The machine a measurement ran on; ``device`` is where the model computed."""
    env = environment()
    if device.type == "cuda":
        backend = f"cuda {describe_device(device)}"
    else:
        backend = (f"cpu {torch.backends.cpu.get_cpu_capability()}, "
                   f"mkldnn {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    return {"device": describe_device(device), "cpu": env["cpu"], "cpu_isa": env["cpu_isa"],
            "threads": env["threads"], "torch": env["torch"], "backend": backend}


def flops_per_token(model: LanguageModel, context_len: float | None = None) -> float | None:
    """Forward FLOPs per token: the family's own count (``CountsFlops``) if it has one, else
    2 x n_params for a neural model (``Trainable``); None for a count-based model, whose table
    lookups are not multiply-adds (2 x its stored n-grams would be no estimate of anything)."""
    if isinstance(model, CountsFlops):
        return float(model.flops_per_token(context_len))
    if isinstance(model, Trainable):
        return 2.0 * model.n_params()
    return None
