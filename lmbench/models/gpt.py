"""``gpt``: a decoder-only pre-LayerNorm Transformer (Radford et al. 2018, 2019; nanoGPT's shape).

Token embeddings plus learned positions (GPT-2) or rotary positions (Su et al. 2021), ``n_layer``
pre-LN blocks of causal self-attention and an MLP (``lmbench.models.layers``), a final LayerNorm
and an output layer tied to the token embeddings (Press & Wolf 2017).

State is a ``KVCache``: per layer the keys and values of every token seen so far, so each new
token costs one attention row instead of a pass over the prefix. The model sees at most
``block_size`` tokens; when a cache would grow past that, the last ``block_size`` tokens are
recomputed from scratch (what a sliding window over the text would see). A cache may begin with
P positions that came from no ids (``DecoderStarts``: a soft prompt's embeddings, Lester et al.
2021, or learned per-layer keys and values, Li & Liang 2021); they stay when the window slides,
so such a stream reads at most ``block_size - P`` tokens.

``embed`` gives one vector per sequence, the mean over positions of the final LayerNorm's
output (MAUVE's features when a gpt is the judge; Pillutla et al. 2021 use a GPT-2's last hidden
state the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptsLayers,
    Capabilities,
    ComputesHidden,
    CountsFlops,
    Embeds,
    RollsBackState,
    SelectsStateRows,
    StartsFromEmbeddings,
    StartsFromKeyValues,
)
from lmbench.models.base import NeuralLM
from lmbench.models.layers import (
    Block,
    init_gpt_weights,
    join_roles,
    mlp_weights,
    self_attention_weights,
)
from lmbench.training.trainer import TrainConfig


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # longest context, in tokens
    dropout: float = 0.0
    positions: str = field(default="learned", metadata={"choices": ("learned", "rotary")})
    bias: bool = False  # biases in Linear and LayerNorm layers
    tokenizer: str = "char"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.positions not in ("learned", "rotary"):
            raise LmbenchError(f"positions must be 'learned' or 'rotary', got {self.positions!r}")
        head_dim = self.n_embd // self.n_head
        if self.n_embd % self.n_head or (self.positions == "rotary" and head_dim % 2):
            raise LmbenchError(f"n_embd {self.n_embd} must split into n_head {self.n_head} heads "
                               "(of even size for rotary positions)")
        if min(self.n_layer, self.n_head, self.n_embd, self.block_size) < 1:
            raise LmbenchError("n_layer, n_head, n_embd and block_size must be >= 1")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class KVCache:
    """Keys and values per layer, each (B, H, T, D), and the (B, T - n_prefix) ids they came
    from; the first ``n_prefix`` positions came from no ids (a soft prompt or a learned prefix,
    ``lmbench.peft``) and are kept whenever the context slides."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    tokens: torch.Tensor
    n_prefix: int = 0

    @property
    def length(self) -> int:
        """Positions the cache covers (the prefix's and the tokens')."""
        return self.n_prefix + self.tokens.shape[1]

    def select(self, rows: torch.Tensor) -> KVCache:
        """The cache of the batch rows ``rows`` (B',), a new cache (this one is unchanged)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.tokens.device)
        return KVCache([(k.index_select(0, rows), v.index_select(0, rows))
                        for k, v in self.layers], self.tokens.index_select(0, rows),
                       self.n_prefix)

    def prefix(self, length: int) -> KVCache:
        """The cache of the first ``length`` positions (at least the ``n_prefix`` ones), a new
        cache (this one is unchanged): keys and values depend only on earlier positions, so it
        is what reading them alone gives."""
        length = max(length, self.n_prefix)
        return KVCache([(k[:, :, :length], v[:, :, :length]) for k, v in self.layers],
                       self.tokens[:, :length - self.n_prefix], self.n_prefix)


class GPTNetwork(nn.Module):
    """The decoder; ``feed_forward`` builds each block's feed-forward module (default: the dense
    MLP), so families that differ only there (``moe``) reuse this network and its cache."""

    def __init__(self, config: GPTConfig, vocab_size: int,
                 feed_forward: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        rotary = config.positions == "rotary"
        self.token_embedding = nn.Embedding(vocab_size, config.n_embd)
        self.position_embedding = None if rotary else nn.Embedding(config.block_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, config.bias, rotary,
                  None if feed_forward is None else feed_forward())
            for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, vocab_size, bias=False)
        init_gpt_weights(self, config.n_layer)
        self.head.weight = self.token_embedding.weight  # tied input/output embeddings
        # Where every stream starts (``DecoderStarts.start_streams``): a callable B -> KVCache.
        self.stream_start: Callable[[int], KVCache] | None = None
        self.n_start_positions = 0  # positions of the context stream_start's state takes

    def forward(self, input_ids: torch.Tensor, state: KVCache | None = None,
                want_state: bool = True, n_logits: int | None = None
                ) -> tuple[torch.Tensor, KVCache | None]:
        """(B, T) ids after ``state`` -> (B, T, V) logits and the extended cache; with
        ``n_logits``, the logits of the last ``n_logits`` positions only (B, n_logits, V)."""
        hidden, state = self.hidden(input_ids, state, want_state, n_logits)
        return self.head(hidden), state  # (B, T or n_logits, V)

    def hidden(self, input_ids: torch.Tensor, state: KVCache | None = None,
               want_state: bool = True, n_last: int | None = None
               ) -> tuple[torch.Tensor, KVCache | None]:
        """(B, T) ids after ``state`` -> (B, T, C) final LayerNorm outputs (what ``head``
        reads) and the extended cache; with ``n_last``, the last ``n_last`` positions only.
        A stream (``state`` None) starts from ``stream_start(B)`` when one is set."""
        B, T = input_ids.shape
        if state is None and self.stream_start is not None:
            state = self.stream_start(B)
        block = self.config.block_size
        fixed = 0 if state is None else state.n_prefix
        if T > block - fixed:
            after = f" after a {fixed}-position prefix" if fixed else ""
            raise LmbenchError(f"gpt reads at most block_size = {block} tokens per call{after}, "
                               f"got {T}")
        if state is not None and state.length + T > block:
            # Sliding window: recompute the last tokens without the cache (keeping the prefix).
            history = torch.cat((state.tokens, input_ids), dim=1)[:, -(block - fixed):]
            start = state.prefix(fixed) if fixed else None
            # Only the new positions' outputs: the output layer is most of the cost.
            return self.hidden(history, start, want_state, n_last=T)
        return self.read(self.token_embedding(input_ids), state, want_state, n_last, input_ids)

    def read(self, x: torch.Tensor, state: KVCache | None, want_state: bool = True,
             n_last: int | None = None, input_ids: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, KVCache | None]:
        """(B, T, C) input embeddings after ``state`` -> (B, T or n_last, C) final LayerNorm
        outputs and the extended cache; ``input_ids`` None: the T positions came from no ids
        (a soft prompt), so they join the cache's ``n_prefix`` (only before any token)."""
        B, T, _ = x.shape
        past = 0 if state is None else state.length
        positions = torch.arange(past, past + T, device=x.device)
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions)
        x = self.dropout(x)  # (B, T, C)
        caches = []
        for i, block_module in enumerate(self.blocks):
            x, cache = block_module(x, positions, None if state is None else state.layers[i])
            caches.append(cache)
        if n_last is not None:
            x = x[:, -n_last:]
        hidden = self.ln_final(x)  # (B, T or n_last, C)
        if not want_state:
            return hidden, None
        n_prefix = 0 if state is None else state.n_prefix
        if input_ids is None:
            if state is not None and state.tokens.shape[1]:
                raise LmbenchError("input embeddings without ids only start a stream")
            tokens = torch.empty(B, 0, dtype=torch.long, device=x.device)
            return hidden, KVCache(caches, tokens, n_prefix + T)
        tokens = input_ids if state is None else torch.cat((state.tokens, input_ids), dim=1)
        return hidden, KVCache(caches, tokens, n_prefix)


