"""Transformer building blocks shared by the Transformer families (nothing family-specific here).

- Self-attention, softmax(Q K^T / sqrt(d_k)) V (Vaswani et al. 2017, eq. 1), through
  ``attention``: by default ``torch.nn.functional.scaled_dot_product_attention`` (flash /
  memory-efficient kernels where the platform has them), or the formula written out
  (``explicit_attention``) inside ``with attention_backend("explicit"):``. Causal by default,
  with an optional key/value cache for incremental decoding; ``causal=False`` gives the
  bidirectional attention of an encoder (BERT), with an optional (B, T) key mask that hides
  padding.
- Rotary position embeddings (Su et al. 2021, RoFormer, eq. 34): pairs of channels of q and k
  rotated by angle m * theta_i, theta_i = 10000^(-2i/d), so q_m . k_n depends on m - n only.
- Pre-LayerNorm residual blocks (Xiong et al. 2020; GPT-2): x + Attn(LN(x)), x + MLP(LN(x)).
- Unmasked attention for encoder-decoder models (Vaswani et al. 2017, section 3.2.3): queries
  from x, keys and values from a memory (cross-attention; with memory = x, an encoder's
  bidirectional self-attention), and sinusoidal positions (section 3.5):
  PE(pos, 2i) = sin(pos / 10000^(2i/C)), PE(pos, 2i+1) = cos(pos / 10000^(2i/C)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.core.interface import AdaptableWeight

ATTENTION_BACKENDS = ("sdpa", "explicit")
_attention_backend = "sdpa"  # module-level switch; change it with attention_backend(...)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                       is_causal: bool = False) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k) + M) V written out (Vaswani et al. 2017, eq. 1), with the
    arguments and masking rules of ``F.scaled_dot_product_attention``: q (B, H, T_q, D), k and
    v (B, H, T_k, D); a boolean ``attn_mask`` is True where a query may attend, a float one is
    added to the scores; ``is_causal`` lets query i see keys 0..i. Materialises the
    (B, H, T_q, T_k) score matrix, which the fused kernels avoid."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T_q, T_k)
    if is_causal:
        T_q, T_k = scores.shape[-2:]
        allowed = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    return weights.to(v.dtype) @ v  # (B, H, T_q, D)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
              is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention by the selected backend (``attention_backend``)."""
    if _attention_backend == "explicit":
        return explicit_attention(q, k, v, attn_mask, dropout_p, is_causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                          is_causal=is_causal)


@contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Within the block every attention layer uses ``name``: ``"sdpa"`` (the default,
    ``F.scaled_dot_product_attention``) or ``"explicit"`` (``explicit_attention``). The
    switch is process-wide (not per thread) and restored on exit."""
    global _attention_backend
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {ATTENTION_BACKENDS}")
    previous, _attention_backend = _attention_backend, name
    try:
        yield
    finally:
        _attention_backend = previous


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float = 10000.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, head_dim / 2), for integer ``positions`` (T,)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
    inverse = base ** (-exponents / head_dim)  # (D/2,)
    angles = positions.float()[:, None] * inverse[None, :]  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x (B, H, T, D) by the tables (T, D/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2) each
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; ``causal=False`` lets every token see every other token."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, rotary: bool,
                 causal: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.rotary, self.dropout = rotary, dropout
        self.causal = causal
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                key_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C) at absolute ``positions`` (T,), after ``cache`` (keys, values), each
        (B, H, T_past, D). Returns y (B, T, C) and the cache extended by these T tokens.
        Bidirectional attention takes no cache; its ``key_mask`` (B, T) is True where a token
        may be attended to (False: padding)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if self.rotary:  # (B, H, T, D)
            cos, sin = rotary_tables(positions, self.head_dim)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache[0].shape[2]
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        dropout = self.dropout if self.training else 0.0
        if not self.causal:
            if cache is not None:
                raise ValueError("bidirectional attention keeps no key/value cache")
            allowed = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
            y = attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
        elif past == 0:
            y = attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # query i (absolute past + i) sees keys 0..past + i
            keys, queries = (torch.arange(n, device=x.device) for n in (past + T, T))
            allowed = keys[None, :] <= past + queries[:, None]  # (T, past + T)
            y = attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y)), (k, v)


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(C, 4C), GELU, Linear(4C, C) (Vaswani et al. eq. 2)."""

    def __init__(self, n_embd: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.up = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.down = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + FeedForward(LN(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, rotary: bool,
                 feed_forward: nn.Module | None = None, causal: bool = True) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias, rotary, causal)
        self.ln_mlp = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = feed_forward if feed_forward is not None else MLP(n_embd, dropout, bias)

    def forward(self, x, positions, cache=None, key_mask=None):
        attended, cache = self.attn(self.ln_attn(x), positions, cache, key_mask)
        x = x + attended
        return x + self.mlp(self.ln_mlp(x)), cache


def init_gpt_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
    for name, parameter in module.named_parameters():
        if parameter.dim() < 2:
            continue
        residual = name.endswith(("proj.weight", "down.weight"))
        std = 0.02 / math.sqrt(2 * n_layer) if residual else 0.02
        nn.init.normal_(parameter, mean=0.0, std=std)
    for submodule in module.modules():
        if isinstance(submodule, nn.Linear) and submodule.bias is not None:
            nn.init.zeros_(submodule.bias)


def sinusoidal_positions(positions: torch.Tensor, n_embd: int, base: float = 10000.0
                         ) -> torch.Tensor:
    """(T,) integer positions -> (T, n_embd) table, channel 2i = sin(pos * theta_i) and
    2i + 1 = cos(pos * theta_i), theta_i = base^(-2i/n_embd) (Vaswani et al. 2017, 3.5)."""
    cos, sin = rotary_tables(positions, n_embd, base)  # (T, C/2) each, the same angles
    return torch.stack((sin, cos), dim=-1).flatten(-2)  # (T, C)


class CrossAttention(nn.Module):
    """Unmasked multi-head attention: queries from x (B, T, C), keys and values from a memory
    (B, S, C) (Vaswani et al. 2017, 3.2.3). ``keys_values(memory)`` projects the memory once, so
    a decoder reuses it for every new token; ``attn(x, attn.keys_values(x))`` is bidirectional
    self-attention (an encoder's)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.n_head, self.head_dim, self.dropout = n_head, n_embd // n_head, dropout
        self.query = nn.Linear(n_embd, n_embd, bias=bias)
        self.key_value = nn.Linear(n_embd, 2 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, S, C) -> keys and values, each (B, H, S, D)."""
        keys, values = self.key_value(memory).split(memory.shape[-1], dim=2)
        return self._heads(keys), self._heads(values)

    def forward(self, x: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor]
                ) -> torch.Tensor:
        """x (B, T, C) attends to every memory position -> y (B, T, C)."""
        B, T, C = x.shape
        dropout = self.dropout if self.training else 0.0
        y = attention(self._heads(self.query(x)), *keys_values,
                      dropout_p=dropout)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


# Where PEFT adapts these layers (``lmbench.core.interface.AdaptsLayers``), by role ------------

Roles = dict[str, tuple[AdaptableWeight, ...]]


def self_attention_weights(path: str, n_embd: int) -> Roles:
    """A ``CausalSelfAttention`` at ``path``: q, k, v as the three row blocks of the fused
    ``qkv`` layer, ``attn_out`` its output projection."""
    qkv = f"{path}.qkv"
    return {"q": (AdaptableWeight(qkv, rows=(0, n_embd)),),
            "k": (AdaptableWeight(qkv, rows=(n_embd, 2 * n_embd)),),
            "v": (AdaptableWeight(qkv, rows=(2 * n_embd, 3 * n_embd)),),
            "attn_out": (AdaptableWeight(f"{path}.proj"),)}


def cross_attention_weights(path: str, n_embd: int) -> Roles:
    """A ``CrossAttention`` at ``path``: q its ``query`` layer, k and v the row blocks of the
    fused ``key_value`` layer, ``attn_out`` its output projection."""
    key_value = f"{path}.key_value"
    return {"q": (AdaptableWeight(f"{path}.query"),),
            "k": (AdaptableWeight(key_value, rows=(0, n_embd)),),
            "v": (AdaptableWeight(key_value, rows=(n_embd, 2 * n_embd)),),
            "attn_out": (AdaptableWeight(f"{path}.proj"),)}


def mlp_weights(path: str) -> Roles:
    """An ``MLP`` at ``path``: both of its layers are the ``mlp`` role."""
    return {"mlp": (AdaptableWeight(f"{path}.up"), AdaptableWeight(f"{path}.down"))}


def join_roles(*parts: Roles) -> Roles:
    """The union of several layers' roles, role by role, in order."""
    joined: dict[str, tuple[AdaptableWeight, ...]] = {}
    for part in parts:
        for role, weights in part.items():
            joined[role] = joined.get(role, ()) + weights
    return joined
