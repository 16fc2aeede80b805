"""``bert``: an encoder-only Transformer masked language model (Devlin et al. 2019, BERT).

Token embeddings plus learned positions, ``n_layer`` pre-LN blocks of *bidirectional* self-
attention and an MLP (``lmbench.models.layers`` with ``causal=False``; pre-LN as in Xiong et al.
2020 rather than BERT's post-LN, for warm-up-free stability), a final LayerNorm and an output
layer tied to the token embeddings (Press & Wolf 2017). The tokenizers have no [MASK] token, so
the network owns one extra embedding row, ``mask_id = V``; it is never predicted (the logits
cover the V real tokens only).

Training (Devlin et al. §3.1, "Task #1: Masked LM"): in each window, every position is chosen
with probability ``mask_rate`` (0.15); a chosen token becomes [MASK] with probability 0.8, a
uniformly random token with 0.1, and stays itself with 0.1. The loss is the cross-entropy of the
original tokens at the chosen positions only:

    L = -1/|M| Σ_{t ∈ M} log p(x_t | x̃),   x̃: the corrupted window, M: the chosen positions

The loss is ``lmbench.training.objectives.MaskedLM`` (with ``corrupt``), this family's
``default_objective()``. The draws come from torch's global generator, which the trainer seeds
with ``train.seed`` and saves / restores in its checkpoints, so masks are reproducible and a
resumed run draws the same.

Scoring is the pseudo-log-likelihood (Salazar et al. 2020, eq. 2), not a likelihood (so
``exact_likelihood = False`` and the numbers are never ranked as perplexity):

    PLL(W) = Σ_t log p(w_t | W_{\\t}),    W_{\\t} = W with w_t replaced by [MASK]

For ``bpe`` pieces it is PLL-word-l2r (Kauf & Ivanova 2023): when scoring piece t of a word, the
pieces of the same word to its right are masked too, so a word's pieces are scored left to right
(the chain rule within the word) and a long word cannot predict its own pieces from each other.
A piece starts a word if its byte-level string starts with 'Ġ' (space) or 'Ċ' (newline), or it
follows a piece ending in 'Ċ' or the boundary. ``char``, ``byte`` and ``word`` tokens are each a
word of their own (plain PLL): for characters, masking the rest of the word would turn the score
into a left-to-right word model, not a masked one.

What a call sees. The window's tokens are ``state`` (ids seen before, if any), ``input_ids[:, 0]``
and the targets (an ignored, -1 target is read from the next input); positions after a row's last
scored target are padding and hidden. The last ``block_size`` of these are the context, and each
scored target is predicted from all of them with itself (and its word's later pieces) masked,
batched as one masked copy per scored target, ``score_chunk_tokens`` tokens per forward pass.

Right context under the evaluator. ``plan_windows`` scores the tail of each window: with
L = block_size and C = max_context = L // 2, a window scores its last L - C tokens, so the k-th
scored token from the end sees k - 1 tokens of right context (none for the last token of a
window, up to L - C - 1 for the first) and at least C tokens of left context; tokens of the first
window see the whole window. The PLL reported is therefore over a mix of left-only and two-sided
contexts, weaker than a sentence-level PLL.

Generation fills masks left to right: ``logits`` gives, for each input position t, the
distribution at a [MASK] appended after the prefix (``state`` + ``input_ids[:, :t+1]``, its last
``block_size - 1`` ids). The state is those ids. O(T) forward passes, no cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import AdaptsLayers, Capabilities, ComputesHidden, SelectsStateRows
from lmbench.models.base import NeuralLM
from lmbench.models.layers import (
    Block,
    init_gpt_weights,
    join_roles,
    mlp_weights,
    self_attention_weights,
)
from lmbench.training.objectives import MaskedLM as MaskedLMObjective
from lmbench.training.objectives import corrupt  # noqa: F401  (BERT's masking, with its objective)
from lmbench.training.trainer import TrainConfig


@dataclass(frozen=True)
class BertConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # longest window, in tokens
    dropout: float = 0.0
    mask_rate: float = 0.15  # fraction of training positions predicted
    tokenizer: str = "char"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise LmbenchError(f"n_embd {self.n_embd} must split into n_head {self.n_head} heads")
        if min(self.n_layer, self.n_head, self.n_embd) < 1 or self.block_size < 2:
            raise LmbenchError("n_layer, n_head and n_embd must be >= 1 and block_size >= 2")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.mask_rate < 1:
            raise LmbenchError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.train.seq_len > self.block_size:
            raise LmbenchError(f"bert reads at most block_size = {self.block_size} tokens; "
                               f"train.seq_len = {self.train.seq_len} is longer (lower it)")


class BertNetwork(nn.Module):
    def __init__(self, config: BertConfig, vocab_size: int) -> None:
        super().__init__()
        self.config, self.vocab_size, self.mask_id = config, vocab_size, vocab_size
        self.token_embedding = nn.Embedding(vocab_size + 1, config.n_embd)  # row V: [MASK]
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, False, False, causal=False)
            for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.n_embd, bias=False)
        init_gpt_weights(self, config.n_layer)

    def forward(self, input_ids: torch.Tensor, key_mask: torch.Tensor | None = None,
                read: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids (``mask_id`` allowed) -> (B, T, V) logits, or (N, V) at the N positions
        where ``read`` (B, T) is True, in row-major order. ``key_mask`` (B, T): False = padding."""
        x = self.hidden(input_ids, key_mask)  # (B, T, C)
        if read is not None:
            x = x[read]  # (N, C): only the predicted positions pay for the output layer
        return self.scores(x)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) final hidden states -> (..., V) logits (tied; no [MASK] logit)."""
        return F.linear(hidden, self.token_embedding.weight[: self.vocab_size])

    def hidden(self, input_ids: torch.Tensor, key_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """(B, T) ids -> (B, T, C) the encoder's final LayerNorm outputs."""
        B, T = input_ids.shape
        if T > self.config.block_size:
            raise LmbenchError(f"bert reads at most block_size = {self.config.block_size} tokens "
                               f"per call, got {T}")
        positions = torch.arange(T, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)  # (B, T, C)
        x = self.dropout(x)
        for block in self.blocks:
            x, _ = block(x, positions, None, key_mask)
        return self.ln_final(x)


