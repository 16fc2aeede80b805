"""Neural families: cached / carried state equals full recomputation; family specifics."""

from __future__ import annotations

import pytest
import torch

import lmbench
from lmbench.models.gpt import GPTConfig, GPTNetwork
from lmbench.models.moe import MoEConfig, MoENetwork
from lmbench.models.nplm import NPLMConfig, NPLMNetwork
from lmbench.models.rnn import RNNConfig, RNNNetwork

DECODERS = {  # the gpt decoder and the moe decoder built on it share the KV cache
    "gpt": lambda positions: GPTNetwork(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32,
                                                  positions=positions), vocab_size=11),
    "moe": lambda positions: MoENetwork(MoEConfig(n_layer=2, n_head=2, n_embd=16, block_size=32,
                                                  positions=positions, n_expert=4, top_k=2),
                                        vocab_size=11),
}


@pytest.mark.parametrize("family", sorted(DECODERS))
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_decoder_kv_cache_equals_recomputation(family, positions):
    torch.manual_seed(0)
    net = DECODERS[family](positions).eval()
    ids = torch.randint(0, 11, (3, 20))
    full, _ = net(ids)
    logits, state = net(ids[:, :7])
    pieces = [logits]
    for chunk in (ids[:, 7:8], ids[:, 8:13], ids[:, 13:20]):  # one token, then several
        logits, state = net(chunk, state)
        pieces.append(logits)
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


def test_gpt_cache_past_the_block_slides_like_a_window():
    torch.manual_seed(0)
    net = GPTNetwork(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), 7).eval()
    ids = torch.randint(0, 7, (1, 12))
    _, state = net(ids[:, :8])
    logits, state = net(ids[:, 8:9], state)
    expected, _ = net(ids[:, 1:9])
    assert torch.allclose(logits[:, -1], expected[:, -1], atol=1e-5)
    assert state.length == 8


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_rnn_hidden_state_carried_equals_one_pass(cell):
    torch.manual_seed(0)
    net = RNNNetwork(cell, RNNConfig(embed_dim=8, hidden_dim=12, n_layer=2), 9).eval()
    ids = torch.randint(0, 9, (2, 30))
    full, _ = net(ids)
    first, state = net(ids[:, :11])
    second, _ = net(ids[:, 11:], state)
    assert torch.allclose(torch.cat((first, second), 1), full, atol=1e-6)


def test_nplm_context_window_and_state():
    torch.manual_seed(0)
    net = NPLMNetwork(NPLMConfig(context=3, embed_dim=4, hidden_dim=5), 6).eval()
    ids = torch.randint(0, 6, (2, 10))
    full, _ = net(ids)
    first, state = net(ids[:, :4])
    second, _ = net(ids[:, 4:], state)
    assert torch.allclose(torch.cat((first, second), 1), full, atol=1e-6)
    changed = ids.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 6  # only positions 2..4 see token 2
    out, _ = net(changed)
    assert torch.allclose(out[:, 5:], full[:, 5:]) and torch.allclose(out[:, :2], full[:, :2])
    assert not torch.allclose(out[:, 2:5], full[:, 2:5])


def test_gpt_evaluation_matches_a_direct_window_loss(tiny_corpus):
    """The evaluator's first window scores exactly what one forward pass over it gives."""
    train = {"max_steps": 20, "batch_size": 4, "seq_len": 16, "progress": False}
    model = lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=16,
                                train=train).fit(tiny_corpus)
    ids = torch.from_numpy(model.tokenizer.encode_split(tiny_corpus.split("test"))[:16])
    inputs = torch.cat((torch.tensor([model.tokenizer.boundary_id]), ids[:-1]))[None]
    logits, _ = model.net.eval()(inputs)
    direct = torch.nn.functional.cross_entropy(logits[0], ids, reduction="sum").item()
    from lmbench.evaluation.scoring import EvalConfig, score_stream

    nll = score_stream(model, ids.numpy(), EvalConfig(progress=False))
    assert nll.sum() == pytest.approx(direct, rel=1e-5)


def test_tied_weights_are_counted_once(tiny_corpus):
    model = lmbench.build_model("lstm", embed_dim=8, hidden_dim=8, n_layer=1,
                                train={"max_steps": 1, "progress": False})
    model.fit(tiny_corpus)
    total = sum(p.numel() for p in model.net.parameters())
    assert model.n_params() == total  # parameters() already yields the tied matrix once
    assert model.net.head.weight is model.net.embedding.weight
