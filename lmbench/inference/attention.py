"""Attention backends against context length: time, peak memory and agreement.

The two backends of ``lmbench.models.layers.attention`` compute the same function,
softmax(Q K^T / sqrt(d_k) + M) V (Vaswani et al. 2017, eq. 1):

- ``explicit``: the formula written out; it materialises the (B, H, T, T) score and weight
  matrices, so its memory grows as T^2.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``, which dispatches to a fused
  kernel where the platform has one (FlashAttention, Dao et al. 2022: tiled, never holding the
  T x T matrix; a CPU flash kernel exists in torch >= 2.1; CUDA also has the memory-efficient
  kernel of Rabe & Staats 2021), else to the same maths as ``explicit``.

``benchmark_attention`` times causal self-attention on random (B, H, T, D) inputs for each
context length T, measures the peak of tensor memory allocated by the call
(``TensorMemoryTracker``: the inputs are not counted), and the largest absolute difference
between the two outputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmbench.evaluation.resources import Spread, TensorMemoryTracker
from lmbench.models.layers import ATTENTION_BACKENDS, attention, attention_backend


@dataclass(frozen=True)
class AttentionRow:
    backend: str
    context_len: int  # T
    seconds: Spread  # per causal self-attention call over (B, H, T, D)
    peak_bytes: int  # tensor memory the call allocates at its peak
    max_abs_diff: float  # largest |output - explicit output|


def benchmark_attention(context_lengths: Sequence[int] = (128, 256, 512, 1024, 2048), *,
                        batch_size: int = 1, n_head: int = 4, head_dim: int = 32,
                        n_warmup: int = 1, n_repeats: int = 5, seed: int = 0,
                        dtype: torch.dtype = torch.float32) -> list[AttentionRow]:
    """One row per (backend, context length); see the module docstring."""
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for T in context_lengths:
        shape = (batch_size, n_head, T, head_dim)  # (B, H, T, D)
        q, k, v = (torch.randn(shape, generator=generator).to(dtype) for _ in range(3))
        measured = {}  # backend -> (output, times, peak bytes)
        with torch.inference_mode():
            for backend in ATTENTION_BACKENDS:
                with attention_backend(backend):
                    times = []
                    for run in range(n_warmup + n_repeats):
                        started = time.perf_counter()
                        output = attention(q, k, v, is_causal=True)
                        if run >= n_warmup:
                            times.append(time.perf_counter() - started)
                    with TensorMemoryTracker() as tracker:
                        attention(q, k, v, is_causal=True)
                measured[backend] = (output.float(), times, tracker.peak)
        reference = measured["explicit"][0]
        rows += [AttentionRow(backend, T, Spread.of(times), peak,
                              float((output - reference).abs().max()))
                 for backend, (output, times, peak) in measured.items()]
    return rows


def attention_table(rows: list[AttentionRow]) -> str:
    """A markdown table: per context length, each backend's time and memory."""
    lines = ["| backend | context | ms (min-max) | peak MiB | max abs diff |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        s = row.seconds
        lines.append(f"| {row.backend} | {row.context_len} | {s.median * 1e3:.3f} "
                     f"({s.low * 1e3:.3f}-{s.high * 1e3:.3f}) | {row.peak_bytes / 2**20:.2f} | "
                     f"{row.max_abs_diff:.1e} |")
    return "\n".join(lines)
