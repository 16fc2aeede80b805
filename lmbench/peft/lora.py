"""LoRA: low-rank adaptation (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models", eq. 3).

A frozen weight W0 (d_out, d_in) gets a trainable low-rank update,

    h = W0 x + (alpha / r) B A x,     A (r, d_in),  B (d_out, r),

A drawn like a Linear layer's weight (Kaiming-uniform, bound 1 / sqrt(d_in), as loralib and
Hugging Face ``peft``; or Gaussian N(0, 1/r^2) with ``init = "gaussian"``) and B zero, so the
adapted model starts equal to the base. Dropout acts on the LoRA path's input only (x in
B A dropout(x)), as in loralib and ``peft``.

Where: the roles a family names through ``AdaptsLayers.adaptable_weights()``
(``lmbench.core.interface``), e.g. ``q``, ``k``, ``v``, ``attn_out``, ``mlp`` for the
Transformers, ``experts`` for ``moe``, ``input``, ``recurrent``, ``projection`` for
``rnn``/``lstm``/``gru``; default the family's ``default_adapted_roles()`` (Hu et al.: q and v).
Tied embeddings and output layers are never a role, and a weight shared between two modules is
refused. A fused q/k/v layer is adapted on the rows of the chosen projections only.

Three kinds of weight:

- ``linear``: an ``nn.Linear``; its module is wrapped, y = base(x) + pad((alpha/r) B A drop(x)),
  computed without forming B A.
- ``matrix``: a 2-D weight used inside a module, e.g. ``nn.LSTM``'s ``weight_ih_l0`` and
  ``weight_hh_l0`` (the fused cuDNN-style cell keeps its own kernels): the module runs through
  ``torch.func.functional_call`` with W0 + (alpha/r) B A in place of W0. Reimplementing the
  cells would lose the fused kernels and change the saved weights' names; a parametrization
  (``torch.nn.utils.parametrize``) leaves the cell holding non-leaf weights that cannot be
  deep-copied. No dropout on this path (there is no input x to drop at the weight).
- ``experts``: a stacked (E, d_in, d_out) expert weight used as bmm(x, W): per expert
  A_e (d_in, r), B_e (r, d_out), W_e = W0_e + (alpha/r) A_e B_e, through ``functional_call``.

``merge(adapted)`` folds (alpha/r) B A into W0 and puts the plain module back in the network (so
a merged model runs the base's code at the base's speed); ``unmerge`` subtracts it and wraps the
module again. Both return new models; the argument is unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import AdaptableWeight, AdaptsLayers, LanguageModel
from lmbench.peft.adapted import AdaptedLM, adapt, register_method

INITS = ("kaiming", "gaussian")


@register_method
@dataclass(frozen=True)
class LoRAConfig:
    """LoRA's settings (module docstring)."""

    name: ClassVar[str] = "lora"
    needs: ClassVar[type] = AdaptsLayers
    rank: int = 8  # r
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the LoRA path's input
    targets: tuple[str, ...] = ()  # roles to adapt; (): the family's default roles
    init: str = field(default="kaiming", metadata={"choices": INITS})  # A's initialisation

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise LmbenchError(f"lora rank must be an integer >= 1, got {self.rank!r}")
        if not self.alpha > 0:
            raise LmbenchError(f"lora alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise LmbenchError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in INITS:
            raise LmbenchError(f"lora init must be one of {INITS}, got {self.init!r}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not all(isinstance(t, str) and t for t in targets):
            raise LmbenchError(f"lora targets must be role names, got {self.targets!r}")
        object.__setattr__(self, "targets", targets)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def inject(self, model: AdaptsLayers, network: nn.Module) -> list[nn.Module]:
        """Wrap every module holding a weight of the chosen roles (module docstring)."""
        available = model.adaptable_weights()
        roles = self.targets or model.default_adapted_roles()
        chosen: dict[str, list[AdaptableWeight]] = {}
        for role in roles:
            weights = available.get(role, ())
            if not weights:
                known = ", ".join(sorted(r for r, w in available.items() if w))
                raise LmbenchError(f"lora target {role!r} matches no layer of the {model.name} "
                                   f"model; its roles: {known}")
            for weight in weights:
                chosen.setdefault(weight.module, []).append(weight)
        shared = _shared_parameters(network)
        wrappers = []
        for path, weights in chosen.items():
            module = network.get_submodule(path)
            for weight in weights:
                if id(getattr(module, weight.parameter)) in shared:
                    raise LmbenchError(f"lora target {path}.{weight.parameter} of the "
                                       f"{model.name} model is tied to another layer (the "
                                       "embedding); it is never adapted")
            wrapper = LoRAModule(module, path, weights, self)
            _set_submodule(network, path, wrapper)
            wrappers.append(wrapper)
        return wrappers


def _shared_parameters(network: nn.Module) -> set[int]:
    """ids of parameters reachable under two names (tied weights)."""
    seen: dict[int, int] = {}
    for _, parameter in network.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def _set_submodule(network: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, child, module)


class LoRAFactors(nn.Module):
    """A and B of one adapted weight (module docstring) and the update they make."""

    def __init__(self, weight: AdaptableWeight, shape: torch.Size, config: LoRAConfig,
                 device: torch.device) -> None:
        super().__init__()
        self.kind, r = weight.kind, config.rank
        if weight.kind == "experts":  # W (E, d_in, d_out), used as x W
            n_expert, d_in, d_out = shape
            a_shape, b_shape = (n_expert, d_in, r), (n_expert, r, d_out)
            self.rows = None
        else:  # W (d_out, d_in), used as W x
            d_out, d_in = shape
            start, stop = weight.rows or (0, d_out)
            if not 0 <= start < stop <= d_out:
                raise LmbenchError(f"lora: rows {weight.rows} of {weight.module} outside its "
                                   f"{d_out} outputs")
            self.rows = (start, stop, d_out)
            a_shape, b_shape = (r, d_in), (stop - start, r)
        self.lora_A = nn.Parameter(torch.empty(a_shape, device=device))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, device=device))
        if config.init == "gaussian":
            nn.init.normal_(self.lora_A, std=1.0 / r)
        else:  # kaiming_uniform_(a=sqrt(5)) of a (r, d_in) Linear weight: bound 1 / sqrt(d_in)
            bound = 1.0 / math.sqrt(d_in)
            nn.init.uniform_(self.lora_A, -bound, bound)

    def update(self) -> torch.Tensor:
        """B A in the weight's own shape (zero outside the adapted rows), unscaled."""
        if self.kind == "experts":
            return self.lora_A @ self.lora_B  # (E, d_in, d_out)
        start, stop, d_out = self.rows
        return F.pad(self.lora_B @ self.lora_A, (0, 0, start, d_out - stop))  # (d_out, d_in)


