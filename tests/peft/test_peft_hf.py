"""lmbench's LoRA against Hugging Face ``peft``'s (``LoraConfig`` + ``inject_adapter_in_model``)
with the same A and B: the same outputs, merged and unmerged (skipped without ``peft``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lmbench
from lmbench import peft as lmbench_peft
from lmbench.core.interface import AdaptableWeight
from lmbench.peft.lora import LoRAConfig, LoRAModule

hf_peft = pytest.importorskip("peft")

RANK, ALPHA = 4, 8.0


class _OneLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(12, 10)

    def forward(self, x):
        return self.lin(x)


def _hf_lora(module: nn.Module, targets: list[str]) -> nn.Module:
    config = hf_peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                target_modules=targets)
    return hf_peft.inject_adapter_in_model(config, module)


def test_one_linear_layer_matches_peft_merged_and_unmerged():
    torch.manual_seed(0)
    reference = _OneLinear()
    ours = LoRAModule(copy.deepcopy(reference.lin), "lin", [AdaptableWeight("lin")],
                      LoRAConfig(rank=RANK, alpha=ALPHA))
    with torch.no_grad():
        ours.factors[0].lora_B.normal_()
    theirs = _hf_lora(copy.deepcopy(reference), ["lin"])
    with torch.no_grad():
        theirs.lin.lora_A["default"].weight.copy_(ours.factors[0].lora_A)
        theirs.lin.lora_B["default"].weight.copy_(ours.factors[0].lora_B)
    x = torch.randn(3, 5, 12)
    expected = theirs(x)
    assert not torch.allclose(expected, reference(x), atol=1e-3)  # the update matters
    assert torch.allclose(ours(x), expected, atol=1e-6)
    theirs.lin.merge()
    ours.fold(+1.0)
    assert torch.allclose(ours.base(x), theirs(x), atol=1e-5)
    assert torch.allclose(ours.base.weight, theirs.lin.base_layer.weight, atol=1e-6)
    theirs.lin.unmerge()
    ours.fold(-1.0)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_a_gpt_adapted_by_both_gives_the_same_logits(tiny_corpus):
    train = {"max_steps": 5, "batch_size": 8, "seq_len": 16, "warmup_steps": 2,
             "learning_rate": 1e-2, "progress": False, "bf16": False}
    base = lmbench.build_model("gpt", n_layer=2, n_head=2, n_embd=16, block_size=24,
                               train=train).fit(tiny_corpus, valid=False)
    ours = lmbench_peft.adapt(base, LoRAConfig(rank=RANK, alpha=ALPHA,
                                               targets=("attn_out", "mlp")))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in ours.adapter_state().values():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    theirs = _hf_lora(copy.deepcopy(base.network()), ["proj", "up", "down"]).eval()
    for module in ours.network().modules():
        if isinstance(module, LoRAModule):
            layer = theirs.get_submodule(module.path)
            with torch.no_grad():
                layer.lora_A["default"].weight.copy_(module.factors[0].lora_A)
                layer.lora_B["default"].weight.copy_(module.factors[0].lora_B)
    ids = torch.randint(0, base.tokenizer.vocab_size, (2, 20),
                        generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(ids)[0]
    assert torch.allclose(ours.logits(ids)[0], expected, atol=1e-5)
    for layer in theirs.modules():
        if isinstance(layer, hf_peft.tuners.lora.LoraLayer):
            layer.merge()
    with torch.no_grad():
        merged_expected = theirs(ids)[0]
    assert torch.allclose(lmbench_peft.merge(ours).logits(ids)[0], merged_expected, atol=1e-5)
