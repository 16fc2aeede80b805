"""``rnn``, ``lstm``, ``gru``: recurrent language models (Mikolov et al. 2010; Zaremba et al. 2014).

Embedding, dropout, ``n_layer`` stacked cells (Elman tanh RNN, LSTM of Hochreiter & Schmidhuber
1997, or GRU of Cho et al. 2014) with dropout between layers (Zaremba et al.), dropout, and an
output layer tied to the embedding (Press & Wolf 2017; Inan et al. 2017); when the hidden size
differs from the embedding size a linear projection sits between them.

State is the hidden state ((h, c) for the LSTM), each (layers, B, hidden). Training carries it
from batch to batch with truncated back-propagation through time; scoring carries it from window
to window (``Capabilities.carries_state``), so context is never cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lmbench.errors import LmbenchError
from lmbench.interface import Capabilities
from lmbench.models.base import NeuralLM
from lmbench.registry import MODELS
from lmbench.train import TrainConfig


def _rnn_train_defaults() -> TrainConfig:
    return TrainConfig(batch_size=32, seq_len=35, learning_rate=3e-3, warmup_steps=50)


@dataclass(frozen=True)
class RNNConfig:
    embed_dim: int = 200
    hidden_dim: int = 200
    n_layer: int = 2
    dropout: float = 0.2  # on embeddings, between layers and before the output layer
    tie_weights: bool = True
    tokenizer: str = "word"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=_rnn_train_defaults)

    def __post_init__(self) -> None:
        if min(self.embed_dim, self.hidden_dim, self.n_layer) < 1:
            raise LmbenchError("embed_dim, hidden_dim and n_layer must be >= 1")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"dropout must be in [0, 1), got {self.dropout}")


class RNNNetwork(nn.Module):
    CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, cell: str, config: RNNConfig, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.cell = self.CELLS[cell](config.embed_dim, config.hidden_dim, config.n_layer,
                                     batch_first=True,
                                     dropout=config.dropout if config.n_layer > 1 else 0.0)
        output_dim = config.hidden_dim
        self.projection = None
        if config.tie_weights and config.hidden_dim != config.embed_dim:
            self.projection = nn.Linear(config.hidden_dim, config.embed_dim, bias=False)
            output_dim = config.embed_dim
        self.head = nn.Linear(output_dim, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.head.weight, -0.1, 0.1)

    def forward(self, input_ids: torch.Tensor, state=None, want_state: bool = True):
        """(B, T) ids after hidden ``state`` -> (B, T, V) logits and the new hidden state."""
        x = self.dropout(self.embedding(input_ids))  # (B, T, E)
        output, state = self.cell(x, state)  # (B, T, H)
        output = self.dropout(output)
        if self.projection is not None:
            output = self.projection(output)  # (B, T, E)
        return self.head(output), state


class RNNLM(NeuralLM):
    """Elman RNN language model (tanh cells)."""

    name = "rnn"
    config_class = RNNConfig

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact_likelihood=True, max_context=None, carries_state=True)

    def build_network(self, vocab_size: int) -> RNNNetwork:
        return RNNNetwork(self.name, self.config_, vocab_size)


@MODELS.register("lstm")
class LSTMLM(RNNLM):
    """LSTM language model (Zaremba et al. 2014 shape, tied weights)."""

    name = "lstm"


@MODELS.register("gru")
class GRULM(RNNLM):
    """GRU language model."""

    name = "gru"


MODELS.register("rnn")(RNNLM)
