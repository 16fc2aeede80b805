"""``moe``: the ``gpt`` decoder with sparse mixture-of-experts feed-forward layers.

Every block's MLP is replaced by E experts (each an MLP of the dense size, C -> 4C -> C) and a
router W_r (C, E) (Shazeer et al. 2017; Lepikhin et al. 2021, GShard). For a token x,

    p(x) = softmax(x W_r),   y(x) = sum_{i in TopK(p(x))} g_i(x) E_i(x)

- ``top_k = 1``: Switch Transformer (Fedus et al. 2021, eq. 1-2), g_i = p_i(x), so the router
  learns through the gate value.
- ``top_k = 2`` (or more): Mixtral (Jiang et al. 2024, eq. 1), g = softmax of the top-k router
  logits, i.e. the chosen p_i renormalised to sum to 1.

Capacity (Switch section 2.2): in training each expert takes at most
ceil(capacity_factor * N * top_k / E) of the N tokens of a batch. Assignments past an expert's
capacity are dropped, first choices of every token before any second choice, then in (B, T)
order (GShard); a dropped token gets nothing from that expert and passes through the residual.
At inference (``net.eval()``) no token is dropped: capacity is only a training device, and this
keeps each token's output independent of the rest of the batch, so the KV cache (``gpt``'s,
unchanged) gives exactly what full recomputation gives.

Auxiliary losses, per layer, summed over layers and added to the training loss:

    balance (Switch eq. 4-6):  alpha * E * sum_i f_i P_i,  f_i = share of the N * top_k
        routed assignments sent to expert i (before dropping), P_i = mean_x p_i(x);
        exactly alpha when routing is uniform, up to alpha * E when one expert takes all.
    router z-loss (ST-MoE, Zoph et al. 2022, eq. 5):  c_z * mean_x (log sum_i exp(x W_r)_i)^2

The router runs in fp32 even under bf16 autocast (ST-MoE section 3, "selective precision").
Experts are computed batched: assignments are sorted by expert, copied into an (E, capacity, C)
buffer and pushed through two ``bmm``s with the stacked weights (E, C, 4C) and (E, 4C, C).
Training also counts, per layer, the assignments routed to each expert and the dropped ones;
``MoELM.training_log()`` reports them (``reset_routing_stats()`` zeroes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptableWeight,
    Capabilities,
    CountsFlops,
    Embeds,
    RollsBackState,
    SelectsStateRows,
)
from lmbench.models.base import NeuralLM
from lmbench.models.gpt import (
    DecoderHidden,
    DecoderLayers,
    DecoderStarts,
    GPTConfig,
    GPTNetwork,
    KVCache,
    decoder_embed,
    decoder_flops_per_token,
)


@dataclass(frozen=True)
class MoEConfig(GPTConfig):
    """GPTConfig's fields (n_layer, n_head, n_embd, block_size, dropout, positions, bias,
    tokenizer, tokenizer_options, train) plus the mixture's."""

    n_expert: int = 4  # E, experts per layer, each an MLP C -> 4C -> C
    top_k: int = 2  # experts per token: 1 = Switch Transformer, 2 = Mixtral
    capacity_factor: float = 1.25  # training capacity per expert / even share (Switch: 1.25)
    balance_loss_weight: float = 0.01  # alpha of the load-balancing loss (Switch: 1e-2)
    router_z_loss_weight: float = 0.001  # c_z of the router z-loss (ST-MoE: 1e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_expert < 1 or not 1 <= self.top_k <= self.n_expert:
            raise LmbenchError(f"need n_expert >= 1 and 1 <= top_k <= n_expert, got n_expert "
                               f"{self.n_expert}, top_k {self.top_k}")
        if self.capacity_factor <= 0:
            raise LmbenchError(f"capacity_factor must be > 0, got {self.capacity_factor}")
        if min(self.balance_loss_weight, self.router_z_loss_weight) < 0:
            raise LmbenchError("balance_loss_weight and router_z_loss_weight must be >= 0")


def balance_loss(probs: torch.Tensor, experts: torch.Tensor, n_expert: int) -> torch.Tensor:
    """Switch eq. 4 without alpha: E * sum_i f_i P_i, from router probabilities (N, E) and the
    chosen experts (N, k). Equals 1 for uniform routing."""
    share = torch.bincount(experts.flatten(), minlength=n_expert).float() / experts.numel()  # f
    return n_expert * (share * probs.float().mean(0)).sum()


