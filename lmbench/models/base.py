"""``NeuralLM``: the interface for every torch family, given one network.

A family writes its config dataclass (with ``tokenizer``, ``tokenizer_options`` and ``train``
fields), ``capabilities`` and ``build_network(vocab_size)``. The network's
``forward(input_ids, state=None, want_state=True) -> (logits, state)`` maps (B, T) ids to
(B, T, V) logits. Everything else is here, once:

    token_logprobs = log_softmax(logits) gathered at the targets (targets == -1 give 0.0)

evaluated in fp32 under ``torch.inference_mode``; ``fit`` = tokenizer + stream batches +
``lmbench.training.trainer.train`` with the family's ``default_objective()`` (next-token
cross-entropy here; bert and seq2seq name theirs) or the ``objective`` passed in;
``fit(corpus, init="model.npz")`` warm-starts from a saved model of the same family and
architecture, inheriting its tokenizer; ``save``/``load`` = the weights as numpy arrays in one
``.npz`` with the config, tokenizer and training log as JSON. Every torch family is
``Trainable``; the other optional abilities (``lmbench.core.interface``) a family declares itself.

Devices (``lmbench.core.interface``): ``to(device)`` moves the network, or, before ``fit``,
chooses where ``fit_ids`` puts the network it builds. The initial weights are drawn on the CPU
from ``train.seed`` and then moved, so the same seed starts from the same weights on any device.
Inputs are moved to ``device``; outputs and states stay there. ``load`` returns the model on the
CPU.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmbench.core.device import resolve_device
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
from lmbench.training.batching import StreamBatch, StreamBatches
from lmbench.training.distributed import DistributedTraining
from lmbench.training.objectives import Objective, next_token
from lmbench.training.trainer import TrainConfig, TrainLog, train


class NeuralLM(LanguageModel, Trainable, EstimatesSize):
    """Base class of the torch families; see the module docstring."""

    config_class: type

    def __init__(self, config=None, tokenizer: Tokenizer | None = None, **options: Any) -> None:
        self.config_ = config or build_config(self.config_class, options, f"model {self.name!r}")
        self.tokenizer = tokenizer or build_tokenizer(self.config_.tokenizer,
                                                      **self.config_.tokenizer_options)
        self.net: torch.nn.Module | None = None
        self.train_log_: TrainLog | None = None
        self.device_ = torch.device("cpu")

    @abstractmethod
    def build_network(self, vocab_size: int) -> torch.nn.Module:
        """A freshly initialised network for ``vocab_size`` tokens."""

    def default_objective(self) -> Objective:
        """What ``fit`` optimises unless told otherwise: next-token cross-entropy plus
        ``auxiliary_loss()`` (``lmbench.training.objectives``). Families with another objective
        (masked LM, encoder-decoder) override this in their own file."""
        return next_token

    def training_loss(self, network, inputs: torch.Tensor, targets: torch.Tensor, state=None
                      ) -> tuple[torch.Tensor, Any]:
        """The default objective on one stream batch: (B, T) inputs and next-token targets ->
        (scalar loss, state to carry); ``network`` is ``self.net`` or its compile wrapper. A
        convenience for tests and notebooks: the trainer calls the objective itself."""
        output = self.default_objective()(self, network, StreamBatch(inputs, targets), state)
        return output.loss, output.state

    # ------------------------------------------------------------------------------- fitting

    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir=None, init: str | Path | None = None,
            objective: Objective | None = None,
            parallel: DistributedTraining | None = None) -> NeuralLM:
        """Fit on ``corpus`` (see ``LanguageModel.fit``).

        Args:
            corpus: the ``Corpus``; its valid split selects the best weights when ``valid``.
            valid: whether to evaluate on the valid split during training.
            budget: overrides the train config's limits.
            checkpoint_dir: where to checkpoint and resume this run (its own checkpoint).
            init: a saved model (``.npz`` of ``save``) of this family and architecture to start
                from (fine-tuning): its weights and its fitted tokenizer are used, words
                outside that vocabulary become ``<unk>``, and the training log records how many.
            objective: what to optimise (``lmbench.training.objectives``); default
                ``default_objective()``.
            parallel: data-parallel training under torchrun
                (``lmbench.training.distributed``); None: this process alone.

        Returns:
            ``self``, fitted.
        """
        init_weights = None
        if init is not None:
            init_weights = self._warm_start(Path(init))
        elif not self.tokenizer.is_fitted:
            self.tokenizer.fit(corpus.train)
        train_ids = self.tokenizer.encode_split(corpus.train)
        valid_ids = None
        if valid and "valid" in corpus.splits:
            valid_ids = self.tokenizer.encode_split(corpus.split("valid"))
        self.fit_ids(train_ids, valid_ids, budget=budget, checkpoint_dir=checkpoint_dir,
                     init_weights=init_weights, objective=objective, parallel=parallel)
        if init is not None:
            unk = self.tokenizer.unk_id
            n_unk = 0 if unk is None else int((np.asarray(train_ids) == unk).sum())
            self.train_log_.init_from = str(init)
            self.train_log_.n_train_unk = n_unk
            self.train_log_.train_unk_rate = n_unk / max(1, len(train_ids))
        return self

    def fit_ids(self, train_ids, valid_ids=None, *, budget: Budget | None = None,
                checkpoint_dir=None, init_weights: dict[str, torch.Tensor] | None = None,
                objective: Objective | None = None,
                parallel: DistributedTraining | None = None) -> NeuralLM:
        """Train on (N,) ids of this model's fitted tokenizer; ``valid_ids`` for selection;
        ``init_weights`` (a state dict) to start from instead of a fresh initialisation."""
        check_n_params(self.estimated_n_params(self.tokenizer.vocab_size), f"model {self.name!r}")
        config = self.config_.train
        torch.manual_seed(config.seed)  # the initial weights, drawn on the CPU
        self.net = self.build_network(self.tokenizer.vocab_size).to(self.device)
        batches = StreamBatches(train_ids, config.batch_size, config.seq_len, seed=config.seed,
                                sequential=self.capabilities.carries_state)
        self.train_log_ = train(self, batches, objective or self.default_objective(), config,
                                init=init_weights, valid_ids=valid_ids, budget=budget,
                                checkpoint_dir=checkpoint_dir, parallel=parallel)
        return self

    def _warm_start(self, path: Path) -> dict[str, torch.Tensor]:
        """Check that ``path`` holds a model of this family and architecture, take its
        tokenizer and return its weights."""
        meta, arrays = read_npz(path, f"a {self.name} model")
        family = meta.get("family")
        if family != self.name:
            raise LmbenchError(f"{path}: init key 'family' is {family!r} there and {self.name!r} "
                               "here; a warm start needs a saved model of the same family")
        saved = asdict(build_config(self.config_class, meta.get("config", {}), str(path)))
        for key, value in self.config().items():
            if key != "train" and saved[key] != value:
                raise LmbenchError(f"{path}: config key {key!r} is {saved[key]!r} there and "
                                   f"{value!r} here; a warm start needs the same architecture")
        self.tokenizer = tokenizer_from_json(meta["tokenizer"])
        return {k[len("param/"):]: torch.from_numpy(v.copy())
                for k, v in arrays.items() if k.startswith("param/")}

    def estimated_n_params(self, vocab_size: int | None = None) -> int:
        """Parameters of ``build_network(vocab_size)``, tied matrices once, counted on torch's
        meta device (shapes without memory), so it is exact for every family and allocates
        nothing. ``vocab_size`` None: the fitted tokenizer's, or 2 (a lower bound) before the
        tokenizer is fitted. A family may override this with a formula from its config."""
        if vocab_size is None:
            vocab_size = self.tokenizer.vocab_size if self.tokenizer.is_fitted else 2
        with torch.device("meta"):
            network = self.build_network(vocab_size)
        return int(sum(p.numel() for p in network.parameters()))  # shared parameters once

    def _network(self) -> torch.nn.Module:
        if self.net is None:
            raise LmbenchError(f"the {self.name} model is not fitted; call fit(corpus) first")
        return self.net

    def network(self) -> torch.nn.Module:
        return self._network()

    @property
    def device(self) -> torch.device:
        return self.device_

    def to(self, device: str | torch.device) -> NeuralLM:
        """Move the network to ``device`` (or, before ``fit``, build it there); returns self."""
        self.device_ = resolve_device(device)
        if self.net is not None:
            self.net.to(self.device_)
        return self

    def _device_ids(self, values) -> torch.Tensor:
        """Ids (a tensor on any device, an array or nested lists) as int64 on ``device``."""
        return torch.as_tensor(values, dtype=torch.long, device=self.device_)

    def forward_logits(self, input_ids, state=None):
        """(B, T) ids -> (B, T, V) logits with gradients, in the network's current mode."""
        return self._network()(self._device_ids(input_ids), state)

    def train_config(self) -> TrainConfig:
        return self.config_.train

    def with_train_config(self, config: TrainConfig) -> NeuralLM:
        """A new unfitted model of this family, this config but ``train = config``, and this
        tokenizer (fitted, so ``fit`` keeps it), built on this model's device (a bench of a
        GPU model measures its training rate on the GPU)."""
        return type(self)(replace(self.config_, train=config), self.tokenizer).to(self.device)

    # ------------------------------------------------------------------------------- scoring

    def logits(self, input_ids, state=None):
        net = self._network()
        net.eval()
        with torch.inference_mode():
            logits, state = net(self._device_ids(input_ids), state)
        return logits.float(), state

    def token_logprobs(self, input_ids, target_ids, state=None):
        logits, state = self.logits(input_ids, state)  # (B, T, V)
        targets = self._device_ids(target_ids)
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        return torch.where(targets >= 0, picked, 0.0).double(), state

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
        arrays = {f"param/{k}": v.detach().float().cpu().numpy()
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
