"""``nplm``: the neural probabilistic language model of Bengio et al. 2003 (JMLR 3:1137-1155).

Each of the n-1 previous tokens is looked up in a shared feature table C (m features), the
features are concatenated into x, and (section 2, eq. 1)

    y = b + W x + U tanh(d + H x),        p(w_t | w_{t-n+1} .. w_{t-1}) = softmax(y)[w_t]

with optional direct connections W (the paper's "direct" column). Optionally the output is
mixed with an interpolated trigram, p = (1 - a) p_mlp + a p_trigram, a = ``mix_trigram`` (the
paper averages with weight 1/2, section 4.1; here the trigram is interpolated Kneser-Ney, fitted
on the same training tokens and vocabulary).

State is the last n-2 input tokens (and the trigram's history when mixing); positions before the
start of a stream read a padding feature vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptableWeight,
    AdaptsLayers,
    Capabilities,
    ComputesHidden,
    SelectsStateRows,
)
from lmbench.models.base import NeuralLM
from lmbench.models.ngram import NGramConfig, NGramLM, tables_from_arrays, tables_to_arrays
from lmbench.training.trainer import TrainConfig


def _nplm_train_defaults() -> TrainConfig:
    return TrainConfig(batch_size=64, seq_len=32, learning_rate=3e-3, warmup_steps=50)


@dataclass(frozen=True)
class NPLMConfig:
    context: int = 4  # n - 1 previous tokens
    embed_dim: int = 60  # m, features per token
    hidden_dim: int = 100  # h, hidden units (0: none, only the direct connections)
    direct: bool = True  # direct connections W from the features to the output
    dropout: float = 0.0
    mix_trigram: float = 0.0  # weight of an interpolated Kneser-Ney trigram (Bengio: 0.5)
    tokenizer: str = "word"
    tokenizer_options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=_nplm_train_defaults)

    def __post_init__(self) -> None:
        if self.context < 1 or self.embed_dim < 1 or self.hidden_dim < 0:
            raise LmbenchError("context and embed_dim must be >= 1, hidden_dim >= 0")
        if self.hidden_dim == 0 and not self.direct:
            raise LmbenchError("nplm needs hidden units or direct connections")
        if not 0 <= self.mix_trigram < 1:
            raise LmbenchError(f"mix_trigram must be in [0, 1), got {self.mix_trigram}")


class NPLMNetwork(nn.Module):
    def __init__(self, config: NPLMConfig, vocab_size: int) -> None:
        super().__init__()
        self.context, self.pad_id = config.context, vocab_size
        self.n_hidden = config.hidden_dim  # h, where features splits
        features = config.context * config.embed_dim
        self.embedding = nn.Embedding(vocab_size + 1, config.embed_dim)  # C, plus padding row
        self.hidden = nn.Linear(features, config.hidden_dim) if config.hidden_dim else None  # H, d
        self.output = (nn.Linear(config.hidden_dim, vocab_size) if config.hidden_dim
                       else None)  # U, b
        self.direct = nn.Linear(features, vocab_size, bias=not config.hidden_dim) \
            if config.direct else None  # W
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, state=None, want_state: bool = True):
        """(B, T) ids after ``state`` (B, n-2) -> (B, T, V) logits and the last n-2 ids."""
        features, state = self.features(input_ids, state)
        return self.scores(features), state

    def features(self, input_ids: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids after ``state`` -> (B, T, h + (n-1) m) what the output layers read:
        tanh(d + H x) (after dropout; h = 0 without hidden units) followed by x (only with
        direct connections), and the last n-2 ids."""
        B, T = input_ids.shape
        past = self.context - 1
        if state is None:
            state = torch.full((B, past), self.pad_id, dtype=torch.long, device=input_ids.device)
        ids = torch.cat((state, input_ids), dim=1)  # (B, past + T)
        windows = ids.unfold(1, self.context, 1)  # (B, T, n-1): the n-1 ids ending at each t
        x = self.dropout(self.embedding(windows).flatten(2))  # (B, T, (n-1) m)
        parts = []
        if self.hidden is not None:
            parts.append(self.dropout(torch.tanh(self.hidden(x))))  # (B, T, h)
        if self.direct is not None:
            parts.append(x)
        return torch.cat(parts, dim=-1), ids[:, ids.shape[1] - past:]

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """``features``' (B, T, h + (n-1) m) -> (B, T, V) logits, b + W x + U tanh(d + H x)."""
        logits = 0.0
        if self.hidden is not None:
            logits = self.output(features[..., : self.n_hidden])  # (B, T, V)
        if self.direct is not None:
            logits = logits + self.direct(features[..., self.n_hidden :])
        return logits


