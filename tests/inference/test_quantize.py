"""Quantization returns a new model whose scores stay close to the original's; the original is
left untouched."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import CountsFlops, Embeds, RollsBackState, SelectsStateRows, Trainable
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.quantize import QuantConfig, quantize


def _nll(model, ids) -> float:
    return float(score_stream(model, ids, EvalConfig(progress=False)).mean())


@pytest.mark.parametrize("kind, bound", [("int8-dynamic", 0.03), ("bf16", 0.03)])
def test_quantized_scores_stay_close_and_the_original_is_untouched(gpt_target, tiny_corpus,
                                                                   kind, bound):
    ids = gpt_target.tokenizer.encode_split(tiny_corpus.split("valid"))[:400]
    weights = {k: v.clone() for k, v in gpt_target.net.state_dict().items()}
    before = _nll(gpt_target, ids)
    small = quantize(gpt_target, QuantConfig(kind))
    after = _nll(small, ids)
    # mean NLL within `bound` nats per token, i.e. perplexity within about 3%
    assert abs(after - before) < bound
    assert after != before  # it really is another network
    assert small.network() is not gpt_target.net and small is not gpt_target
    assert all(torch.equal(v, weights[k]) for k, v in gpt_target.net.state_dict().items())
    assert _nll(gpt_target, ids) == before
    assert small.n_params() == gpt_target.n_params()
    assert small.config()["quantization"]["kind"] == kind


def test_int8_replaces_the_linear_layers(gpt_target):
    small = quantize(gpt_target)
    modules = list(small.network().modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)
    n_linear = sum(type(m) is torch.nn.Linear for m in gpt_target.net.modules())
    assert sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules) == n_linear
    assert small.config()["quantization"]["backend"] == "torch.ao"
    # The activation scale is measured over the whole call, so the cached path (other calls,
    # other scales) differs from one pass by about the quantization error itself, not 1e-5.
    ids = torch.tensor([gpt_target.tokenizer.encode("the cat sat")])
    reference, _ = gpt_target.logits(ids)
    first, state = small.logits(ids[:, :4])
    rest, _ = small.logits(ids[:, 4:], state)
    cached = torch.cat((first, rest), 1)
    full, _ = small.logits(ids)
    for logits in (cached, full):
        gap = torch.log_softmax(logits, -1) - torch.log_softmax(reference, -1)
        assert gap.abs().max() < 0.2

def test_a_quantized_model_is_not_trained_or_saved(gpt_target, tiny_corpus, tmp_path):
    small = quantize(gpt_target, QuantConfig("bf16"))
    with pytest.raises(LmbenchError):
        small.fit(tiny_corpus)
    with pytest.raises(LmbenchError):
        small.save(tmp_path / "m.npz")


def test_bad_configs_and_models_are_refused(ngram_draft):
    with pytest.raises(LmbenchError, match="kind"):
        QuantConfig("int4")
    with pytest.raises(LmbenchError, match="neural"):
        quantize(ngram_draft)
    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(LmbenchError, match="torchao"):
            QuantConfig(backend="torchao")


def test_a_quantized_model_declares_exactly_the_abilities_of_the_original(gpt_target,
                                                                         tiny_corpus):
    abilities = (Trainable, SelectsStateRows, RollsBackState, Embeds, CountsFlops)
    rnn = lmbench.build_model("rnn", embed_dim=8, hidden_dim=8, n_layer=1, tokenizer="char",
                              train={"max_steps": 2, "batch_size": 2, "seq_len": 8,
                                     "progress": False}).fit(tiny_corpus)
    for model in (gpt_target, rnn):
        for kind in ("int8-dynamic", "bf16"):
            small = quantize(model, QuantConfig(kind))
            assert ([isinstance(small, a) for a in abilities]
                    == [isinstance(model, a) for a in abilities]), (model.name, kind)
            if isinstance(model, CountsFlops):  # the same multiply-adds, in int8 or bf16
                assert small.flops_per_token(4) == pytest.approx(model.flops_per_token(4))
    assert not isinstance(quantize(rnn), Embeds)
    small = quantize(gpt_target)
    ids = torch.tensor([gpt_target.tokenizer.encode("the cat sat")])
    assert small.embed(ids).shape == gpt_target.embed(ids).shape
    _, state = small.logits(ids)
    assert small.state_length(small.rollback_state(state, 2)) == 2
    assert small.network() is not gpt_target.network()
