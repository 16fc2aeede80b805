"""The ``moe`` family: the degenerate mixture is the dense MLP, the auxiliary losses, capacity
and dropping, the KV cache, training and saving."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import lmbench
import lmbench.models.moe  # noqa: F401  (registers "moe" until lmbench.models imports it)
from lmbench.evaluation.scoring import EvalConfig, evaluate
from lmbench.models import load_model
from lmbench.models.layers import MLP
from lmbench.models.moe import MoEConfig, MoEFeedForward, balance_loss, z_loss

TINY_TRAIN = {"max_steps": 40, "batch_size": 8, "seq_len": 16, "eval_every": 20,
              "warmup_steps": 5, "learning_rate": 1e-2, "progress": False}


def _layer(**options) -> MoEFeedForward:
    torch.manual_seed(0)
    return MoEFeedForward(MoEConfig(n_embd=8, n_head=2, **options))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_one_expert_top_one_is_the_dense_mlp(bias, training):
    moe = _layer(n_expert=1, top_k=1, capacity_factor=100.0, bias=bias)
    mlp = MLP(8, 0.0, bias)
    with torch.no_grad():
        moe.up.weight[0] = mlp.up.weight.t()  # Linear keeps (out, in); experts keep (in, out)
        moe.down.weight[0] = mlp.down.weight.t()
        if bias:
            mlp.up.bias.normal_(), mlp.down.bias.normal_()  # nonzero, so they are checked too
            moe.up.bias.copy_(mlp.up.bias), moe.down.bias.copy_(mlp.down.bias)
    x = torch.randn(3, 5, 8)
    moe.train(training)
    assert torch.allclose(moe(x), mlp(x), atol=1e-6)
    assert int(moe.n_dropped) == 0


@pytest.mark.parametrize("top_k", [1, 2])
def test_balance_loss_is_one_for_uniform_routing_and_larger_when_skewed(top_k):
    E, N = 4, 8
    uniform = torch.full((N, E), 1 / E)
    even = (torch.arange(N)[:, None] + torch.arange(top_k)[None, :]) % E  # (N, k), each once
    assert balance_loss(uniform, even, E).item() == pytest.approx(1.0)
    rotated = torch.stack([torch.tensor([0.4, 0.3, 0.2, 0.1]).roll(n) for n in range(N)])
    preferred = rotated.topk(top_k, dim=-1).indices  # every expert equally often, P uniform
    assert balance_loss(rotated, preferred, E).item() == pytest.approx(1.0)
    skewed = torch.tensor([[0.7, 0.2, 0.05, 0.05]]).expand(N, E)
    chosen = skewed.topk(top_k, dim=-1).indices
    assert balance_loss(skewed, chosen, E).item() > 1.5


def test_layer_auxiliary_loss_is_alpha_when_uniform_and_more_when_skewed():
    moe = _layer(n_expert=4, top_k=2, balance_loss_weight=0.5, router_z_loss_weight=0.0).train()
    x = torch.rand(2, 6, 8) + 0.1  # positive inputs
    with torch.no_grad():
        moe.router.weight.zero_()  # p = 1/E for every token
    moe(x)
    assert moe.aux_loss.item() == pytest.approx(0.5)
    with torch.no_grad():
        moe.router.weight[0] = 1.0  # expert 0 preferred by every token
    moe(x)
    assert moe.aux_loss.item() > 0.5 * 1.2
    z_only = _layer(n_expert=4, balance_loss_weight=0.0, router_z_loss_weight=2.0).train()
    with torch.no_grad():
        z_only.router.weight.zero_()
    z_only(x)
    assert z_only.aux_loss.item() == pytest.approx(2.0 * math.log(4) ** 2)
    assert z_loss(torch.zeros(3, 4)).item() == pytest.approx(math.log(4) ** 2)


@pytest.mark.parametrize("top_k", [1, 2])
def test_small_capacity_drops_tokens_in_training_only(top_k):
    moe = _layer(n_expert=4, top_k=top_k, capacity_factor=0.25).train()
    x = torch.randn(4, 8, 8)  # N = 32 tokens
    capacity = math.ceil(0.25 * 32 * top_k / 4)
    with torch.no_grad():
        tokens = x.reshape(32, 8)
        experts = torch.softmax(tokens @ moe.router.weight.t(), -1).topk(top_k, -1).indices
    counts = torch.bincount(experts.flatten(), minlength=4)
    expected = int((counts - capacity).clamp(min=0).sum())
    y = moe(x)
    assert expected > 0 and int(moe.n_dropped) == expected
    assert int(moe.n_routed.sum()) == 32 * top_k
    if top_k == 1:  # a dropped token gets nothing: only the residual carries it
        assert int((y.reshape(32, 8).abs().sum(-1) == 0).sum()) == expected
    moe.eval()
    y = moe(x)
    assert int(moe.n_dropped) == expected  # inference neither drops nor counts
    assert (y.reshape(32, 8).abs().sum(-1) > 0).all()
    roomy = _layer(n_expert=4, top_k=top_k, capacity_factor=4.0).train()
    roomy(x)
    assert int(roomy.n_dropped) == 0


def test_config_is_checked():
    with pytest.raises(lmbench.LmbenchError):
        MoEConfig(n_expert=2, top_k=3)
    with pytest.raises(lmbench.LmbenchError):
        MoEConfig(capacity_factor=0.0)


@pytest.fixture(scope="module")
def fitted(tiny_corpus):
    return lmbench.build_model("moe", n_layer=1, n_head=2, n_embd=16, block_size=24, n_expert=4,
                               top_k=2, capacity_factor=1.0, train=TINY_TRAIN).fit(tiny_corpus)


def test_trains_beats_uniform_and_logs_routing(fitted, tiny_corpus):
    result = evaluate(fitted, tiny_corpus, "train", EvalConfig(progress=False))
    assert result.nll_nats / result.n_tokens < math.log(fitted.tokenizer.vocab_size)
    log = fitted.training_log()
    assert log["steps"] == 40
    (utilization,) = log["expert_utilization"]  # one layer
    assert len(utilization) == 4 and sum(utilization) == pytest.approx(1.0)
    assert 0.0 <= log["dropped_token_rate"] < 1.0
    assert fitted.net.moe_layers()[0].n_routed.sum() == 40 * 8 * 16 * 2  # steps B T k


def test_auxiliary_loss_enters_the_training_loss_only_in_training(fitted):
    fitted = copy.deepcopy(fitted)  # training-mode passes here would add to its counts
    inputs = torch.randint(0, fitted.tokenizer.vocab_size, (2, 8))
    fitted.net.train()
    loss, _ = fitted.training_loss(fitted.net, inputs, inputs)
    aux = fitted.auxiliary_loss()
    assert isinstance(aux, torch.Tensor) and aux.item() > 0
    logits, _ = fitted.net(inputs)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs.flatten())
    assert loss.item() == pytest.approx(ce.item() + aux.item(), rel=1e-5)
    aux.backward()
    assert fitted.net.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    fitted.net.zero_grad(set_to_none=True)
    fitted.net.eval()
    assert fitted.auxiliary_loss() == 0.0


def test_save_and_load_round_trip(fitted, tiny_corpus, tmp_path):
    fitted.save(tmp_path / "moe.npz")
    same = load_model(tmp_path / "moe.npz")
    ids = torch.from_numpy(fitted.tokenizer.encode_split(tiny_corpus.split("test"))[:24])[None]
    assert torch.equal(fitted.token_logprobs(ids, ids)[0], same.token_logprobs(ids, ids)[0])
    assert same.config() == fitted.config()
    assert same.training_log() == fitted.training_log()
    same.reset_routing_stats()
    assert same.training_log()["expert_utilization"] == [[0.0] * 4]
    assert same.training_log()["dropped_token_rate"] == 0.0