class MaskedLM(NeuralLM, SelectsStateRows, ComputesHidden, AdaptsLayers):
    """Encoder-only masked LM (BERT), scored by pseudo-log-likelihood; see the module docstring."""

    name = "bert"
    config_class = BertConfig
    score_chunk_tokens = 16_384  # tokens per forward pass over the masked copies

    @property
    def capabilities(self) -> Capabilities:
        block = self.config_.block_size
        return Capabilities(exact_likelihood=False, max_context=block // 2, max_window=block)

    def build_network(self, vocab_size: int) -> BertNetwork:
        return BertNetwork(self.config_, vocab_size)

    @property
    def hidden_size(self) -> int:
        return self.config_.n_embd

    def forward_hidden(self, input_ids, state=None):
        """(B, T) ids -> (B, T, C) the encoder's final LayerNorm outputs, every position read
        unmasked with gradients; ``state`` (B, S) ids read before (as ``logits`` returns them)
        come first in the window, which keeps the last ``block_size`` ids. The new state is
        the window's last ``block_size - 1`` ids."""
        ids = self._device_ids(input_ids)
        T = ids.shape[1]
        seen = ids if state is None else torch.cat((self._device_ids(state), ids), dim=1)
        window = seen[:, -self.config_.block_size:]
        if T > window.shape[1]:
            raise LmbenchError(f"bert reads at most block_size = {self.config_.block_size} "
                               f"tokens per call, got {T}")
        hidden = self._network().hidden(window)[:, -T:]  # (B, T, C)
        return hidden, seen[:, -(self.config_.block_size - 1):]

    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, V) through the output layer tied to the embedding."""
        return self._network().scores(hidden)

    def adaptable_weights(self):
        """Every block's bidirectional attention (q, k, v, attn_out) and MLP."""
        c = self.config_
        return join_roles(*(join_roles(self_attention_weights(f"blocks.{i}.attn", c.n_embd),
                                       mlp_weights(f"blocks.{i}.mlp"))
                            for i in range(c.n_layer)))

    def default_adapted_roles(self) -> tuple[str, ...]:
        return ("q", "v")

    def adapter_sublayers(self) -> dict[str, int]:
        c = self.config_
        return {f"blocks.{i}.{part}": c.n_embd
                for i in range(c.n_layer) for part in ("attn", "mlp")}

    def forward_logits(self, input_ids, state=None):
        """``logits_from_hidden(forward_hidden(...))``: (B, T, V) logits of the unmasked ids
        with gradients and the new state (``forward_hidden``)."""
        hidden, state = self.forward_hidden(input_ids, state)
        return self.logits_from_hidden(hidden), state

    def default_objective(self) -> MaskedLMObjective:
        """Masked-LM cross-entropy over the window ``inputs[:, 0]`` + ``targets`` (module doc),
        the last ``block_size`` tokens of it, at this config's ``mask_rate``."""
        return MaskedLMObjective(mask_rate=self.config_.mask_rate)

    # ------------------------------------------------------------------------------- scoring

    def token_logprobs(self, input_ids, target_ids, state=None):
        """(B, T) -> (B, T) float64 PLL terms log p(target_t | the window, t masked)."""
        net = self._network().eval()
        inputs, targets = self._device_ids(input_ids), self._device_ids(target_ids)
        B, T = inputs.shape
        block = self.config_.block_size
        if T > block:
            raise LmbenchError(f"bert scores at most block_size = {block} tokens per call, got {T}")
        history = inputs[:, :0] if state is None else self._device_ids(state)
        S, device = history.shape[1], inputs.device
        # The window: history, the first input, then the targets (ignored ones read from the
        # next input). Positions after a row's last scored target are padding.
        following = torch.cat((inputs[:, 1:], inputs[:, -1:]), dim=1)  # (B, T)
        filled = torch.where(targets >= 0, targets, following)  # (B, T)
        tokens = torch.cat((history, inputs[:, :1], filled), dim=1)  # (B, W), W = S + 1 + T
        scored = torch.cat((torch.zeros(B, S + 1, dtype=torch.bool, device=device), targets >= 0),
                           dim=1)
        W = tokens.shape[1]
        lengths = (scored * torch.arange(1, W + 1, device=device)).amax(dim=1)  # (B,) 0: none
        # Keep each row's last `block` real tokens (the scored ones always fit: T <= block).
        starts = (lengths - block).clamp(min=0)  # (B,)
        L = min(W, block)
        columns = torch.arange(L, device=device)  # (L,)
        index = (starts[:, None] + columns).clamp(max=W - 1)  # (B, L)
        tokens, scored = tokens.gather(1, index), scored.gather(1, index)
        valid = columns[None, :] < (lengths - starts)[:, None]  # (B, L)
        scored &= valid
        # One copy per scored token: it and its word's later pieces masked (PLL-word-l2r).
        word = self._word_starts(tokens).cumsum(dim=1)  # (B, L) word number of each piece
        rows, cols = scored.nonzero(as_tuple=True)  # (N,) each
        later = columns[None, :] >= cols[:, None]  # (N, L)
        hide = later & (word[rows] == word[rows, cols][:, None])
        copies = torch.where(hide, net.mask_id, tokens[rows])  # (N, L)
        read = columns[None, :] == cols[:, None]  # (N, L)
        with torch.inference_mode():
            logits = self._read_masked(net, copies, valid[rows], read)  # (N, V)
            picked = torch.log_softmax(logits, dim=-1).gather(
                -1, tokens[rows, cols][:, None]).squeeze(-1)  # (N,)
        out = torch.zeros(B, T, dtype=torch.float64, device=device)
        out[rows, cols + starts[rows] - S - 1] = picked.double()
        return out, torch.cat((history, inputs), dim=1)[:, -(block - 1):]

    def logits(self, input_ids, state=None):
        """(B, T) -> (B, T, V): for each t the distribution at a [MASK] after ``state`` +
        ``input_ids[:, :t+1]`` (its last block_size - 1 ids); the new state is those ids."""
        net = self._network().eval()
        inputs = self._device_ids(input_ids)
        history = inputs[:, :0] if state is None else self._device_ids(state)
        seen = torch.cat((history, inputs), dim=1)  # (B, S + T)
        (B, T), total, keep = inputs.shape, seen.shape[1], self.config_.block_size - 1
        # (T,) prefix t is seen[:, :ends[t]]
        ends = torch.arange(total - T + 1, total + 1, device=inputs.device)
        starts = (ends - keep).clamp(min=0)
        lengths = ends - starts  # (T,) prefix lengths; the [MASK] goes at index lengths[t]
        width = int(lengths.max()) + 1
        columns = torch.arange(width, device=inputs.device)
        copies = seen[:, (starts[:, None] + columns).clamp(max=total - 1)]  # (B, T, W)
        at_mask = columns[None, :] == lengths[:, None]  # (T, W)
        copies = torch.where(at_mask, net.mask_id, copies)
        key_mask = (columns[None, :] <= lengths[:, None]).expand(B, T, width)
        with torch.inference_mode():
            logits = self._read_masked(net, copies.flatten(0, 1), key_mask.flatten(0, 1),
                                       at_mask.expand(B, T, width).flatten(0, 1))  # (B T, V)
        return logits.view(B, T, -1), seen[:, -keep:]

    def select_state(self, state, rows):
        """Rows of the (B, S) ids seen so far."""
        return None if state is None else self._device_ids(state).index_select(
            0, self._device_ids(rows))

    def _read_masked(self, net, copies, key_mask, read) -> torch.Tensor:
        """(N, L) copies with one ``read`` position each -> (N, V) fp32 logits, in chunks."""
        step = max(1, self.score_chunk_tokens // max(1, copies.shape[1]))
        pieces = [net(copies[i : i + step], key_mask[i : i + step], read[i : i + step])
                  for i in range(0, copies.shape[0], step)]
        if not pieces:
            return torch.zeros(0, net.vocab_size, device=copies.device)
        return torch.cat(pieces).float()

    # ---------------------------------------------------------------------------- word pieces

    @cached_property
    def _piece_tables(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For ``bpe``: (V,) "starts a word" and "ends a line" flags per piece; else None."""
        if self.tokenizer.name != "bpe":
            return None
        strings = self.tokenizer.token_strings()
        starts = torch.tensor([s.startswith(("Ġ", "Ċ")) for s in strings])
        ends_line = torch.tensor([s.endswith("Ċ") for s in strings])
        boundary = self.tokenizer.boundary_id
        starts[boundary], ends_line[boundary] = True, True  # the boundary is a word of its own
        return starts, ends_line

    def _word_starts(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L) True where a piece starts a word (module docstring)."""
        tables = self._piece_tables
        if tables is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        starts, ends_line = (table.to(tokens.device) for table in tables)
        first = starts[tokens]
        first[:, 1:] |= ends_line[tokens[:, :-1]]
        first[:, 0] = True  # the window cuts here
        return first
