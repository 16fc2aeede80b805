"""Attention backends: the explicit formula equals scaled_dot_product_attention within 1e-5, in
every mode the layers use, and selecting a backend changes nothing for existing callers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmbench.inference.attention import attention_table, benchmark_attention
from lmbench.models import layers
from lmbench.models.bert import BertConfig
from lmbench.models.gpt import GPTConfig, GPTNetwork
from lmbench.models.layers import attention_backend, explicit_attention
from lmbench.training.trainer import TrainConfig


def _qkv(T_q=7, T_k=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, T_q, 8, generator=generator)
    k, v = (torch.randn(2, 3, T_k, 8, generator=generator) for _ in range(2))
    return q, k, v


def test_explicit_equals_sdpa_causal_masked_and_bidirectional():
    q, k, v = _qkv()
    for kwargs in ({}, {"is_causal": True}):
        assert torch.allclose(explicit_attention(q, k, v, **kwargs),
                              F.scaled_dot_product_attention(q, k, v, **kwargs), atol=1e-5)
    q, k, v = _qkv(T_q=3, T_k=9)  # queries after a cache: a boolean mask, as layers builds it
    allowed = torch.arange(9)[None, :] <= 6 + torch.arange(3)[:, None]
    assert torch.allclose(explicit_attention(q, k, v, allowed),
                          F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), atol=1e-5)
    additive = torch.randn(3, 9)
    assert torch.allclose(explicit_attention(q, k, v, additive),
                          F.scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_outputs_and_cache_agree_across_backends(positions):
    torch.manual_seed(0)
    net = GPTNetwork(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32,
                               positions=positions), vocab_size=11).eval()
    ids = torch.randint(0, 11, (2, 20))
    reference, _ = net(ids)
    with attention_backend("explicit"):
        full, _ = net(ids)
        first, state = net(ids[:, :9])
        rest, _ = net(ids[:, 9:], state)
    assert torch.allclose(full, reference, atol=1e-5)
    assert torch.allclose(torch.cat((first, rest), 1), reference, atol=1e-5)


def test_bert_padding_mask_agrees_across_backends():
    from lmbench.models.bert import BertNetwork

    torch.manual_seed(0)
    config = BertConfig(n_layer=1, n_head=2, n_embd=16, block_size=16,
                        train=TrainConfig(seq_len=16))
    net = BertNetwork(config, 9).eval()
    ids = torch.randint(0, 9, (2, 12))
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[1, 8:] = False  # the second row is padded
    reference = net(ids, key_mask)
    with attention_backend("explicit"):
        explicit = net(ids, key_mask)
    assert torch.allclose(explicit, reference, atol=1e-5)


def test_the_switch_is_restored_and_checked():
    with attention_backend("explicit"):
        assert layers._attention_backend == "explicit"
    assert layers._attention_backend == "sdpa"
    with pytest.raises(ValueError, match="backend"):
        with attention_backend("flash2"):
            pass
    assert layers._attention_backend == "sdpa"


def test_benchmark_table_shows_the_quadratic_memory_of_the_explicit_form():
    rows = benchmark_attention((32, 128), n_repeats=1, n_head=2, head_dim=8)
    assert [(r.backend, r.context_len) for r in rows] == [
        ("sdpa", 32), ("explicit", 32), ("sdpa", 128), ("explicit", 128)]
    assert all(r.max_abs_diff < 1e-5 for r in rows)
    explicit = {r.context_len: r.peak_bytes for r in rows if r.backend == "explicit"}
    assert explicit[128] >= 2 * 128 * 128 * 2 * 4  # at least the (B, H, T, T) fp32 scores
    assert explicit[128] > 8 * explicit[32]  # T^2: 4x the length, 16x the score matrix
    assert "| explicit | 128 |" in attention_table(rows)
