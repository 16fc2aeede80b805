"""``AdaptedLM``: a frozen base model plus a PEFT method's new weights, as an ordinary model.

``adapt(model, method_config)`` deep-copies the fitted base (the caller's model is never
touched), freezes every weight of the copy's network (``requires_grad = False``) and lets the
method (``lmbench.peft.lora``, ``lmbench.peft.adapters``) add its modules to that network in
place, at the layers the family names through its declared ``AdaptsLayers`` ability
(``lmbench.core.interface``). Scoring, generation, state selection, embedding and FLOP counts
are the copy's own code, so everything built on the ``LanguageModel`` interface works
unchanged, and the adapted model declares exactly the optional abilities of its base
(``lmbench.core.forwarding``).

Training goes through ``lmbench.training.trainer.train`` like any torch family: the optimiser
takes only the parameters with ``requires_grad`` (the method's), so the base stays bit-for-bit
what it was. ``fit(corpus)`` fine-tunes with the family's own objective (``default_objective``)
and the train config given to ``adapt`` (default: the base's), evaluating the start point at
step 0 (the zero-shot loss) and keeping the best weights on the valid split.

The adapter file (``save``/``save_adapter``, ``load_adapter``) holds only the new weights, as
float32 arrays named by their path in the network, with a manifest: the method, its config, the
base family and the base model's content digest (SHA-256 of its network's weights and its
config), so an adapter is never loaded onto another base.
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.forwarding import declaring
from lmbench.core.interface import (
    AdaptsLayers,
    Budget,
    LanguageModel,
    Trainable,
)
from lmbench.core.io import read_npz, write_npz_atomic
from lmbench.core.options import build_config
from lmbench.core.registry import Registry
from lmbench.models.catalog import MODELS
from lmbench.training.batching import StreamBatches
from lmbench.training.objectives import LossOutput, Objective
from lmbench.training.trainer import TrainConfig, TrainLog, train

ADAPTER_FORMAT = "lmbench-peft-adapter-1"


class Method(Protocol):
    """A PEFT method's config value: its ``name``, the ability a base must declare (``needs``,
    a class of ``lmbench.core.interface``), and how it adds its modules to a frozen network."""

    name: ClassVar[str]
    needs: ClassVar[type]

    def inject(self, model: AdaptsLayers, network: nn.Module) -> list[nn.Module]:
        """Add the method's modules to ``network`` (``model``'s, every weight frozen) in place;
        return those a merge may take out of the network again (each with its ``path`` there;
        may be empty)."""


METHODS: Registry[type] = Registry("peft method")  # name -> config class (a Method)


class LearnsStreamStart(ABC):
    """A method whose new weights are the state every stream starts from (prompt and prefix
    tuning, through ``StartsStreams.start_streams``). In a bounded context they take the first
    ``n_positions`` positions, so the adapted model's ``max_context`` and ``max_window`` shrink
    by that many and the evaluator's windows and generation never exceed the base's. Training
    reads independent windows, each a stream from the learned start (``FromStreamStart``), also
    for a family that otherwise carries its state from batch to batch: a carried state would
    cut the gradient's path to the start after the first batch."""

    @property
    @abstractmethod
    def n_positions(self) -> int: ...


@dataclass(frozen=True)
class FromStreamStart:
    """An objective read from the start of a stream on every batch (no carried state)."""

    objective: Objective

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        return LossOutput(self.objective(model, network, batch, None).loss, None)


class FoldsWhenSaved(ABC):
    """A method trained through a reparameterisation that its adapter file does not keep
    (prefix tuning's MLP): ``save`` writes ``folded(adapted)``, equal outputs, fewer weights."""

    @abstractmethod
    def folded(self, adapted: AdaptedLM) -> AdaptedLM:
        """An equal copy of ``adapted`` without the reparameterisation."""


def register_method(config_class: type) -> type:
    """Class decorator: make a method's config class known by its ``name``."""
    METHODS.register(config_class.name)(config_class)
    return config_class


def method_config(name: str, options: dict[str, Any] | None = None) -> Method:
    """The config of the method called ``name`` (``"lora"``, ``"adapters"``) from plain options
    (a run file's ``[peft]`` table, the CLI's flags): unknown names, keys or types are a one-line
    ``LmbenchError``."""
    return build_config(METHODS.get(name), dict(options or {}), f"peft method {name!r}")