def z_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE eq. 5 without c_z: the mean over tokens of logsumexp(router logits)^2."""
    return torch.logsumexp(router_logits.float(), dim=-1).square().mean()


class ExpertLinear(nn.Module):
    """E independent Linear(d_in, d_out) layers applied at once: (E, N, d_in) -> (E, N, d_out)."""

    def __init__(self, n_expert: int, d_in: int, d_out: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_expert, d_in, d_out))  # (E, d_in, d_out)
        nn.init.normal_(self.weight, std=0.02)
        # Stored flat (E * d_out,) so the initialiser and weight decay treat it as a bias (1-D).
        self.bias = nn.Parameter(torch.zeros(n_expert * d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.bmm(x, self.weight)  # (E, N, d_out)
        if self.bias is not None:
            y = y + self.bias.view(self.weight.shape[0], 1, -1)
        return y


class MoEFeedForward(nn.Module):
    """Routed experts in place of a block's MLP: (B, T, C) -> (B, T, C); see the module doc."""

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        C, E = config.n_embd, config.n_expert
        self.n_expert, self.top_k = E, config.top_k
        self.capacity_factor = config.capacity_factor
        self.balance_weight, self.z_weight = config.balance_loss_weight, config.router_z_loss_weight
        self.router = nn.Linear(C, E, bias=False)  # W_r
        self.up = ExpertLinear(E, C, 4 * C, config.bias)  # names end in up/down like MLP's, so
        self.down = ExpertLinear(E, 4 * C, C, config.bias)  # init_gpt_weights scales `down`
        self.dropout = nn.Dropout(config.dropout)
        self.aux_loss: torch.Tensor | None = None  # of the last training forward pass
        # Training counts (not weights: outside state_dict, saved by MoELM.extra_arrays).
        self.register_buffer("n_routed", torch.zeros(E, dtype=torch.long), persistent=False)
        self.register_buffer("n_dropped", torch.zeros((), dtype=torch.long), persistent=False)

    def capacity(self, n_tokens: int, counts: torch.Tensor) -> int:
        """Slots per expert: the Switch capacity in training (never more than the N tokens, the
        most any expert can get); at inference the busiest expert's load, so nothing drops."""
        if not self.training:
            return int(counts.max())
        wanted = math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_expert)
        return min(n_tokens, wanted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        E, k = self.n_expert, self.top_k
        tokens = x.reshape(B * T, C)  # (N, C)
        N = tokens.shape[0]
        with torch.autocast(x.device.type, enabled=False):  # router in fp32
            router_logits = F.linear(tokens.float(), self.router.weight.float())  # (N, E)
        probs = torch.softmax(router_logits, dim=-1)  # (N, E)
        top_probs, experts = probs.topk(k, dim=-1)  # (N, k) each
        gates = top_probs if k == 1 else top_probs / top_probs.sum(-1, keepdim=True)  # (N, k)

        # Sorted dispatch. Assignment a = r N + n is token n's r-th choice; a stable sort by
        # expert keeps that priority order, and an assignment's slot is its rank in its expert.
        expert_of = experts.t().reshape(-1)  # (k N,)
        gate_of = gates.t().reshape(-1)  # (k N,)
        sorted_expert, order = torch.sort(expert_of, stable=True)  # (k N,) each
        counts = torch.bincount(expert_of, minlength=E)  # (E,)
        starts = counts.cumsum(0) - counts  # (E,) first sorted position of each expert
        slot = torch.arange(k * N, device=x.device) - starts[sorted_expert]  # (k N,)
        capacity = self.capacity(N, counts)
        kept = slot < capacity
        order, row = order[kept], (sorted_expert * capacity + slot)[kept]  # (K,) each
        token = order % N  # (K,)

        buffer = tokens.new_zeros(E * capacity, C).index_copy(0, row, tokens[token])
        hidden = F.gelu(self.up(buffer.view(E, capacity, C)))  # (E, capacity, 4C)
        expert_out = self.down(hidden).reshape(E * capacity, C)  # (E capacity, C)
        weighted = expert_out[row] * gate_of[order, None]  # (K, C)
        y = weighted.new_zeros(N, C).index_add(0, token, weighted)  # (N, C); dropped: 0

        if self.training:
            self.aux_loss = (self.balance_weight * balance_loss(probs, experts, E)
                             + self.z_weight * z_loss(router_logits))
            with torch.no_grad():
                self.n_routed += counts
                self.n_dropped += k * N - row.shape[0]
        else:
            self.aux_loss = None
        return self.dropout(y.view(B, T, C))


class MoENetwork(GPTNetwork):
    """``GPTNetwork`` (its forward and KV cache) with ``MoEFeedForward`` in every block."""

    def __init__(self, config: MoEConfig, vocab_size: int) -> None:
        super().__init__(config, vocab_size, lambda: MoEFeedForward(config))

    def moe_layers(self) -> list[MoEFeedForward]:
        return [block.mlp for block in self.blocks]


class MoELM(NeuralLM, SelectsStateRows, RollsBackState, Embeds, CountsFlops, DecoderHidden,
            DecoderLayers, DecoderStarts):
    """GPT decoder with top-k routed mixture-of-experts MLPs (Switch / Mixtral)."""

    name = "moe"
    config_class = MoEConfig

    @property
    def capabilities(self) -> Capabilities:
        block = self.config_.block_size
        return Capabilities(exact_likelihood=True, max_context=block, max_window=block)

    def build_network(self, vocab_size: int) -> MoENetwork:
        return MoENetwork(self.config_, vocab_size)

    def select_state(self, state: KVCache | None, rows: torch.Tensor) -> KVCache | None:
        """Rows of the KV cache (``gpt``'s): at inference no token's routing depends on the
        other rows, so a selected row continues exactly as it would alone."""
        return None if state is None else state.select(rows)

    def state_length(self, state: KVCache | None) -> int:
        """Tokens the cache covers (a soft prompt's or prefix's positions not counted)."""
        return 0 if state is None else state.tokens.shape[1]

    def rollback_state(self, state: KVCache | None, length: int) -> KVCache | None:
        """The cache cut to its first ``length`` tokens, as ``gpt``'s (routing at inference
        depends on the token alone, so the cut cache is what reading the prefix gives)."""
        return None if state is None or length == 0 else state.prefix(state.n_prefix + length)

    def feed_forward_weights(self, path: str):
        """The ``experts`` role: every expert's two stacked weights (the router stays frozen)."""
        return {"experts": (AdaptableWeight(f"{path}.up", kind="experts"),
                            AdaptableWeight(f"{path}.down", kind="experts"))}

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's output averaged over positions, as ``gpt``'s
        (``decoder_embed``)."""
        return decoder_embed(self, input_ids)

    def flops_per_token(self, context_len: float | None = None) -> float:
        """Forward FLOPs per token; only ``top_k`` of the ``n_expert`` experts run on a token."""
        c = self.config_
        experts = sum(layer.up.weight.numel() + layer.down.weight.numel()
                      for layer in self._network().moe_layers())
        idle = experts * (c.n_expert - c.top_k) // c.n_expert
        return decoder_flops_per_token(self, context_len, idle)

    def auxiliary_loss(self) -> torch.Tensor | float:
        """Balance plus z-loss of every layer from the last forward pass, if it was training."""
        if self.net is None or not self.net.training:
            return 0.0
        losses = [layer.aux_loss for layer in self.net.moe_layers() if layer.aux_loss is not None]
        return torch.stack(losses).sum() if losses else 0.0

    # ---------------------------------------------------------------------- routing statistics

    def routing_stats(self) -> dict:
        """Per layer, the share of routed assignments each expert got, and the share of all
        assignments (every layer) dropped for capacity, over training since the last reset."""
        layers = self._network().moe_layers()
        utilization = []
        for layer in layers:
            routed = layer.n_routed.double()
            total = float(routed.sum())
            utilization.append((routed / total).tolist() if total else [0.0] * len(routed))
        n_routed = sum(int(layer.n_routed.sum()) for layer in layers)
        n_dropped = sum(int(layer.n_dropped) for layer in layers)
        return {"expert_utilization": utilization,
                "dropped_token_rate": n_dropped / n_routed if n_routed else 0.0}

    def reset_routing_stats(self) -> None:
        for layer in self._network().moe_layers():
            layer.n_routed.zero_()
            layer.n_dropped.zero_()

    def training_log(self) -> dict | None:
        log = super().training_log()
        if self.net is None:
            return log
        return {**(log or {}), **self.routing_stats()}

    def extra_arrays(self) -> dict[str, np.ndarray]:
        layers = self._network().moe_layers()
        routed = torch.stack([m.n_routed for m in layers])  # (L, E)
        dropped = torch.stack([m.n_dropped for m in layers])  # (L,)
        return {"routing/n_routed": routed.cpu().numpy(),
                "routing/n_dropped": dropped.cpu().numpy()}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if "routing/n_routed" not in arrays:
            return
        for i, layer in enumerate(self._network().moe_layers()):
            layer.n_routed.copy_(torch.as_tensor(arrays["routing/n_routed"][i]))
            layer.n_dropped.copy_(torch.as_tensor(arrays["routing/n_dropped"][i]))
