"""``rnn``, ``lstm``, ``gru``: recurrent language models (Mikolov et al. 2010; Zaremba et al. 2014).

Embedding, dropout, ``n_layer`` stacked cells (Elman tanh RNN, LSTM of Hochreiter & Schmidhuber
1997, or GRU of Cho et al. 2014) with dropout between layers (Zaremba et al.), dropout, and an
output layer tied to the embedding (Press & Wolf 2017; Inan et al. 2017); when the hidden size
differs from the embedding size a linear projection sits between them.

Optionally the output layer is an adaptive softmax (Grave et al. 2017; ``adaptive_cutoffs``, see
``lmbench.models.adaptive_softmax``): an exact distribution over the whole vocabulary whose
training loss evaluates a low-rank tail only for the targets in it. On the Brown word track the
14k-word output layer is most of an LSTM's cost, and this doubles training tokens/s. It cannot
be tied to the embedding, so ``tie_weights`` is ignored with it.

State is the hidden state ((h, c) for the LSTM), each (layers, B, hidden). Training carries it
from batch to batch with truncated back-propagation through time; scoring carries it from window
to window (``Capabilities.carries_state``), so context is never cut.

Optionally, at inference, a continuous cache (Grave, Joulin & Usunier 2017, "Improving Neural
Language Models with a Continuous Cache", eqs. 2-3; ``cache_size`` > 0) stores the last
``cache_size`` pairs (h_i, x_{i+1}) of top-layer output and the word that followed it, and mixes

    p_cache(w | h_t) ∝ Σ_i 1[x_{i+1} = w] exp(θ h_t · h_i)                              (eq. 2)
    p(w | h_t) = (1 - λ) p_vocab(w | h_t) + λ p_cache(w | h_t)                           (eq. 3)

with θ = ``cache_theta`` and λ = ``cache_lambda`` (tuned on validation data, as in the paper;
``benchmarks/brown_cache_mixture.py`` does it). The pairs travel in the state (``CacheState``),
so the cache spans scoring windows and generation steps; before the first pair exists, p = p_vocab.
Training is unchanged: the cache has no trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptableWeight,
    AdaptsLayers,
    Capabilities,
    ComputesHidden,
    SelectsStateRows,
    StartsFromEmbeddings,
)
from lmbench.models.adaptive_softmax import AdaptiveSoftmax, check_cutoffs
from lmbench.models.base import NeuralLM
from lmbench.training.batching import IGNORE_INDEX, StreamBatch
from lmbench.training.objectives import LossOutput, Objective, next_token
from lmbench.training.trainer import TrainConfig


def _rnn_train_defaults() -> TrainConfig:
    return TrainConfig(batch_size=32, seq_len=35, learning_rate=3e-3, warmup_steps=50)


@dataclass(frozen=True)
class RNNConfig:
    embed_dim: int = 200
    hidden_dim: int = 200
    n_layer: int = 2
    dropout: float = 0.2  # on embeddings, between layers and before the output layer
    tie_weights: bool = True  # ignored with an adaptive softmax
    adaptive_cutoffs: tuple[int, ...] = ()  # adaptive softmax cluster bounds; (): full softmax
    adaptive_div: float = 4.0  # tail i projects to hidden / adaptive_div^(i+1) dimensions
    cache_size: int = 0  # continuous-cache pairs kept at inference; 0: no cache
    cache_theta: float = 0.3  # θ: the cache's inverse temperature on h_t · h_i
    cache_lambda: float = 0.1  # λ: weight of the cache distribution
    tokenizer: str = "word"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=_rnn_train_defaults)

    def __post_init__(self) -> None:
        if min(self.embed_dim, self.hidden_dim, self.n_layer) < 1:
            raise LmbenchError("embed_dim, hidden_dim and n_layer must be >= 1")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "adaptive_cutoffs", tuple(self.adaptive_cutoffs))
        check_cutoffs(self.adaptive_cutoffs)
        if not self.adaptive_div >= 1:
            raise LmbenchError(f"adaptive_div must be >= 1, got {self.adaptive_div}")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or \
                self.cache_size < 0:
            raise LmbenchError(f"cache_size must be an integer >= 0, got {self.cache_size!r}")
        if not self.cache_theta >= 0:
            raise LmbenchError(f"cache_theta must be >= 0, got {self.cache_theta}")
        if not 0 <= self.cache_lambda < 1:
            raise LmbenchError(f"cache_lambda must be in [0, 1), got {self.cache_lambda}")


@dataclass(frozen=True)
class CacheState:
    """The state of an RNN with a continuous cache: the cell's state, the last ``cache_size``
    (key, value) pairs and the newest output, whose following word is not read yet."""

    rnn: Any  # the cell's hidden state
    keys: torch.Tensor  # (B, N, H) top-layer outputs h_i
    values: torch.Tensor  # (B, N) the word x_{i+1} that followed each
    pending: torch.Tensor | None  # (B, 1, H) the last output; None at the start of a stream


class CellStart:
    """A stream start for ``RNNNetwork.hidden``: the cell's state of ``start(B)`` (a
    ``CacheState``'s ``rnn`` with a continuous cache). A plain object, so a deep copy copies it
    with what ``start`` holds."""

    def __init__(self, start) -> None:
        self.start = start

    def __call__(self, batch_size: int):
        state = self.start(batch_size)
        return state.rnn if isinstance(state, CacheState) else state


@dataclass(frozen=True)
class AdaptiveNextToken:
    """``next_token`` for an adaptive-softmax network: the same NLL through
    ``AdaptiveSoftmax.loss`` (Grave et al. 2017), without the full (B, T, V) log-probabilities."""

    def __call__(self, model, network, batch: StreamBatch, state=None) -> LossOutput:
        output, state = network.hidden(batch.inputs, state)  # (B, T, H)
        output, targets = output.flatten(0, 1), batch.targets.flatten()  # (B T, H), (B T,)
        kept = targets != IGNORE_INDEX
        if not kept.all():
            output, targets = output[kept], targets[kept]
        loss = network.adaptive.loss(output, targets)
        return LossOutput(loss + model.auxiliary_loss(), state)


class RNNNetwork(nn.Module):
    CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, cell: str, config: RNNConfig, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.cell = self.CELLS[cell](config.embed_dim, config.hidden_dim, config.n_layer,
                                     batch_first=True,
                                     dropout=config.dropout if config.n_layer > 1 else 0.0)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.stream_start = None  # a callable B -> hidden state (RNNLM.start_streams)
        self.projection = None
        self.adaptive = None
        if config.adaptive_cutoffs:
            self.adaptive = AdaptiveSoftmax(config.hidden_dim, vocab_size,
                                            config.adaptive_cutoffs, config.adaptive_div)
            return
        output_dim = config.hidden_dim
        if config.tie_weights and config.hidden_dim != config.embed_dim:
            self.projection = nn.Linear(config.hidden_dim, config.embed_dim, bias=False)
            output_dim = config.embed_dim
        self.head = nn.Linear(output_dim, vocab_size)
        nn.init.zeros_(self.head.bias)
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.head.weight, -0.1, 0.1)

    def hidden(self, input_ids: torch.Tensor, state=None):
        """(B, T) ids after hidden ``state`` -> (B, T, H) top-layer outputs (after dropout)
        and the new hidden state; a stream (``state`` None) starts from ``stream_start(B)``
        when one is set (``RNNLM.start_streams``)."""
        if state is None and self.stream_start is not None:
            state = self.stream_start(input_ids.shape[0])
        x = self.dropout(self.embedding(input_ids))  # (B, T, E)
        output, state = self.cell(x, state)  # (B, T, H)
        return self.dropout(output), state

    def output_scores(self, output: torch.Tensor) -> torch.Tensor:
        """(B, T, H) top-layer outputs -> (B, T, V) logits (log-probabilities with an
        adaptive softmax)."""
        return self.scores_from_head_input(self.head_input(output))

    def head_input(self, output: torch.Tensor) -> torch.Tensor:
        """(B, T, H) top-layer outputs -> what the output layer reads: the projection's
        (B, T, E) output where there is one, else the outputs themselves."""
        return output if self.projection is None else self.projection(output)

    def scores_from_head_input(self, features: torch.Tensor) -> torch.Tensor:
        """``head_input``'s (B, T, D) -> (B, T, V) logits (adaptive: log-probabilities)."""
        if self.adaptive is not None:
            return self.adaptive.log_prob(features)
        return self.head(features)

    def forward(self, input_ids: torch.Tensor, state=None, want_state: bool = True):
        """(B, T) ids after hidden ``state`` -> (B, T, V) logits and the new hidden state."""
        output, state = self.hidden(input_ids, state)
        return self.output_scores(output), state