class DecoderHidden(ComputesHidden):
    """``ComputesHidden`` for a ``GPTNetwork`` (gpt and moe): the final LayerNorm's output,
    (B, T, n_embd), and the tied output layer on it."""

    @property
    def hidden_size(self) -> int:
        return self.config_.n_embd

    def forward_hidden(self, input_ids, state=None):
        """(B, T) ids -> (B, T, C) final hidden states with gradients, and the new cache."""
        return self._network().hidden(self._device_ids(input_ids), state)

    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, V) through the output layer (tied to the embedding)."""
        return self._network().head(hidden)


class DecoderLayers(AdaptsLayers):
    """``AdaptsLayers`` for a ``GPTNetwork`` (gpt; moe replaces the ``mlp`` role): every
    block's attention (q, k, v, attn_out) and MLP; adapters after each block's attention and
    feed-forward sublayer."""

    def adaptable_weights(self):
        c = self.config_
        return join_roles(*(join_roles(self_attention_weights(f"blocks.{i}.attn", c.n_embd),
                                       self.feed_forward_weights(f"blocks.{i}.mlp"))
                            for i in range(c.n_layer)))

    def feed_forward_weights(self, path: str):
        """The roles of one block's feed-forward module at ``path``."""
        return mlp_weights(path)

    def default_adapted_roles(self) -> tuple[str, ...]:
        return ("q", "v")

    def adapter_sublayers(self) -> dict[str, int]:
        c = self.config_
        return {f"blocks.{i}.{part}": c.n_embd
                for i in range(c.n_layer) for part in ("attn", "mlp")}


