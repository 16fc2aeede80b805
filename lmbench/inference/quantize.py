"""Post-training quantization of a neural model: int8 dynamic quantization and bf16 weights.

``quantize(model, QuantConfig(kind))`` returns a *new* model; the input is deep-copied first and
never changed.

- ``int8-dynamic`` (Jacob et al. 2018, "Quantization and Training of Neural Networks for
  Efficient Integer-Arithmetic-Only Inference"): every ``nn.Linear`` weight W is stored as int8
  with one scale, W ~ s_W * W_q, s_W = max|W| / 127; at run time each input x is quantized the
  same way with a scale s_x measured on x itself ("dynamic"), the product is accumulated in
  int32 and rescaled, y ~ s_x s_W (x_q W_q^T) + b. Embeddings, norms and attention stay fp32;
  a head tied to the embedding (gpt) gets its own int8 copy, the embedding keeps fp32.
  s_x is one scale per call, over every token of it, so a token's output depends slightly on
  the other tokens of the call: cached decoding and one pass agree to about the quantization
  error (0.05 in the logits of a tiny gpt), not to float round-off.
  Backends: ``torch.ao`` = ``torch.ao.quantization.quantize_dynamic`` (deprecated, still in
  torch 2.13; fbgemm / x86 int8 kernels on CPU); ``torchao`` = ``Int8DynamicActivationInt8
  WeightConfig`` when the ``torchao`` package is installed. ``auto`` picks ``torch.ao`` on CPU:
  torchao 0.18 runs on this CPU but has no fast int8 CPU kernel (a 256-1024-256 MLP ran about
  6x *slower* than fp32 with it, 1.3x faster with ``torch.ao``), and models here run on CPU.
- ``bf16``: all weights cast to bfloat16 (8 exponent bits like fp32, 8 bits of mantissa), so
  every matmul runs in bf16; logits are returned as fp32.

The quantized model answers ``logits`` / ``token_logprobs`` like any model; it cannot be trained
or saved (quantize the saved fp32 model again after loading). It declares exactly the optional
abilities of the model it copies (``lmbench.core.interface``: ``Trainable``, so its network is
measured, and whichever of ``SelectsStateRows``, ``Embeds``, ``CountsFlops``, ``RollsBackState``
the original has), each answered by the quantized copy (``lmbench.core.forwarding``).
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from lmbench.core.errors import LmbenchError
from lmbench.core.forwarding import declaring
from lmbench.core.interface import (
    CountsFlops,
    Embeds,
    LanguageModel,
    RollsBackState,
    SelectsStateRows,
    Trainable,
)

KINDS = ("int8-dynamic", "bf16")
BACKENDS = ("auto", "torch.ao", "torchao")


@dataclass(frozen=True)
class QuantConfig:
    kind: str = "int8-dynamic"  # int8-dynamic | bf16
    backend: str = "auto"  # int8 only: auto | torch.ao | torchao (see the module docstring)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LmbenchError(f"quantization kind must be one of {KINDS}, got {self.kind!r}")
        if self.backend not in BACKENDS:
            raise LmbenchError(f"quantization backend must be one of {BACKENDS}, "
                               f"got {self.backend!r}")
        if self.backend == "torchao" and importlib.util.find_spec("torchao") is None:
            raise LmbenchError("backend 'torchao' needs the torchao package (pip install torchao)")


class QuantizedLM(LanguageModel, Trainable):
    """A quantized copy of a neural model; scoring goes through the copy's own code.
    ``quantize`` returns a subclass that also declares the copied model's other abilities."""

    def __init__(self, inner: LanguageModel, config: QuantConfig, backend: str,
                 n_params: int) -> None:
        self.inner, self.quant_config, self.backend = inner, config, backend
        self.name = f"{inner.name}+{config.kind}"
        self.tokenizer = inner.tokenizer
        self._n_params = n_params

    @property
    def capabilities(self):
        return self.inner.capabilities

    def network(self) -> nn.Module:
        """The quantized network."""
        return self.inner.network()

    def forward_logits(self, input_ids, state=None):
        return self.inner.forward_logits(input_ids, state)

    def train_config(self):
        return self.inner.train_config()

    def with_train_config(self, config):
        raise LmbenchError("a quantized model cannot be trained; train the fp32 model, then "
                           "quantize it")

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def logits(self, input_ids, state=None):
        return self.inner.logits(input_ids, state)

    def token_logprobs(self, input_ids, target_ids, state=None):
        return self.inner.token_logprobs(input_ids, target_ids, state)

    def n_params(self) -> int:
        """The weights of the original model (quantized ones are no longer ``Parameter``s)."""
        return self._n_params

    def config(self) -> dict[str, Any]:
        return {**self.inner.config(),
                "quantization": {**asdict(self.quant_config), "backend": self.backend}}

    def training_log(self) -> dict | None:
        return self.inner.training_log()

    def fit(self, corpus, *, valid=True, budget=None, checkpoint_dir=None):
        raise LmbenchError("a quantized model cannot be trained; fit the fp32 model, then "
                           "quantize it")

    def save(self, path) -> None:
        raise LmbenchError("a quantized model cannot be saved; save the fp32 model and "
                           "quantize it after loading")

    @classmethod
    def load(cls, path):
        raise LmbenchError("quantized models are not saved; load the fp32 model and quantize it")


class _CountsQuantizedFlops(CountsFlops):
    def flops_per_token(self, context_len=None):
        """The original's count: the copy's, plus one multiply-add for each weight that int8
        quantization took out of the network's ``Parameter``s (still multiplied, in int8)."""
        hidden = self._n_params - self.inner.n_params()
        return self.inner.flops_per_token(context_len) + 2.0 * hidden


_ABILITIES = (SelectsStateRows, Embeds, CountsFlops, RollsBackState)  # what a copy answers


def _int8_torch_ao(net: nn.Module) -> None:
    with warnings.catch_warnings():  # the deprecation notice of torch.ao.quantization
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8, inplace=True)


def _int8_torchao(net: nn.Module) -> None:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(net, Int8DynamicActivationInt8WeightConfig())


def quantize(model: LanguageModel, config: QuantConfig = QuantConfig()) -> QuantizedLM:
    """A quantized copy of ``model`` (a fitted neural model: a ``Trainable``). The copy's network
    is quantized in place; it declares the abilities ``model`` declares.

    Example::

        small = quantize(model, QuantConfig("int8-dynamic"))
        lmbench.evaluate(small, corpus, "valid").perplexity
    """
    if not isinstance(model, Trainable):
        raise LmbenchError(f"quantize needs a fitted neural model; {model.name!r} has no network")
    if config.kind == "int8-dynamic" and model.device.type != "cpu":
        raise LmbenchError(f"int8-dynamic quantization runs on the CPU; the {model.name} model is "
                           f"on {model.device} (move it with .to('cpu') first, or use 'bf16')")
    n_params = model.n_params()
    inner = copy.deepcopy(model)  # the caller's model is never touched
    net = inner.network().eval()
    backend = "none"
    if config.kind == "bf16":
        net.to(torch.bfloat16)  # in place, as every quantization here
    else:
        backend = config.backend if config.backend != "auto" else "torch.ao"
        (_int8_torch_ao if backend == "torch.ao" else _int8_torchao)(net)
    quantized_class = declaring(QuantizedLM, model, abilities=_ABILITIES,
                                replacing={CountsFlops: _CountsQuantizedFlops})
    return quantized_class(inner, config, backend, n_params)