class RNNLM(NeuralLM, SelectsStateRows, ComputesHidden, AdaptsLayers, StartsFromEmbeddings):
    """Elman RNN language model (tanh cells)."""

    name = "rnn"
    config_class = RNNConfig

    def start_streams(self, start) -> None:
        """Every stream's hidden state starts as ``start(B)`` (with a continuous cache too: its
        cell state starts there and its pairs start empty)."""
        self._network().stream_start = None if start is None else CellStart(start)

    def input_embedding_weight(self) -> torch.Tensor:
        return self._network().embedding.weight  # (V, E)

    def state_from_embeddings(self, embeddings: torch.Tensor, state=None):
        """(B, P, E) embeddings run through the recurrent stack after ``state`` -> its hidden
        state: a soft prompt (Lester et al. 2021) read this way is a learned initial state.
        The context is unbounded, so no position is used up."""
        net = self._network()
        cell_state = state.rnn if isinstance(state, CacheState) else state
        _, cell_state = net.cell(net.dropout(embeddings), cell_state)
        if not self.config_.cache_size:
            return cell_state
        if isinstance(state, CacheState) and state.keys.shape[1]:
            raise LmbenchError("input embeddings without ids only start a stream")
        B, device = embeddings.shape[0], embeddings.device
        return CacheState(cell_state, torch.empty(B, 0, self.config_.hidden_dim, device=device),
                          torch.empty(B, 0, dtype=torch.long, device=device), None)

    @property
    def hidden_size(self) -> int:
        """The width the output layer reads: ``embed_dim`` behind the tied projection,
        else ``hidden_dim`` (the top recurrent layer's output)."""
        c = self.config_
        projected = not c.adaptive_cutoffs and c.tie_weights and c.hidden_dim != c.embed_dim
        return c.embed_dim if projected else c.hidden_dim

    def forward_hidden(self, input_ids, state=None):
        """(B, T) ids -> (B, T, hidden_size) what the output layer reads (the top layer's
        output after dropout, projected where there is a projection), and the cell's state.
        Like ``forward_logits`` it leaves the continuous cache out."""
        net = self._network()
        output, state = net.hidden(self._device_ids(input_ids), state)
        return net.head_input(output), state

    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden_size) -> (B, T, V) (log-probabilities with an adaptive softmax)."""
        return self._network().scores_from_head_input(hidden)

    def adaptable_weights(self):
        """``input`` and ``recurrent``: every layer's input-to-hidden and hidden-to-hidden
        matrices of the fused cell (biases stay frozen); ``projection``: the hidden-to-embedding
        projection in front of the tied output layer, where there is one. The embedding and the
        output layer are never adapted."""
        c = self.config_
        layers = range(c.n_layer)
        roles = {"input": tuple(AdaptableWeight("cell", "matrix", f"weight_ih_l{i}")
                                for i in layers),
                 "recurrent": tuple(AdaptableWeight("cell", "matrix", f"weight_hh_l{i}")
                                    for i in layers),
                 "projection": ()}
        if self.hidden_size != c.hidden_dim:  # the tied projection exists
            roles["projection"] = (AdaptableWeight("projection"),)
        return roles

    def default_adapted_roles(self) -> tuple[str, ...]:
        return ("input", "recurrent")

    def adapter_sublayers(self) -> dict[str, int]:
        """The fused cell (all layers in one call): one adapter on the top layer's output."""
        return {"cell": self.config_.hidden_dim}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact_likelihood=True, max_context=None, carries_state=True)

    def build_network(self, vocab_size: int) -> RNNNetwork:
        check_cutoffs(self.config_.adaptive_cutoffs, vocab_size)
        return RNNNetwork(self.name, self.config_, vocab_size)

    def estimated_n_params(self, vocab_size: int | None = None) -> int:
        """As ``NeuralLM.estimated_n_params``; before the tokenizer is fitted, a model with an
        adaptive softmax is estimated at the smallest vocabulary its cutoffs allow (the last
        cutoff + 1), not at 2, which its cutoffs refuse (run files are checked unfitted)."""
        cutoffs = self.config_.adaptive_cutoffs
        if vocab_size is None and not self.tokenizer.is_fitted and cutoffs:
            vocab_size = max(cutoffs) + 1
        return super().estimated_n_params(vocab_size)

    def default_objective(self) -> Objective:
        """Next-token cross-entropy; with an adaptive softmax its cheaper exact loss."""
        return AdaptiveNextToken() if self.config_.adaptive_cutoffs else next_token

    # ------------------------------------------------------------------ continuous cache

    def with_cache(self, cache_size: int, theta: float, lam: float) -> RNNLM:
        """A model sharing this one's network and tokenizer, scoring with a continuous cache
        (module docstring); ``cache_size = 0`` gives the plain model back."""
        config = replace(self.config_, cache_size=cache_size, cache_theta=theta,
                         cache_lambda=lam)
        model = type(self)(config, self.tokenizer)
        model.net, model.train_log_ = self._network(), self.train_log_
        return model.to(self.device)

    def _cache_step(self, input_ids, state: CacheState | None):
        """(B, T) ids after ``state`` -> (B, T, V) float64 log p_vocab, (B, T, J) cache
        attention weights over the (B, J) values, (B, T, 1) λ per position (0 where the cache
        is empty) and the new ``CacheState``."""
        config, net = self.config_, self._network()
        net.eval()
        ids = self._device_ids(input_ids)
        device = ids.device
        state = state or CacheState(None, torch.empty(ids.shape[0], 0, config.hidden_dim,
                                                      device=device),
                                    torch.empty(ids.shape[0], 0, dtype=torch.long,
                                                device=device), None)
        with torch.inference_mode():
            output, rnn_state = net.hidden(ids, state.rnn)  # (B, T, H)
            output = output.float()
            vocab = torch.log_softmax(net.output_scores(output).double(), dim=-1)  # (B, T, V)
            # New pairs: (pending, x_0), (h_0, x_1), ..., (h_{T-2}, x_{T-1}).
            if state.pending is None:
                new_keys, new_values = output[:, :-1], ids[:, 1:]
            else:
                new_keys = torch.cat([state.pending, output[:, :-1]], dim=1)
                new_values = ids
            keys = torch.cat([state.keys, new_keys], dim=1)  # (B, J, H)
            values = torch.cat([state.values, new_values], dim=1)  # (B, J)
            T, J, n_old = ids.shape[1], keys.shape[1], state.keys.shape[1]
            # Position t may use the pairs whose word was read by then: the first
            # n_old + t + (1 if pending) of them, and only the last cache_size of those.
            seen = n_old + torch.arange(T, device=device) + (state.pending is not None)  # (T,)
            j = torch.arange(J, device=device)
            visible = (j[None, :] < seen[:, None]) & (j[None, :] >= seen[:, None]
                                                       - config.cache_size)  # (T, J)
            scores = config.cache_theta * torch.einsum("bth,bjh->btj", output.double(),
                                                       keys.double())  # (B, T, J)
            scores = scores.masked_fill(~visible, float("-inf"))
            weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # empty rows -> 0
            lam = torch.where(visible.any(-1), config.cache_lambda, 0.0)  # (T,)
            lam = lam.double()[None, :, None].expand(ids.shape[0], T, 1)
            keep = config.cache_size
            new_state = CacheState(rnn_state, keys[:, -keep:], values[:, -keep:],
                                   output[:, -1:])
        return vocab, weights, values, lam, new_state

    def logits(self, input_ids, state=None):
        if not self.config_.cache_size:
            return super().logits(input_ids, state)
        vocab, weights, values, lam, state = self._cache_step(input_ids, state)
        B, T, V = vocab.shape
        cache = torch.zeros(B, T, V, dtype=torch.float64, device=vocab.device).scatter_add_(
            2, values[:, None, :].expand(B, T, -1), weights)  # (B, T, V) p_cache
        mixed = (1 - lam) * vocab.exp() + lam * cache
        return mixed.log().float(), state

    def token_logprobs(self, input_ids, target_ids, state=None):
        if not self.config_.cache_size:
            return super().token_logprobs(input_ids, target_ids, state)
        vocab, weights, values, lam, state = self._cache_step(input_ids, state)
        targets = self._device_ids(target_ids)  # (B, T)
        p_vocab = vocab.gather(-1, targets.clamp(min=0).unsqueeze(-1)).exp()  # (B, T, 1)
        hits = (values[:, None, :] == targets.unsqueeze(-1)).double()  # (B, T, J)
        p_cache = (weights * hits).sum(-1, keepdim=True)  # (B, T, 1)
        logprob = ((1 - lam) * p_vocab + lam * p_cache).log().squeeze(-1)
        return torch.where(targets >= 0, logprob, 0.0), state

    def select_state(self, state, rows):
        """Rows of the hidden state, each (layers, B, hidden) ((h, c) for the LSTM), and of the
        continuous cache's pairs when there is one."""
        rows = self._device_ids(rows)

        def hidden(cell_state):
            if cell_state is None:
                return None
            if isinstance(cell_state, tuple):  # the LSTM's (h, c)
                return tuple(s.index_select(1, rows) for s in cell_state)
            return cell_state.index_select(1, rows)

        if not isinstance(state, CacheState):
            return hidden(state)
        pending = None if state.pending is None else state.pending.index_select(0, rows)
        return CacheState(hidden(state.rnn), state.keys.index_select(0, rows),
                          state.values.index_select(0, rows), pending)


class LSTMLM(RNNLM):
    """LSTM language model (Zaremba et al. 2014 shape, tied weights)."""

    name = "lstm"


class GRULM(RNNLM):
    """GRU language model."""

    name = "gru"