def supports(model_class: type) -> tuple[str, ...]:
    """The PEFT methods a model class supports: those whose ``needs`` ability it declares
    (``AdaptsLayers`` for lora and adapters, ``StartsFromEmbeddings`` for prompt tuning,
    ``StartsFromKeyValues`` for prefix tuning), neural families only."""
    if not issubclass(model_class, Trainable):
        return ()
    return tuple(sorted(name for name, method in METHODS.items()
                        if issubclass(model_class, method.needs)))


def supported_methods() -> dict[str, tuple[str, ...]]:
    """Family name -> the PEFT methods it supports, for every registered family (what
    ``lmbench models`` prints)."""
    return {family: supports(MODELS.get(family)) for family in MODELS}


def content_digest(model: LanguageModel) -> str:
    """SHA-256 (first 16 hex digits) of a fitted neural model's config and network weights:
    the identity an adapter file names its base by."""
    if not isinstance(model, Trainable):
        raise LmbenchError(f"the {model.name} model is not a neural network")
    digest = hashlib.sha256(json.dumps(model.config(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.network().state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class AdaptedLM(LanguageModel, Trainable):
    """A frozen copy of a base model with a PEFT method's trainable modules (module docstring).
    ``adapt`` returns a subclass that also declares the base's other optional abilities."""

    def __init__(self, base: LanguageModel, inner: LanguageModel, method: Method,
                 train_config: TrainConfig, base_digest: str, injected: list[nn.Module]) -> None:
        self.base, self.inner, self.method = base, inner, method
        self.name = f"{base.name}+{method.name}"
        self.tokenizer = inner.tokenizer
        self.train_config_ = train_config
        self.base_digest = base_digest
        self.injected = injected  # the method's modules, also those a merge took out
        self.merged = False
        self.train_log_: TrainLog | None = None

    # ---------------------------------------------------------------- the interface, delegated

    @property
    def capabilities(self):
        """The base's; a method that occupies P positions of a bounded context (prompt and
        prefix tuning) leaves P fewer to the tokens."""
        capabilities = self.inner.capabilities
        if not isinstance(self.method, LearnsStreamStart) or capabilities.max_context is None:
            return capabilities
        context = capabilities.max_context - self.method.n_positions
        window = capabilities.max_window
        return replace(capabilities, max_context=context,
                       max_window=None if window is None else min(window, context))

    @property
    def family(self) -> str:
        return self.base.family

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def to(self, device) -> AdaptedLM:
        self.inner.to(device)
        for module in self.injected:  # merged ones are outside the network
            module.to(self.inner.device)
        return self

    def logits(self, input_ids, state=None):
        return self.inner.logits(input_ids, state)

    def token_logprobs(self, input_ids, target_ids, state=None):
        return self.inner.token_logprobs(input_ids, target_ids, state)

    def network(self) -> nn.Module:
        """The base's network with the method's modules in it (base weights frozen)."""
        return self.inner.network()

    def forward_logits(self, input_ids, state=None):
        return self.inner.forward_logits(input_ids, state)

    def auxiliary_loss(self):
        return self.inner.auxiliary_loss()

    def train_config(self) -> TrainConfig:
        return self.train_config_

    def with_train_config(self, config: TrainConfig) -> AdaptedLM:
        """Fresh (untrained) modules of the same method on the same base, trained with
        ``config``."""
        return adapt(self.base, self.method, train=config)

    def n_params(self) -> int:
        """Every parameter of the adapted network: the base's (LayerNorms that train
        included) and the method's new ones."""
        base_names = set(self.base.network().state_dict())
        new = sum(p.numel() for name, p in self._trainable().items() if name not in base_names)
        return self.base.n_params() + int(new)

    def n_trainable(self) -> int:
        """Parameters that training changes (the method's; LayerNorms if it trains them)."""
        return int(sum(p.numel() for p in self._trainable().values()))

    def trainable_fraction(self) -> float:
        """``n_trainable`` over the base model's parameters."""
        return self.n_trainable() / max(1, self.base.n_params())

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "peft": self.manifest()}

    def manifest(self) -> dict[str, Any]:
        """The method, its config, the base family and digest, the trainable count."""
        return {"method": self.method.name, "config": _plain(asdict(self.method)),
                "base_family": self.base.family, "base_digest": self.base_digest,
                "n_trainable": self.n_trainable(), "n_base_params": self.base.n_params()}

    def training_log(self) -> dict | None:
        return self.train_log_.to_dict() if self.train_log_ else None

    # ------------------------------------------------------------------------------- training

    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir=None, objective: Objective | None = None) -> AdaptedLM:
        """Fine-tune the method's weights on ``corpus.train`` (tokenized by the base's
        tokenizer; words outside its vocabulary become ``<unk>``), selecting the best weights
        on ``corpus.valid`` when ``valid``. Returns ``self``."""
        train_ids = self.tokenizer.encode_split(corpus.train)
        valid_ids = None
        if valid and "valid" in corpus.splits:
            valid_ids = self.tokenizer.encode_split(corpus.split("valid"))
        return self.fit_ids(train_ids, valid_ids, budget=budget, checkpoint_dir=checkpoint_dir,
                            objective=objective)

    def fit_ids(self, train_ids, valid_ids=None, *, budget: Budget | None = None,
                checkpoint_dir=None, objective: Objective | None = None) -> AdaptedLM:
        """Fine-tune on (N,) ids of the base's tokenizer (see ``fit``)."""
        if self.merged:
            raise LmbenchError(f"the {self.name} model is merged; unmerge it before training")
        config = self.train_config_
        objective = objective or self.inner.default_objective()
        sequential = self.capabilities.carries_state
        if isinstance(self.method, LearnsStreamStart):
            objective, sequential = FromStreamStart(objective), False
        batches = StreamBatches(np.asarray(train_ids), config.batch_size, config.seq_len,
                                seed=config.seed, sequential=sequential)
        start = {k: v.detach().clone() for k, v in self.network().state_dict().items()}
        self.train_log_ = train(self, batches, objective, config, init=start,
                                valid_ids=valid_ids, budget=budget, checkpoint_dir=checkpoint_dir)
        return self

    # ------------------------------------------------------------------------------ the file

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights by their path in the (unmerged) network."""
        return dict(self._trainable())

    def load_adapter_state(self, saved: dict[str, np.ndarray], train_log: dict | None,
                           path: str | Path) -> None:
        """Copy the weights an adapter file holds (``adapter_state``'s names) into this
        model, and its training log; a missing, unexpected or misshapen weight is a one-line
        ``LmbenchError`` naming ``path``."""
        expected = self.adapter_state()
        for problem, names in (("missing", expected.keys() - saved.keys()),
                               ("unexpected", saved.keys() - expected.keys())):
            if names:
                raise LmbenchError(f"{path}: damaged adapter file: {problem} weight "
                                   f"{sorted(names)[0]!r}")
        for name, parameter in expected.items():
            if tuple(saved[name].shape) != tuple(parameter.shape):
                raise LmbenchError(f"{path}: damaged adapter file: weight {name!r} has shape "
                                   f"{tuple(saved[name].shape)}, the method needs "
                                   f"{tuple(parameter.shape)}")
        with torch.no_grad():
            for name, parameter in expected.items():
                parameter.copy_(torch.from_numpy(saved[name]))
        try:
            self.train_log_ = TrainLog(**train_log) if train_log else None
        except TypeError as error:
            raise LmbenchError(f"{path}: damaged adapter file (training log: {error})") from None

    def _trainable(self) -> dict[str, torch.Tensor]:
        found = {name: p for name, p in self.network().named_parameters() if p.requires_grad}
        if self.merged:  # a merge took the method's modules out of the network
            for module in self.injected:
                found.update({f"{module.path}.{name}": p for name, p in module.named_parameters()
                              if p.requires_grad})
        return found

    def save(self, path: str | Path) -> None:
        """Write the adapter file (the new weights and the manifest, module docstring); it
        loads onto its base with ``lmbench.peft.load_adapter(base, path)``. A method trained
        through a reparameterisation (``FoldsWhenSaved``) is folded first."""
        saved = self.method.folded(self) if isinstance(self.method, FoldsWhenSaved) else self
        arrays = {f"adapter/{name}": p.detach().float().cpu().numpy()
                  for name, p in saved.adapter_state().items()}
        meta = {"format": ADAPTER_FORMAT, "peft": saved.manifest(),
                "train_log": self.training_log()}
        write_npz_atomic(Path(path), arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> AdaptedLM:
        raise LmbenchError(f"{path}: an adapter file loads onto its base model: "
                           "lmbench.peft.load_adapter(base, path)")


def _plain(value):
    """Tuples as lists (JSON), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def adapt(model: LanguageModel, method: Method, *, train: TrainConfig | None = None
          ) -> AdaptedLM:
    """``model`` (a fitted neural model whose family declares ``AdaptsLayers``) with
    ``method``'s new, trainable modules; ``model`` itself is unchanged.

    Args:
        model: the base.
        method: a method's config, e.g. ``LoRAConfig(rank=8)`` or ``AdapterConfig(16)``.
        train: the fine-tuning settings (default: the base's ``train_config()``, its
            ``seq_len`` cut to the adapted model's window where a prompt or prefix took
            positions of the context; a given ``seq_len`` above that window is an error).

    Returns:
        The adapted model; it starts equal to the base (LoRA's B and the adapters' up
        projection are zero).
    """
    if isinstance(model, AdaptedLM):
        raise LmbenchError(f"the {model.name} model is adapted already; adapt its base")
    if not isinstance(model, method.needs) or not isinstance(model, Trainable):
        supported = ", ".join(supports(type(model))) or "none"
        raise LmbenchError(f"peft method {method.name!r} is not supported for the "
                           f"{model.name} model (it needs a neural family with the "
                           f"{method.needs.__name__} ability; its methods: {supported})")
    digest = content_digest(model)  # also refuses an unfitted model
    inner = copy.deepcopy(model)
    network = inner.network()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    injected = method.inject(inner, network)
    if not any(p.requires_grad for p in network.parameters()):
        raise LmbenchError(f"peft method {method.name!r} found nothing to train in the "
                           f"{model.name} model")
    config = train or model.train_config()
    adapted = declaring(AdaptedLM, model)(model, inner, method, config, digest, injected)
    window = adapted.capabilities.max_window
    if window is not None and config.seq_len > window:  # a prompt or prefix took positions
        if train is not None:
            raise LmbenchError(f"train seq_len {config.seq_len} is above the {adapted.name} "
                               f"model's window of {window} tokens")
        adapted.train_config_ = replace(config, seq_len=window)
    return adapted


def finetune(adapted: AdaptedLM, corpus, *, valid: bool = True, budget: Budget | None = None,
             checkpoint_dir=None, objective: Objective | None = None) -> AdaptedLM:
    """A fine-tuned copy of ``adapted`` (which is unchanged): only the method's weights train,
    through ``lmbench.training.trainer.train``; ``corpus`` is a ``Corpus`` or (N,) ids of the
    base's tokenizer (then no validation)."""
    trained = copy.deepcopy(adapted)
    if isinstance(corpus, (np.ndarray, list, torch.Tensor)):
        return trained.fit_ids(np.asarray(corpus), None, budget=budget,
                               checkpoint_dir=checkpoint_dir, objective=objective)
    return trained.fit(corpus, valid=valid, budget=budget, checkpoint_dir=checkpoint_dir,
                       objective=objective)


def save_adapter(adapted: AdaptedLM, path: str | Path) -> None:
    """Write ``adapted``'s adapter file (``AdaptedLM.save``)."""
    adapted.save(path)


def load_adapter(base: LanguageModel, path: str | Path) -> AdaptedLM:
    """The adapted model ``save_adapter`` wrote, rebuilt on ``base``: a file of another base
    (another content digest), a damaged file or an unknown method is a one-line
    ``LmbenchError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise LmbenchError(f"{path}: adapter file not found")
    meta, arrays = read_npz(path, "a peft adapter")
    manifest = meta.get("peft")
    if meta.get("format") != ADAPTER_FORMAT or not isinstance(manifest, dict):
        raise LmbenchError(f"{path}: not a peft adapter file (no {ADAPTER_FORMAT} manifest)")
    digest = content_digest(base)
    if manifest.get("base_digest") != digest:
        raise LmbenchError(f"{path}: adapter of another base model (base digest "
                           f"{manifest.get('base_digest')!r}, this {base.name} model is "
                           f"{digest!r})")
    options = manifest.get("config")
    method = method_config(str(manifest.get("method")), options if isinstance(options, dict)
                           else {})
    adapted = adapt(base, method)
    saved = {k[len("adapter/"):]: v for k, v in arrays.items() if k.startswith("adapter/")}
    adapted.load_adapter_state(saved, meta.get("train_log"), path)
    return adapted
