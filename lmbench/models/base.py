"""``NeuralLM``: the interface for every torch family, given one network.

A family writes its config dataclass (with ``tokenizer``, ``tokenizer_options`` and ``train``
fields), ``capabilities`` and ``build_network(vocab_size)``. The network's
``forward(input_ids, state=None, want_state=True) -> (logits, state)`` maps (B, T) ids to
(B, T, V) logits. Everything else is here, once:

    token_logprobs = log_softmax(logits) gathered at the targets (targets == -1 give 0.0)

evaluated in fp32 under ``torch.inference_mode``; ``fit`` = tokenizer + ``lmbench.training.trainer.train``;
``save``/``load`` = the weights as numpy arrays in one ``.npz`` with the config, tokenizer and
training log as JSON.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, EstimatesSize, LanguageModel, Trainable
from lmbench.core.io import read_npz, write_npz_atomic
from lmbench.core.limits import check_n_params
from lmbench.core.options import build_config
from lmbench.core.tokenizers import (
    Tokenizer,
    build_tokenizer,
    tokenizer_from_json,
    tokenizer_to_json,
)
from lmbench.training.trainer import TrainLog, train


class NeuralLM(LanguageModel, Trainable, EstimatesSize):
    """Base class of the torch families; see the module docstring."""

    config_class: type

    def __init__(self, config=None, tokenizer: Tokenizer | None = None, **options: Any) -> None:
        self.config_ = config or build_config(self.config_class, options, f"model {self.name!r}")
        self.tokenizer = tokenizer or build_tokenizer(self.config_.tokenizer,
                                                      **self.config_.tokenizer_options)
        self.net: torch.nn.Module | None = None
        self.train_log_: TrainLog | None = None

    @abstractmethod
    def build_network(self, vocab_size: int) -> torch.nn.Module:
        """A freshly initialised network for ``vocab_size`` tokens."""

    def training_loss(self, network, inputs: torch.Tensor, targets: torch.Tensor, state=None
                      ) -> tuple[torch.Tensor, Any]:
        """The loss of one training batch: (B, T) inputs and next-token targets -> (scalar loss,
        state to carry). Default: next-token cross-entropy plus ``auxiliary_loss()``. Families
        with another objective (masked LM, encoder-decoder) override this; ``network`` is
        ``self.net`` or its ``torch.compile`` wrapper."""
        logits, state = network(inputs, state, want_state=self.capabilities.carries_state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())  # (B T, V)
        return loss + self.auxiliary_loss(), state

    def auxiliary_loss(self) -> torch.Tensor | float:
        """Extra training loss from the last forward pass (a router's balance loss); 0 here."""
        return 0.0

    # ------------------------------------------------------------------------------- fitting

    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir=None) -> NeuralLM:
        if not getattr(self.tokenizer, "fitted_", False):
            self.tokenizer.fit(corpus.train)
        train_ids = self.tokenizer.encode_split(corpus.train)
        valid_ids = None
        if valid and "valid" in corpus.splits:
            valid_ids = self.tokenizer.encode_split(corpus.split("valid"))
        return self.fit_ids(train_ids, valid_ids, budget=budget, checkpoint_dir=checkpoint_dir)

    def fit_ids(self, train_ids, valid_ids=None, *, budget: Budget | None = None,
                checkpoint_dir=None) -> NeuralLM:
        """Train on (N,) ids of this model's fitted tokenizer; ``valid_ids`` for selection."""
        check_n_params(self.estimated_n_params(self.tokenizer.vocab_size), f"model {self.name!r}")
        torch.manual_seed(self.config_.train.seed)  # the initial weights
        self.net = self.build_network(self.tokenizer.vocab_size)
        self.train_log_ = train(self, train_ids, valid_ids, self.config_.train, budget,
                                checkpoint_dir)
        return self

    def estimated_n_params(self, vocab_size: int | None = None) -> int:
        """Parameters of ``build_network(vocab_size)``, tied matrices once, counted on torch's
        meta device (shapes without memory), so it is exact for every family and allocates
        nothing. ``vocab_size`` None: the fitted tokenizer's, or 2 (a lower bound) before the
        tokenizer is fitted. A family may override this with a formula from its config."""
        if vocab_size is None:
            fitted = getattr(self.tokenizer, "fitted_", False)
            vocab_size = self.tokenizer.vocab_size if fitted else 2
        with torch.device("meta"):
            network = self.build_network(vocab_size)
        return int(sum(p.numel() for p in network.parameters()))  # shared parameters once

    def _network(self) -> torch.nn.Module:
        if self.net is None:
            raise LmbenchError(f"the {self.name} model is not fitted; call fit(corpus) first")
        return self.net

    def network(self) -> torch.nn.Module:
        return self._network()

    def forward_logits(self, input_ids, state=None):
        """(B, T) ids -> (B, T, V) logits with gradients, in the network's current mode."""
        return self._network()(torch.as_tensor(input_ids, dtype=torch.long), state)

    # ------------------------------------------------------------------------------- scoring

    def logits(self, input_ids, state=None):
        net = self._network()
        net.eval()
        with torch.inference_mode():
            logits, state = net(torch.as_tensor(input_ids, dtype=torch.long), state)
        return logits.float(), state

    def token_logprobs(self, input_ids, target_ids, state=None):
        logits, state = self.logits(input_ids, state)  # (B, T, V)
        targets = torch.as_tensor(target_ids, dtype=torch.long)
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        return torch.where(targets >= 0, picked, 0.0).double(), state

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, D): one feature vector per sequence (e.g. mean-pooled hidden
        states, MAUVE's features). Families that expose hidden states override this."""
        raise NotImplementedError(f"the {self.name} family has no embed hook")

    # ------------------------------------------------------------------------- bookkeeping

    def n_params(self) -> int:
        """Trainable parameters, tied matrices counted once."""
        unique = {p.data_ptr(): p.numel() for p in self._network().parameters()}
        return int(sum(unique.values()))

    def config(self) -> dict[str, Any]:
        return asdict(self.config_)

    def training_log(self) -> dict | None:
        return self.train_log_.to_dict() if self.train_log_ else None

    def extra_arrays(self) -> dict[str, np.ndarray]:
        """Arrays besides the network's weights to save (a mixed-in n-gram's tables)."""
        return {}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``extra_arrays`` saved."""

    def save(self, path: str | Path) -> None:
        arrays = {f"param/{k}": v.detach().float().numpy()
                  for k, v in self._network().state_dict().items()}
        arrays.update(self.extra_arrays())
        meta = {"family": self.name, "config": self.config(),
                "tokenizer": tokenizer_to_json(self.tokenizer),
                "train_log": self.train_log_.to_dict() if self.train_log_ else None}
        write_npz_atomic(Path(path), arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> NeuralLM:
        """The model ``save`` wrote; a damaged file (missing or misshapen weights, a bad config
        or tokenizer) is a one-line ``LmbenchError`` naming it."""
        meta, arrays = read_npz(Path(path), f"a {cls.name} model")
        weights = {k[len("param/"):]: torch.from_numpy(v.copy())
                   for k, v in arrays.items() if k.startswith("param/")}
        extra = {k: v for k, v in arrays.items() if not k.startswith("param/")}
        if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("tokenizer"), str):
            raise LmbenchError(f"{path}: not a {cls.name} model file (no config or tokenizer)")
        model = cls(build_config(cls.config_class, meta["config"], str(path)),
                    tokenizer_from_json(meta["tokenizer"], str(path)))
        check_n_params(model.estimated_n_params(), f"{path}")
        model.net = model.build_network(model.tokenizer.vocab_size)
        _check_weights(model.net, weights, path)
        model.net.load_state_dict(weights)
        try:
            model.load_extra_arrays(extra)
            if meta.get("train_log"):
                model.train_log_ = TrainLog(**meta["train_log"])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise LmbenchError(f"{path}: damaged {cls.name} model file ({type(error).__name__}: "
                               f"{error})") from None
        return model


def _check_weights(network: torch.nn.Module, weights: dict[str, torch.Tensor], path) -> None:
    """One line naming the first missing, unexpected or misshapen weight of a saved model."""
    expected = network.state_dict()
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    for problem, names in (("missing weights", missing), ("unexpected weights", unexpected),
                           ("weights of the wrong shape", wrong)):
        if names:
            first = names[0]
            shape = (f" ({tuple(weights[first].shape)}, the network needs "
                     f"{tuple(expected[first].shape)})") if problem.endswith("shape") else ""
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise LmbenchError(f"{path}: damaged model file: {problem} {first!r}{shape}{more}")
