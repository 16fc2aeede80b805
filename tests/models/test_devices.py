"""Devices without a GPU: every tensor a family makes follows its input's device, ``to`` moves
a model (or, before ``fit``, chooses where it trains), CPU-native models accept ids from any
device, and ``load`` returns a model on the CPU.

The audit moves fitted networks to torch's ``meta`` device (shapes without data): an op mixing a
CPU tensor with a meta one raises "Tensor on device cpu is not on the expected device meta", the
error a tensor created without ``device=`` would raise on CUDA. bert and moe read data while
routing or masking (``nonzero``, ``bincount``), which meta tensors cannot; the CUDA tests
(``tests/test_gpu.py``) cover them."""

from __future__ import annotations

import pytest
import torch

import lmbench
from lmbench.combinators.interpolation import InterpolatedLM
from lmbench.core.errors import LmbenchError
from lmbench.inference.quantize import QuantConfig, quantize

TRAIN = {"max_steps": 2, "batch_size": 2, "seq_len": 16, "warmup_steps": 1, "progress": False,
         "bf16": False}
META = torch.device("meta")

AUDITED = {
    "gpt": ("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}),
    "gpt-rotary": ("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                           "positions": "rotary"}),
    "lstm": ("lstm", {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char"}),
    "lstm-cache": ("lstm", {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char",
                            "cache_size": 8}),
    "nplm": ("nplm", {"embed_dim": 8, "hidden_dim": 8, "tokenizer": "char"}),
    "seq2seq": ("seq2seq", {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 8,
                            "train": {**TRAIN, "seq_len": 16}}),
}


def _fitted(family: str, options: dict, corpus):
    options = {"train": TRAIN, **options}
    return lmbench.build_model(family, **options).fit(corpus, valid=False)


@pytest.mark.parametrize("name", AUDITED)
def test_every_tensor_follows_the_models_device(name, tiny_corpus):
    family, options = AUDITED[name]
    model = _fitted(family, options, tiny_corpus).to(META)
    assert model.device == META
    ids = torch.randint(0, 5, (2, 6))  # on the CPU: the model moves them
    logprobs, _ = model.token_logprobs(ids, ids)
    logits, state = model.logits(ids[:, :3])
    more, state = model.logits(ids[:, 3:], state)  # continuing a state (KV cache, hidden, ...)
    picked = model.select_state(state, torch.tensor([1, 0, 1]))
    after, _ = model.logits(ids[:3, :1].new_zeros(3, 1), picked)
    assert {t.device for t in (logprobs, logits, more, after)} == {META}
    assert logprobs.shape == (2, 6) and after.shape[:2] == (3, 1)


def test_gpt_embed_and_long_contexts_follow_the_device(tiny_corpus):
    model = _fitted(*AUDITED["gpt"], tiny_corpus).to(META)
    assert model.embed(torch.randint(0, 5, (2, 40))).device == META  # chunks of block_size
    _, state = model.logits(torch.randint(0, 5, (1, 16)))
    logits, _ = model.logits(torch.randint(0, 5, (1, 4)), state)  # past the block: recomputed
    assert logits.device == META and logits.shape[:2] == (1, 4)


def test_to_before_fit_chooses_where_training_runs(tiny_corpus):
    model = lmbench.build_model("gpt", **AUDITED["gpt"][1], train=TRAIN).to("cpu")
    assert model.device == torch.device("cpu") and model.net is None
    model.fit(tiny_corpus, valid=False)
    assert {p.device for p in model.net.parameters()} == {torch.device("cpu")}
    same = lmbench.build_model("gpt", **AUDITED["gpt"][1], train=TRAIN).fit(tiny_corpus,
                                                                             valid=False)
    ids = torch.randint(0, 5, (1, 8))
    assert torch.equal(model.logits(ids)[0], same.logits(ids)[0])  # to("cpu") changes nothing


def test_to_after_fit_moves_the_network_and_load_returns_the_cpu(tiny_corpus, tmp_path):
    model = _fitted(*AUDITED["lstm"], tiny_corpus)
    path = tmp_path / "lstm.npz"
    model.save(path)
    assert model.to(META) is model and model.device == META
    assert {p.device for p in model.net.parameters()} == {META}
    loaded = lmbench.load_model(path)
    assert loaded.device == torch.device("cpu")
    assert {p.device for p in loaded.net.parameters()} == {torch.device("cpu")}
    cached = loaded.to(META).with_cache(8, 0.3, 0.1)  # shares the network: and its device
    assert cached.device == META


def test_to_refuses_unknown_and_absent_devices(tiny_corpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ngram = lmbench.build_model("ngram", order=2, tokenizer="char")
    gpt = lmbench.build_model("gpt", **AUDITED["gpt"][1])
    for model in (ngram, gpt):
        with pytest.raises(LmbenchError, match="device must be one of"):
            model.to("tpu")
        with pytest.raises(LmbenchError, match="no CUDA GPU"):
            model.to("cuda")
    assert gpt.device == torch.device("cpu")


def test_cpu_native_models_stay_on_the_cpu_and_read_ids_from_anywhere(tiny_corpus):
    ngram = lmbench.build_model("ngram", order=3, tokenizer="char").fit(tiny_corpus)
    assert ngram.to("cpu") is ngram and ngram.device == torch.device("cpu")
    lstm = _fitted(*AUDITED["lstm"], tiny_corpus)
    mixture = InterpolatedLM.of([ngram, lstm], [0.5, 0.5])
    ids = torch.randint(0, 5, (2, 6))
    expected, _ = mixture.token_logprobs(ids, ids)
    assert mixture.to("cpu") is mixture
    same, _ = mixture.token_logprobs(ids, ids)
    assert torch.equal(same, expected) and same.device == torch.device("cpu")
    mixture.to(META)  # moves the components; the mixing stays on the CPU
    assert lstm.device == META and ngram.device == mixture.device == torch.device("cpu")


def test_a_mixture_moves_the_components_fit_builds(tiny_corpus):
    lstm_options = {**AUDITED["lstm"][1], "train": TRAIN}
    mixture = lmbench.build_model(
        "interpolation", components=[{"family": "ngram", "order": 2, "tokenizer": "char"},
                                     {"family": "lstm", **lstm_options}])
    mixture.to("cpu").fit(tiny_corpus)
    assert [m.device for m in mixture.components_] == [torch.device("cpu")] * 2


def test_quantized_models_report_their_device_and_int8_needs_the_cpu(tiny_corpus):
    model = _fitted(*AUDITED["gpt"], tiny_corpus)
    assert quantize(model, QuantConfig("bf16")).device == torch.device("cpu")
    with pytest.raises(LmbenchError, match="int8-dynamic quantization runs on the CPU"):
        quantize(model.to(META), QuantConfig("int8-dynamic"))


def test_a_huggingface_model_reports_and_moves_its_networks_device():
    transformers = pytest.importorskip("transformers")
    from lmbench.adapters.huggingface import HuggingFaceLM

    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=257,
                                     n_positions=16, bos_token_id=256, eos_token_id=256)
    tokenizer = lmbench.build_model("ngram", tokenizer="byte").tokenizer
    model = HuggingFaceLM(transformers.GPT2LMHeadModel(config), tokenizer, name="tiny")
    assert model.device == torch.device("cpu")
    logits, _ = model.logits(torch.tensor([[256, 116, 104]]))
    assert logits.device == torch.device("cpu") and logits.shape == (1, 3, 257)
    assert model.to(META) is model and model.device == META
    assert {p.device for p in model.model.parameters()} == {META}
