"""The adaptive softmax output layer (Grave et al. 2017, "Efficient softmax approximation for
GPUs", section 4), shared by the families that offer it (not a family itself).

Token ids are split by ``cutoffs`` c_0 < c_1 < ... < c_{n-1} < V into a head shortlist
[0, c_0) and n tail clusters [c_{i-1}, c_i) (the last ends at V). Tokenizers that number words by
decreasing frequency (the word tokenizer does) put the frequent words in the head. The head is a
softmax over the c_0 shortlist words plus one entry per cluster; cluster i is a softmax over its
words, computed from a projection of the input to d / div_value^(i+1) dimensions:

    p(w | h) = p_head(w | h)                                  w in the shortlist
    p(w | h) = p_head(cluster i | h) * p_i(w | h)              w in cluster i      (Grave eq. 5)

This is an exact, normalised distribution over all V words (it sums to 1; the tests check it),
so perplexities stay comparable with a full softmax. The saving is in training: the loss only
evaluates a tail for the positions whose target lies in it (most targets are shortlist words),
and tails are low-rank. ``torch.nn.AdaptiveLogSoftmaxWithLoss`` computes the same thing but
fails under bf16 autocast (mixed dtypes in ``index_copy_``), hence this small module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmbench.core.errors import LmbenchError


def check_cutoffs(cutoffs: Sequence[int], vocab_size: int | None = None) -> None:
    """Raise unless ``cutoffs`` is strictly increasing, positive and (given V) below V."""
    values = list(cutoffs)
    if any(isinstance(c, bool) or not isinstance(c, int) for c in values):
        raise LmbenchError(f"adaptive_cutoffs must be integers, got {values}")
    if values and (values[0] < 1 or any(b <= a for a, b in zip(values, values[1:]))):
        raise LmbenchError(f"adaptive_cutoffs must be positive and strictly increasing, "
                           f"got {values}")
    if vocab_size is not None and values and values[-1] >= vocab_size:
        raise LmbenchError(f"adaptive_cutoffs {values} must all be below the vocabulary size "
                           f"{vocab_size}")


class AdaptiveSoftmax(nn.Module):
    """(N, d) inputs -> log-probabilities over V tokens (module docstring)."""

    def __init__(self, in_dim: int, vocab_size: int, cutoffs: Sequence[int],
                 div_value: float = 4.0) -> None:
        super().__init__()
        check_cutoffs(cutoffs, vocab_size)
        self.vocab_size = vocab_size
        self.bounds = [*cutoffs, vocab_size]  # cluster i covers [bounds[i], bounds[i + 1])
        self.shortlist = self.bounds[0]
        self.n_clusters = len(self.bounds) - 1
        self.head = nn.Linear(in_dim, self.shortlist + self.n_clusters)
        self.tails = nn.ModuleList()
        for i in range(self.n_clusters):
            dim = max(1, int(in_dim // div_value ** (i + 1)))
            size = self.bounds[i + 1] - self.bounds[i]
            self.tails.append(nn.Sequential(nn.Linear(in_dim, dim, bias=False),
                                            nn.Linear(dim, size, bias=False)))

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., V) log-probabilities (float32)."""
        head = torch.log_softmax(self.head(hidden).float(), dim=-1)  # (..., c_0 + n)
        parts = [head[..., : self.shortlist]]
        for i, tail in enumerate(self.tails):
            cluster = head[..., self.shortlist + i : self.shortlist + i + 1]  # (..., 1)
            parts.append(cluster + torch.log_softmax(tail(hidden).float(), dim=-1))
        return torch.cat(parts, dim=-1)

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N, d) inputs and (N,) targets in [0, V) -> (N,) -ln p(target), each tail evaluated
        only on the rows whose target falls in it."""
        head = torch.log_softmax(self.head(hidden).float(), dim=-1)  # (N, c_0 + n)
        cutoffs = torch.tensor(self.bounds[:-1], device=targets.device)
        cluster = torch.bucketize(targets, cutoffs, right=True)  # (N,) 0: shortlist, i + 1: tail i
        head_index = torch.where(cluster == 0, targets, self.shortlist + cluster - 1)
        nll = -head.gather(1, head_index.unsqueeze(1)).squeeze(1)  # (N,)
        for i, tail in enumerate(self.tails):
            rows = (cluster == i + 1).nonzero().squeeze(1)  # (n_i,)
            if rows.numel() == 0:
                continue
            tail_logprob = torch.log_softmax(tail(hidden[rows]).float(), dim=-1)  # (n_i, size_i)
            within = (targets[rows] - self.bounds[i]).unsqueeze(1)
            nll = nll.index_add(0, rows, -tail_logprob.gather(1, within).squeeze(1))
        return nll

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean NLL in nats of (N,) targets: ``F.nll_loss(log_prob(hidden), targets)``, cheaper."""
        return self.nll(hidden, targets).mean()
