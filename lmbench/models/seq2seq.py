"""``seq2seq``: an encoder-decoder Transformer (Vaswani et al. 2017) that predicts the next
segment of the stream from the previous one.

Architecture. One token embedding E (V, C) is shared by the encoder input, the decoder input and
the output layer (Press & Wolf 2017; Vaswani et al. 3.4), inputs scaled as E[x] * sqrt(C) plus
sinusoidal positions (3.5), PE(pos, 2i) = sin(pos / 10000^(2i/C)), PE(pos, 2i+1) = cos(...).
``n_layer`` encoder blocks x + Attn(LN x, LN x), x + FFN(LN x) read the source; ``n_layer``
decoder blocks x + CausalAttn(LN x), x + Attn(LN x, memory), x + FFN(LN x) read the target,
where Attn(q, m) = softmax(q W_Q (m W_K)^T / sqrt(d_k)) m W_V (eq. 1; cross-attention, 3.2.3)
and memory = LN(encoder output). Pre-LN, as in ``gpt``, instead of the paper's post-LN (Xiong
et al. 2020: pre-LN trains without a long learning-rate warm-up).

Conditioning, with L = ``segment_len``. The interface's inputs u_0, u_1, ... are the targets
y_0, y_1, ... shifted right by one behind the boundary id b: u_0 = b, u_t = y_{t-1}.
Positions are cut into segments of L from the first position of the stream: segment k holds
t = kL .. kL+L-1. Its source is the L inputs ending at its first one,

    s_k = (u_{kL-L+1}, ..., u_{kL}),  u_t = b for t < 0   (s_0 = (b, ..., b, u_0 = b))

which is segment k-1's targets y_{kL-L..kL-1} (segment 0 sees nothing but the boundary). Then

    p(y_t | u_0..u_t) = Decoder(u_{kL}, ..., u_t ; Encoder(s_k))[t - kL],   k = floor(t / L)

so the decoder input is the source's last token followed by the segment's targets but the last
(teacher forcing), decoder positions restart at 0 in each segment, and token t sees L + (t - kL)
tokens of context: L at a segment's start, 2L - 1 at its end, never more.

State (``Seq2SeqState``): the decoder inputs of the current segment so far (its length is the
position in the segment) and, while the segment is incomplete, the decoder's self-attention cache
and the encoded source projected to each layer's cross-attention keys and values. The input that
follows a complete segment carries that segment's last target, so it completes the next source:
the source is encoded and the decoder cache starts afresh. One call over many tokens decodes all
its whole segments side by side in one teacher-forced pass; one-token calls use the cache.
Because segments are counted from the start of the stream, ``carries_state`` is true: the
evaluator scores a stream in order, handing the state from window to window, so every token is
scored exactly once with the conditioning above.

Training reads the same way. The trainer reads a ``carries_state`` family's train split as
``batch_size`` streams in order, ``seq_len`` tokens a step, handing back the state (the
``encoder_decoder`` objective of ``lmbench.training.objectives``, this family's default);
``seq_len`` is a multiple of L (default 2L), so each window is whole segments: with the default,
the second half is decoded from the first half as source, and the first half from the previous
window's second half (the carried state; at an epoch's start the streams start afresh, u_t = b
for t < 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import register_pytree_node

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import AdaptsLayers, Capabilities, ComputesHidden, SelectsStateRows
from lmbench.models.base import NeuralLM
from lmbench.models.layers import (
    MLP,
    CausalSelfAttention,
    CrossAttention,
    cross_attention_weights,
    init_gpt_weights,
    join_roles,
    mlp_weights,
    self_attention_weights,
    sinusoidal_positions,
)
from lmbench.training.objectives import EncoderDecoder
from lmbench.training.trainer import TrainConfig


def _seq2seq_train_defaults() -> TrainConfig:
    return TrainConfig(seq_len=64)  # two segments of the default segment_len


@dataclass(frozen=True)
class Seq2SeqConfig:
    n_layer: int = 3  # encoder blocks, and as many decoder blocks
    n_head: int = 4
    n_embd: int = 128
    segment_len: int = 32  # tokens per segment: the source length and the target length
    dropout: float = 0.0
    tokenizer: str = "char"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=_seq2seq_train_defaults)

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_head, self.n_embd, self.segment_len) < 1:
            raise LmbenchError("n_layer, n_head, n_embd and segment_len must be >= 1")
        if self.n_embd % self.n_head or self.n_embd % 2:
            raise LmbenchError(f"n_embd {self.n_embd} must be even (sinusoidal positions) and "
                               f"split into n_head {self.n_head} heads")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.train.seq_len % self.segment_len:
            raise LmbenchError(
                f"train.seq_len {self.train.seq_len} must be a multiple of segment_len "
                f"{self.segment_len} (training reads whole segments); e.g. train.seq_len = "
                f"{2 * self.segment_len}")


KeysValues = tuple[torch.Tensor, torch.Tensor]  # each (B, H, S, D)


@dataclass
class Seq2SeqState:
    """Where a stream stands: see the module docstring."""

    tokens: torch.Tensor  # (B, j) decoder inputs of the current segment so far, 1 <= j <= L
    # Per decoder layer: the cross-attention keys and values of the encoded source, and the
    # self-attention keys and values of the j tokens. None once the segment is complete (j = L):
    # the next input starts a new segment with a new source.
    memory: list[KeysValues] | None = None
    layers: list[KeysValues] | None = None

    @property
    def position(self) -> int:
        """Tokens of the current segment decoded so far."""
        return self.tokens.shape[1]

    def select(self, rows: torch.Tensor) -> Seq2SeqState:
        """The state of the batch rows ``rows`` (B',), a new state (this one is unchanged)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.tokens.device)

        def pick(pairs: list[KeysValues] | None) -> list[KeysValues] | None:
            return None if pairs is None else [(k.index_select(0, rows), v.index_select(0, rows))
                                               for k, v in pairs]

        return Seq2SeqState(self.tokens.index_select(0, rows), pick(self.memory),
                            pick(self.layers))


# A pytree node, so the trainer detaches and checkpoints the carried state as plain tensors
# (a checkpoint holds no objects: it is read with torch.load(..., weights_only=True)).
register_pytree_node(
    Seq2SeqState, lambda state: ([state.tokens, state.memory, state.layers], None),
    lambda children, _: Seq2SeqState(*children),
    serialized_type_name="lmbench.models.seq2seq.Seq2SeqState")


class EncoderBlock(nn.Module):
    """Pre-LN: x + Attn(LN x, LN x) (bidirectional), then x + FFN(LN x)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.ln_attn = nn.LayerNorm(C)
        self.attn = CrossAttention(C, config.n_head, config.dropout, bias=False)
        self.ln_mlp = nn.LayerNorm(C)
        self.mlp = MLP(C, config.dropout, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_attn(x)
        x = x + self.attn(h, self.attn.keys_values(h))
        return x + self.mlp(self.ln_mlp(x))


class DecoderBlock(nn.Module):
    """Pre-LN: x + CausalAttn(LN x), x + Attn(LN x, memory), then x + FFN(LN x)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.ln_self = nn.LayerNorm(C)
        self.self_attn = CausalSelfAttention(C, config.n_head, config.dropout, False, False)
        self.ln_cross = nn.LayerNorm(C)
        self.cross_attn = CrossAttention(C, config.n_head, config.dropout, bias=False)
        self.ln_mlp = nn.LayerNorm(C)
        self.mlp = MLP(C, config.dropout, bias=False)

    def forward(self, x, positions, memory: KeysValues, cache: KeysValues | None = None):
        attended, cache = self.self_attn(self.ln_self(x), positions, cache)
        x = x + attended
        x = x + self.cross_attn(self.ln_cross(x), memory)
        return x + self.mlp(self.ln_mlp(x)), cache


class Seq2SeqNetwork(nn.Module):
    """Encoder, decoder and the segment bookkeeping of the module docstring."""

    def __init__(self, config: Seq2SeqConfig, vocab_size: int, boundary_id: int) -> None:
        super().__init__()
        self.config, self.boundary_id = config, boundary_id
        C = config.n_embd
        self.token_embedding = nn.Embedding(vocab_size, C)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layer))
        self.ln_memory = nn.LayerNorm(C)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(C)
        self.head = nn.Linear(C, vocab_size, bias=False)
        init_gpt_weights(self, 2 * config.n_layer)  # residual branches of encoder and decoder
        # Vaswani et al. 3.4 (fairseq's init): E ~ N(0, 1/C) and inputs E[x] * sqrt(C), so a
        # token vector is as large as its position code and tied logits start near unit scale.
        nn.init.normal_(self.token_embedding.weight, std=C ** -0.5)
        self.head.weight = self.token_embedding.weight  # one matrix: encoder, decoder, output

    def _embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start.. -> (B, T, C)."""
        C = self.config.n_embd
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        positions = sinusoidal_positions(positions, C)  # (T, C), on ids' device
        return self.dropout(self.token_embedding(ids) * math.sqrt(C) + positions)

    def encode(self, sources: torch.Tensor) -> list[KeysValues]:
        """(B, L) sources -> per decoder layer the cross-attention keys and values of the memory."""
        x = self._embed(sources)  # (B, L, C)
        for block in self.encoder:
            x = block(x)
        memory = self.ln_memory(x)  # (B, L, C)
        return [block.cross_attn.keys_values(memory) for block in self.decoder]

    def decode(self, ids: torch.Tensor, memory: list[KeysValues],
               caches: list[KeysValues] | None = None, start: int = 0
               ) -> tuple[torch.Tensor, list[KeysValues]]:
        """(B, T) decoder inputs at segment positions start.. after the self-attention
        ``caches`` -> (B, T, V) logits and the extended caches."""
        hidden, caches = self.decode_hidden(ids, memory, caches, start)
        return self.head(hidden), caches  # (B, T, V)

    def decode_hidden(self, ids: torch.Tensor, memory: list[KeysValues],
                      caches: list[KeysValues] | None = None, start: int = 0
                      ) -> tuple[torch.Tensor, list[KeysValues]]:
        """``decode`` before the output layer: (B, T, C) final LayerNorm outputs and the
        extended caches."""
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self._embed(ids, start)  # (B, T, C)
        new_caches = []
        for i, block in enumerate(self.decoder):
            x, cache = block(x, positions, memory[i], None if caches is None else caches[i])
            new_caches.append(cache)
        return self.ln_final(x), new_caches  # (B, T, C)

    def forward(self, input_ids: torch.Tensor, state: Seq2SeqState | None = None,
                want_state: bool = True) -> tuple[torch.Tensor, Seq2SeqState | None]:
        """(B, T) inputs continuing the stream of ``state`` -> (B, T, V) logits and the state."""
        hidden, state = self.hidden(input_ids, state, want_state)
        return self.head(hidden), state  # (B, T, V)

    def hidden(self, input_ids: torch.Tensor, state: Seq2SeqState | None = None,
               want_state: bool = True) -> tuple[torch.Tensor, Seq2SeqState | None]:
        """(B, T) inputs continuing the stream of ``state`` -> (B, T, C) the decoder's final
        hidden states and the state."""
        B, T = input_ids.shape
        L = self.config.segment_len
        pieces = []
        if state is not None and state.position < L:  # finish the current segment, cached
            n = min(L - state.position, T)
            outputs, state = self._continue(input_ids[:, :n], state)
            pieces.append(outputs)
            input_ids = input_ids[:, n:]
        if input_ids.shape[1] > 0:  # the rest starts new segments
            previous = (torch.full((B, L), self.boundary_id, device=input_ids.device)
                        if state is None else state.tokens)  # (B, L), a complete segment
            outputs, state = self._new_segments(input_ids, previous)
            pieces.append(outputs)
        return torch.cat(pieces, dim=1), state if want_state else None

    def _continue(self, ids: torch.Tensor, state: Seq2SeqState
                  ) -> tuple[torch.Tensor, Seq2SeqState]:
        """(B, n) more inputs of the current segment, n <= L - position -> (B, n, C) decoder
        outputs and the state."""
        outputs, caches = self.decode_hidden(ids, state.memory, state.layers,
                                             start=state.position)
        tokens = torch.cat((state.tokens, ids), dim=1)
        if tokens.shape[1] == self.config.segment_len:
            return outputs, Seq2SeqState(tokens)  # complete: only its tokens matter now
        return outputs, Seq2SeqState(tokens, state.memory, caches)

    def _new_segments(self, ids: torch.Tensor, previous: torch.Tensor
                      ) -> tuple[torch.Tensor, Seq2SeqState]:
        """(B, R) inputs starting a segment, after the complete segment ``previous`` (B, L):
        all S = ceil(R / L) segments are encoded and decoded side by side, (B S, L) rows;
        -> (B, R, C) decoder outputs and the state."""
        B, R = ids.shape
        L = self.config.segment_len
        S = -(-R // L)
        W = L if S > 1 else R  # width of a row: the last segment is padded to L if S > 1
        # Segment s starts at input s L; its source is inputs s L - L + 1 .. s L, i.e. positions
        # s L + 1 .. s L + L of (previous, ids).
        sources = torch.cat((previous, ids), dim=1)[:, 1 : 1 + S * L]  # (B, S L)
        memory = self.encode(sources.reshape(B * S, L))  # per layer (B S, H, L, D)
        rows = F.pad(ids, (0, S * W - R), value=self.boundary_id).view(B * S, W)  # (B S, W)
        outputs, caches = self.decode_hidden(rows, memory)  # (B S, W, C)
        outputs = outputs.view(B, S * W, -1)[:, :R]  # (B, R, C)
        # The state: the last segment's rows, cut to its real length.
        n_last = R - (S - 1) * L

        def last(t: torch.Tensor, width: int | None = None) -> torch.Tensor:
            t = t.view(B, S, *t.shape[1:])[:, -1]  # (B, ...) of segment S - 1
            return (t if width is None else t[..., :width, :]).contiguous()

        tokens = rows.view(B, S, W)[:, -1, :n_last].contiguous()  # (B, n_last)
        if n_last == L:
            return outputs, Seq2SeqState(tokens)
        return outputs, Seq2SeqState(tokens, [(last(k), last(v)) for k, v in memory],
                                    [(last(k, n_last), last(v, n_last)) for k, v in caches])


class Seq2SeqLM(NeuralLM, SelectsStateRows, ComputesHidden, AdaptsLayers):
    """Encoder-decoder Transformer: each segment decoded from the encoded previous segment."""

    name = "seq2seq"
    config_class = Seq2SeqConfig

    @property
    def hidden_size(self) -> int:
        return self.config_.n_embd

    def forward_hidden(self, input_ids, state=None):
        """(B, T) ids -> (B, T, C) the decoder's final LayerNorm outputs, and the state."""
        return self._network().hidden(self._device_ids(input_ids), state)

    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, V) through the output layer (tied to the embedding)."""
        return self._network().head(hidden)

    def adaptable_weights(self):
        """q, k, v, attn_out of every attention (the encoder's self-attention, the decoder's
        causal self-attention and its cross-attention) and every MLP."""
        c = self.config_
        parts = []
        for i in range(c.n_layer):
            parts += [cross_attention_weights(f"encoder.{i}.attn", c.n_embd),
                      mlp_weights(f"encoder.{i}.mlp"),
                      self_attention_weights(f"decoder.{i}.self_attn", c.n_embd),
                      cross_attention_weights(f"decoder.{i}.cross_attn", c.n_embd),
                      mlp_weights(f"decoder.{i}.mlp")]
        return join_roles(*parts)

    def default_adapted_roles(self) -> tuple[str, ...]:
        return ("q", "v")

    def adapter_sublayers(self) -> dict[str, int]:
        """After every attention and feed-forward sublayer of the encoder and the decoder."""
        c = self.config_
        names = [f"encoder.{i}.{part}" for i in range(c.n_layer) for part in ("attn", "mlp")]
        names += [f"decoder.{i}.{part}" for i in range(c.n_layer)
                  for part in ("self_attn", "cross_attn", "mlp")]
        return dict.fromkeys(names, c.n_embd)

    @property
    def capabilities(self) -> Capabilities:
        # Unbounded windows: the state carries the segmentation of the stream from its start.
        return Capabilities(exact_likelihood=True, max_context=None, carries_state=True)

    def build_network(self, vocab_size: int) -> Seq2SeqNetwork:
        return Seq2SeqNetwork(self.config_, vocab_size, self.tokenizer.boundary_id)

    def select_state(self, state: Seq2SeqState | None, rows: torch.Tensor
                     ) -> Seq2SeqState | None:
        """Rows of the segment's tokens, encoded source and decoder cache."""
        return None if state is None else state.select(rows)

    def default_objective(self) -> EncoderDecoder:
        """Next-token cross-entropy of every target under the scoring conditioning (module
        docstring): the (B, T) window is T / L whole segments of B in-order streams, the first
        decoded from the carried state's last segment, each next one from the one before."""
        return EncoderDecoder(segment_len=self.config_.segment_len)