class LoRAModule(nn.Module):
    """A module (``base``) with LoRA on some of its weights, at ``path`` in its network."""

    def __init__(self, base: nn.Module, path: str, weights: list[AdaptableWeight],
                 config: LoRAConfig) -> None:
        super().__init__()
        self.base, self.path, self.scale = base, path, config.scale
        self.parameters_of = [w.parameter for w in weights]
        self.fast = all(w.kind == "linear" and w.parameter == "weight" for w in weights)
        if self.fast and not isinstance(base, nn.Linear):
            raise LmbenchError(f"lora: {path} is named a linear layer but is a "
                               f"{type(base).__name__}")
        self.factors = nn.ModuleList(
            LoRAFactors(w, getattr(base, w.parameter).shape, config,
                        getattr(base, w.parameter).device) for w in weights)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, *args, **kwargs):
        if self.fast:  # y = W0 x + b + s B A drop(x), rows by rows
            x = args[0]
            y = self.base(x)
            dropped = self.dropout(x)
            for factors in self.factors:
                start, stop, d_out = factors.rows
                delta = (dropped @ factors.lora_A.t()) @ factors.lora_B.t() * self.scale
                y = y + (delta if stop - start == d_out
                         else F.pad(delta, (start, d_out - stop)))  # (..., d_out)
            return y
        weights = {}
        for name, factors in zip(self.parameters_of, self.factors):
            current = weights.get(name, getattr(self.base, name))
            weights[name] = current + self.scale * factors.update()
        return functional_call(self.base, weights, args, kwargs)

    @torch.no_grad()
    def fold(self, sign: float) -> None:
        """W0 += sign * (alpha/r) B A for every adapted weight."""
        for name, factors in zip(self.parameters_of, self.factors):
            weight = getattr(self.base, name)
            weight.add_(sign * self.scale * factors.update().to(weight.dtype))


def _check_lora(adapted: AdaptedLM) -> None:
    if not isinstance(adapted, AdaptedLM) or not isinstance(adapted.method, LoRAConfig):
        raise LmbenchError(f"merge and unmerge take a LoRA-adapted model, got {adapted.name!r}")


def _lora_modules(adapted: AdaptedLM) -> list[LoRAModule]:
    return [module for module in adapted.injected if isinstance(module, LoRAModule)]


def lora(model: LanguageModel, config: LoRAConfig = LoRAConfig(), **options) -> AdaptedLM:
    """``model`` with LoRA: ``adapt(model, config, **options)`` (``train=TrainConfig(...)``)."""
    return adapt(model, config, **options)


def merge(adapted: AdaptedLM) -> AdaptedLM:
    """A copy of ``adapted`` with (alpha/r) B A folded into the base weights and the plain
    modules back in the network: equal to ``adapted`` within float round-off, at the base's
    speed. A merged model is not trained (``unmerge`` it first)."""
    _check_lora(adapted)
    merged = copy.deepcopy(adapted)
    if adapted.merged:
        return merged
    network = merged.network()
    for module in _lora_modules(merged):
        module.fold(+1.0)
        _set_submodule(network, module.path, module.base)
    merged.merged = True
    return merged


def unmerge(adapted: AdaptedLM) -> AdaptedLM:
    """A copy of a merged ``adapted`` with the update taken out of the base weights again and
    the LoRA modules back (``merge``'s inverse, within float round-off)."""
    _check_lora(adapted)
    unmerged = copy.deepcopy(adapted)
    if not adapted.merged:
        return unmerged
    network = unmerged.network()
    for module in _lora_modules(unmerged):
        module.fold(-1.0)
        _set_submodule(network, module.path, module)
    unmerged.merged = False
    return unmerged


def merge_and_unload(adapted: AdaptedLM) -> LanguageModel:
    """The base family's own model with the update folded into its weights (Hugging Face
    ``peft``'s ``merge_and_unload``): no LoRA left, saved and loaded like any model of its
    family."""
    return merge(adapted).inner
