"""Prefix tuning: learned key/value prefixes in every attention layer (Li & Liang 2021,
"Prefix-Tuning: Optimizing Continuous Prompts for Generation", sections 4.2-4.3).

Every attention layer l of the frozen model gets P trainable key and value vectors that every
token attends to, as if P earlier positions had produced them (eq. 4 of the paper: h_i =
P_theta[i, :] for i in the prefix). For the GPT family that is a learned KV-cache state: the
family's ``StartsFromKeyValues`` ability (``lmbench.core.interface``) turns the per-layer
(keys, values), each (B, n_head, P, head_dim), into the state every stream starts from
(``start_streams``); attention masks none of the P positions, the tokens sit at positions P
onwards (as with Hugging Face ``past_key_values``), the prefix stays in the cache when the
window slides, and the adapted model's context is P smaller. Families without attention
(``rnn``, ``lstm``, ``gru``, ``nplm``) do not support it.

With ``reparameterize`` (section 4.3: optimising P_theta directly is unstable), training
computes the prefixes as an MLP of a smaller table, P_theta[i, :] = MLP_theta(P'_theta[i, :]),
with P' (P, d_model) and MLP = Linear(d_model, ``hidden``), tanh, Linear(``hidden``,
n_layer * 2 * d_model) (the shape of Hugging Face ``peft``'s ``PrefixEncoder``). After training
only P_theta is needed: the adapter file is written folded (``fold``, applied by ``save``), so
it holds one (P, n_layer, 2, d_model) tensor and loads as ``reparameterize = false``, giving the
same log-probabilities. Without it, P_theta starts N(0, ``init_std``^2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, StartsFromKeyValues
from lmbench.peft.adapted import (
    AdaptedLM,
    FoldsWhenSaved,
    LearnsStreamStart,
    adapt,
    register_method,
)


@register_method
@dataclass(frozen=True)
class PrefixTuningConfig(LearnsStreamStart, FoldsWhenSaved):
    """Prefix tuning's settings (module docstring)."""

    name: ClassVar[str] = "prefix"
    needs: ClassVar[type] = StartsFromKeyValues
    n_prefix_tokens: int = 10  # P, prefix positions per attention layer
    reparameterize: bool = True  # train P_theta as MLP(P') (Li & Liang section 4.3)
    hidden: int = 512  # the reparameterising MLP's hidden width
    init_std: float = 0.02  # std of P_theta's normal start without the reparameterisation

    def __post_init__(self) -> None:
        for key in ("n_prefix_tokens", "hidden"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LmbenchError(f"prefix {key} must be an integer >= 1, got {value!r}")
        if not isinstance(self.reparameterize, bool):
            raise LmbenchError(f"prefix reparameterize must be true or false, "
                               f"got {self.reparameterize!r}")
        if not self.init_std >= 0:
            raise LmbenchError(f"prefix init_std must be >= 0, got {self.init_std!r}")

    @property
    def n_positions(self) -> int:
        return self.n_prefix_tokens

    def inject(self, model: StartsFromKeyValues, network: nn.Module) -> list[nn.Module]:
        """Add the prefix (``network.prefix``) and start every stream from its keys/values."""
        context = model.capabilities.max_context
        if context is not None and self.n_prefix_tokens >= context:
            raise LmbenchError(f"prefix n_prefix_tokens = {self.n_prefix_tokens} must be below "
                               f"the {model.name} model's context of {context} tokens")
        device = next(network.parameters()).device
        prefix = Prefix(self, *model.attention_shape()).to(device)
        network.add_module("prefix", prefix)
        model.start_streams(PrefixStart(model, prefix))
        return []

    def folded(self, adapted: AdaptedLM) -> AdaptedLM:
        """See ``fold``."""
        return fold(adapted)


class Prefix(nn.Module):
    """P_theta (P, n_layer, 2, d_model), directly (``key_values``) or as MLP(P')
    (``embedding`` (P, d_model) and ``mlp``), and the per-layer keys and values it gives."""

    def __init__(self, config: PrefixTuningConfig, n_layer: int, n_head: int,
                 head_dim: int) -> None:
        super().__init__()
        self.shape = (config.n_prefix_tokens, n_layer, 2, n_head * head_dim)
        self.n_head, self.head_dim = n_head, head_dim
        P, width = config.n_prefix_tokens, n_head * head_dim
        if config.reparameterize:
            self.embedding = nn.Parameter(torch.randn(P, width))  # P' (as nn.Embedding's)
            self.mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.Tanh(),
                                     nn.Linear(config.hidden, n_layer * 2 * width))
        else:
            self.key_values = nn.Parameter(torch.randn(self.shape) * config.init_std)

    def table(self) -> torch.Tensor:
        """P_theta, (P, n_layer, 2, d_model)."""
        if "key_values" in self._parameters:
            return self.key_values
        return self.mlp(self.embedding).view(self.shape)

    def forward(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each (B, n_head, P, head_dim)."""
        P, n_layer = self.shape[:2]
        heads = self.table().view(P, n_layer, 2, self.n_head, self.head_dim)
        heads = heads.permute(1, 2, 3, 0, 4)  # (n_layer, 2, H, P, D)
        return [(layer[0][None].expand(batch_size, -1, -1, -1),
                 layer[1][None].expand(batch_size, -1, -1, -1)) for layer in heads]


class PrefixStart:
    """A stream's start (``StartsStreams.start_streams``): the state holding the prefix. A plain
    object, so deep-copying the model copies it with the model and prefix it holds."""

    def __init__(self, model: StartsFromKeyValues, prefix: Prefix) -> None:
        self.model, self.prefix = model, prefix

    def __call__(self, batch_size: int):
        return self.model.state_from_key_values(self.prefix(batch_size))


def fold(adapted: AdaptedLM) -> AdaptedLM:
    """A copy of a prefix-tuned ``adapted`` without the reparameterising MLP: P_theta computed
    once becomes the plain ``key_values`` of a ``reparameterize = false``
    prefix on the same base, with the same log-probabilities and training log; ``adapted`` is
    unchanged (an unreparameterised one is copied)."""
    method = adapted.method
    if not isinstance(adapted, AdaptedLM) or not isinstance(method, PrefixTuningConfig):
        raise LmbenchError(f"fold takes a prefix-tuned model, got {adapted.name!r}")
    plain = replace(method, reparameterize=False)
    folded = adapt(adapted.base, plain, train=adapted.train_config())
    with torch.no_grad():
        table = adapted.network().prefix.table()  # (P, n_layer, 2, d_model)
    folded.load_adapter_state({"prefix.key_values": table.float().cpu().numpy()},
                              adapted.training_log(), "fold")
    return folded.to(adapted.device)


def prefix_tuning(model: LanguageModel, config: PrefixTuningConfig = PrefixTuningConfig(),
                  **options) -> AdaptedLM:
    """``model`` with prefix tuning: ``adapt(model, config, **options)``."""
    return adapt(model, config, **options)