class DecoderStarts(StartsFromEmbeddings, StartsFromKeyValues):
    """Prompt and prefix tuning's abilities for a ``GPTNetwork`` (gpt and moe): a stream can
    start after P input embeddings (read at positions 0..P-1, like P tokens) or from given
    per-layer keys and values (P positions no token produced); either way the cache keeps those
    P positions when the context slides, so the model reads at most block_size - P tokens."""

    def start_streams(self, start):
        net = self._network()
        net.stream_start = start
        with torch.no_grad():
            net.n_start_positions = 0 if start is None else start(1).n_prefix

    def input_embedding_weight(self) -> torch.Tensor:
        return self._network().token_embedding.weight  # (V, C)

    def state_from_embeddings(self, embeddings: torch.Tensor, state=None) -> KVCache:
        """(B, P, C) embeddings -> the cache after reading them at the stream's start."""
        return self._network().read(embeddings, state)[1]

    def attention_shape(self) -> tuple[int, int, int]:
        c = self.config_
        return c.n_layer, c.n_head, c.n_embd // c.n_head

    def state_from_key_values(self, layers) -> KVCache:
        """Per layer (keys, values), each (B, H, P, D) -> a cache of P positions and no ids."""
        keys = layers[0][0]
        return KVCache(list(layers), torch.empty(keys.shape[0], 0, dtype=torch.long,
                                                 device=keys.device), keys.shape[2])


class GPTLM(NeuralLM, SelectsStateRows, RollsBackState, Embeds, CountsFlops, DecoderHidden,
            DecoderLayers, DecoderStarts):
    """Decoder-only Transformer (GPT) with learned or rotary positions and a KV cache."""

    name = "gpt"
    config_class = GPTConfig

    @property
    def capabilities(self) -> Capabilities:
        block = self.config_.block_size
        return Capabilities(exact_likelihood=True, max_context=block, max_window=block)

    def build_network(self, vocab_size: int) -> GPTNetwork:
        return GPTNetwork(self.config_, vocab_size)

    def select_state(self, state: KVCache | None, rows: torch.Tensor) -> KVCache | None:
        """Rows of the KV cache (keys, values and the ids they came from)."""
        return None if state is None else state.select(rows)

    def state_length(self, state: KVCache | None) -> int:
        """Tokens the cache covers (a soft prompt's or prefix's positions not counted)."""
        return 0 if state is None else state.tokens.shape[1]

    def rollback_state(self, state: KVCache | None, length: int) -> KVCache | None:
        """The cache cut to its first ``length`` tokens (speculative decoding's rejections)."""
        return None if state is None or length == 0 else state.prefix(state.n_prefix + length)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """See ``decoder_embed``."""
        return decoder_embed(self, input_ids)

    def flops_per_token(self, context_len: float | None = None) -> float:
        """Forward FLOPs per token; see ``decoder_flops_per_token``."""
        return decoder_flops_per_token(self, context_len)


def decoder_embed(model: NeuralLM, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, D) float32 on the model's device: a ``GPTNetwork``'s final LayerNorm
    output averaged over the T positions. A sequence longer than ``block_size`` is read in
    consecutive chunks of ``block_size`` tokens, each from an empty context (from a soft prompt
    or prefix where streams start from one: chunks of block_size - P tokens, and a soft
    prompt's P outputs join the average)."""
    net = model.network()
    net.eval()
    ids = model._device_ids(input_ids)
    block = model.config_.block_size - net.n_start_positions
    hidden: list[torch.Tensor] = []  # (B, T_chunk, D) per chunk
    hook = net.ln_final.register_forward_hook(lambda module, args, out: hidden.append(out))
    try:
        with torch.inference_mode():
            for start in range(0, ids.shape[1], block):
                net(ids[:, start : start + block], None, want_state=False)
    finally:
        hook.remove()
    return torch.cat(hidden, dim=1).float().mean(dim=1)  # (B, D)


def decoder_flops_per_token(model: NeuralLM, context_len: float | None = None,
                            idle_params: int = 0) -> float:
    """Forward FLOPs per token of a ``GPTNetwork`` attending to ``context_len`` keys (default
    half a block, the mean over a full causal window), after Kaplan et al. 2020, Table 1:

        2 N_layers + 2 V C + 4 L C n_ctx

    N_layers: the non-embedding parameters that act on the token (``idle_params``, e.g. unrouted
    experts, left out); 2 V C: the output layer, tied to the embedding so not in N_layers;
    4 L C n_ctx: Q K^T and A V, each n_ctx multiply-adds per channel (Kaplan count Q K^T only).
    """
    config, net = model.config_, model._network()
    n_ctx = config.block_size / 2 if context_len is None else min(context_len, config.block_size)
    embeddings = net.token_embedding.weight.numel()
    if net.position_embedding is not None:
        embeddings += net.position_embedding.weight.numel()
    layers = model.n_params() - embeddings - idle_params
    head = net.token_embedding.weight.numel()  # V C: the head is tied to the embedding
    return 2.0 * layers + 2.0 * head + 4.0 * config.n_layer * config.n_embd * n_ctx
