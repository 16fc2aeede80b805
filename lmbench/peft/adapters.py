"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP",
section 2.1 and Figure 2).

After each sublayer a family names (``AdaptsLayers.adapter_sublayers()``,
``lmbench.core.interface``: every attention and feed-forward sublayer's output, before it is
added to the residual stream; for ``rnn``/``lstm``/``gru`` the recurrent stack's output; for
``nplm`` its hidden layer), a bottleneck with its own skip connection:

    adapter(h) = h + W_up f(W_down h + b_down) + b_up,    W_down (m, d),  W_up (d, m),  m << d

with f = GELU, W_down ~ N(0, 10^-4) (Houlsby's near-identity initialisation, std 1e-2), b_down
= 0 and W_up, b_up = 0, so every adapter starts as the identity and the adapted model equals the
base. With ``train_layer_norms`` (the paper's choice, on by default) the network's LayerNorm
gains and biases train too.

The adapter is a child module of the sublayer (``<sublayer>.adapter``) applied by a forward hook
on it, so the family's code and module names are unchanged; for a sublayer returning a tuple
(attention returns its output and its key/value cache) it acts on the first element.
``nn.LSTM``/``nn.GRU`` run all their layers in one fused call, so the recurrent families get one
adapter after the top layer, not one between layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import AdaptsLayers, LanguageModel
from lmbench.peft.adapted import AdaptedLM, adapt, register_method


@register_method
@dataclass(frozen=True)
class AdapterConfig:
    """Houlsby adapters' settings (module docstring)."""

    name: ClassVar[str] = "adapters"
    needs: ClassVar[type] = AdaptsLayers
    bottleneck: int = 16  # m, the adapter's hidden width
    train_layer_norms: bool = True  # also train the network's LayerNorms (Houlsby et al.)
    init_std: float = 1e-2  # std of W_down's normal initialisation

    def __post_init__(self) -> None:
        if isinstance(self.bottleneck, bool) or not isinstance(self.bottleneck, int) \
                or self.bottleneck < 1:
            raise LmbenchError(f"adapters bottleneck must be an integer >= 1, "
                               f"got {self.bottleneck!r}")
        if not self.init_std >= 0:
            raise LmbenchError(f"adapters init_std must be >= 0, got {self.init_std!r}")

    def inject(self, model: AdaptsLayers, network: nn.Module) -> list[nn.Module]:
        """An adapter after every sublayer the family names (module docstring)."""
        sublayers = model.adapter_sublayers()
        if not sublayers:
            raise LmbenchError(f"adapters: the {model.name} model names no sublayer to follow")
        device = next(network.parameters()).device
        for path, width in sublayers.items():
            sublayer = network.get_submodule(path)
            adapter = Bottleneck(width, self.bottleneck, self.init_std).to(device)
            sublayer.add_module("adapter", adapter)
            sublayer.register_forward_hook(AfterSublayer(adapter))
        if self.train_layer_norms:
            for module in network.modules():
                if isinstance(module, nn.LayerNorm):
                    for parameter in module.parameters():
                        parameter.requires_grad_(True)
        return []


class Bottleneck(nn.Module):
    """h + W_up GELU(W_down h + b_down) + b_up: (..., d) -> (..., d)."""

    def __init__(self, width: int, bottleneck: int, init_std: float) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(F.gelu(self.down(hidden)))


class AfterSublayer:
    """A forward hook applying ``adapter`` to a sublayer's output (its first element if the
    output is a tuple). A plain object, so deep-copying the network copies it with the
    adapter it holds."""

    def __init__(self, adapter: Bottleneck) -> None:
        self.adapter = adapter

    def __call__(self, module: nn.Module, args, output):
        if isinstance(output, tuple):
            return (self.adapter(output[0]), *output[1:])
        return self.adapter(output)


def adapters(model: LanguageModel, config: AdapterConfig = AdapterConfig(),
             **options) -> AdaptedLM:
    """``model`` with Houlsby adapters: ``adapt(model, config, **options)``."""
    return adapt(model, config, **options)