class NPLMLM(NeuralLM, SelectsStateRows, ComputesHidden, AdaptsLayers):
    """Bengio et al. 2003's neural probabilistic LM (MLP over n-1 word features)."""

    name = "nplm"
    config_class = NPLMConfig
    trigram_: NGramLM | None = None

    @property
    def hidden_size(self) -> int:
        """h hidden units, plus the (n-1) m features with direct connections."""
        c = self.config_
        return c.hidden_dim + (c.context * c.embed_dim if c.direct else 0)

    def forward_hidden(self, input_ids, state=None):
        """(B, T) ids -> (B, T, hidden_size) what the output layers read (``features``: the
        tanh layer's output, then the word features the direct connections read), and the
        last n-2 ids. Like ``forward_logits`` it leaves the mixed-in trigram out."""
        return self._network().features(self._device_ids(input_ids), state)

    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden_size) -> (B, T, V) logits of the network."""
        return self._network().scores(hidden)

    def adaptable_weights(self):
        """``hidden`` (H, d), ``output`` (U, b) and ``direct`` (W, b) of eq. 1, where present;
        the feature table C is never adapted."""
        c = self.config_
        hidden = c.hidden_dim > 0
        return {"hidden": (AdaptableWeight("hidden"),) if hidden else (),
                "output": (AdaptableWeight("output"),) if hidden else (),
                "direct": (AdaptableWeight("direct"),) if c.direct else ()}

    def default_adapted_roles(self) -> tuple[str, ...]:
        return ("hidden", "output") if self.config_.hidden_dim else ("direct",)

    def adapter_sublayers(self) -> dict[str, int]:
        """The hidden layer's output (before its tanh); none without hidden units."""
        return {"hidden": self.config_.hidden_dim} if self.config_.hidden_dim else {}

    @property
    def capabilities(self) -> Capabilities:
        trigram_history = 2 if self.config_.mix_trigram > 0 else 1
        return Capabilities(exact_likelihood=True,
                            max_context=max(self.config_.context, trigram_history))

    def build_network(self, vocab_size: int) -> NPLMNetwork:
        return NPLMNetwork(self.config_, vocab_size)

    def fit_ids(self, train_ids, valid_ids=None, **options):
        """``NeuralLM.fit_ids``, after fitting the mixed-in trigram on ``train_ids``."""
        if self.config_.mix_trigram > 0:  # fitted first: validation scores the mixture
            self.trigram_ = NGramLM(NGramConfig(order=3, smoothing="kneser-ney"), self.tokenizer)
            self.trigram_.fit_ids(train_ids)
        return super().fit_ids(train_ids, valid_ids, **options)

    def logits(self, input_ids, state=None):
        if self.trigram_ is None:
            return super().logits(input_ids, state)
        network_state, trigram_state = state if state is not None else (None, None)
        logits, network_state = super().logits(input_ids, network_state)
        trigram_logprobs, trigram_state = self.trigram_.logits(input_ids, trigram_state)
        trigram_logprobs = trigram_logprobs.to(logits.device)  # the n-gram computes on the CPU
        weight = self.config_.mix_trigram
        mixed = torch.logaddexp(torch.log_softmax(logits.double(), -1) + math.log(1 - weight),
                                trigram_logprobs + math.log(weight))
        return mixed, (network_state, trigram_state)

    def select_state(self, state, rows):
        """Rows of the (B, n-2) last ids, and of the trigram's history when mixing."""
        if state is None:
            return None
        if self.trigram_ is None:
            return state.index_select(0, self._device_ids(rows))
        network_state, trigram_state = state
        return (network_state.index_select(0, self._device_ids(rows)),
                self.trigram_.select_state(trigram_state, rows))

    def n_params(self) -> int:
        extra = self.trigram_.n_params() if self.trigram_ is not None else 0
        return super().n_params() + extra

    def extra_arrays(self) -> dict[str, np.ndarray]:
        if self.trigram_ is None:
            return {}
        return tables_to_arrays(self.trigram_._tables(), prefix="trigram/")

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if self.config_.mix_trigram > 0:
            self.trigram_ = NGramLM(NGramConfig(order=3, smoothing="kneser-ney"), self.tokenizer)
            self.trigram_.tables_ = tables_from_arrays(arrays, 3, prefix="trigram/")
