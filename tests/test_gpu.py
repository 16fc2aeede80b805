"""On CUDA (skipped without it, ``tests/conftest.py``): training, scoring, decoding and bench on a
GPU give what the CPU gives.

Tolerances, all relative, fp32 on both devices (``bf16 = false``: autocast would round
differently on the two):
- the same weights scored on CUDA and on the CPU: perplexity within 5e-3 (different kernels;
  cuDNN's LSTM may use TF32, ~1e-3 relative per product);
- trained on each device from one seed (the same initial weights, drawn on the CPU, and the
  same batches): the final validation loss within 2% and the test perplexity within 3% (the
  trajectories drift apart by float rounding);
- KV-cached greedy decoding on CUDA: the same ids as recomputing without the cache.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lmbench
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.evaluation.throughput import BenchConfig, measure_throughput
from lmbench.inference.decoding import beam_search
from lmbench.inference.sampling import SamplingConfig, generate
from lmbench.inference.speculative import speculative_generate
from lmbench.runs.config import parse_config
from lmbench.runs.runner import run

pytestmark = pytest.mark.gpu

SAME_WEIGHTS_RTOL = 5e-3
VALID_RTOL = 0.02
PERPLEXITY_RTOL = 0.03
GREEDY = SamplingConfig(temperature=0)
TRAIN = {"max_steps": 60, "batch_size": 8, "seq_len": 32, "warmup_steps": 5,
         "learning_rate": 1e-2, "eval_every": 60, "eval_tokens": 2000, "bf16": False,
         "progress": False}
FAMILIES = {
    "gpt": ("gpt", {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}),
    "lstm": ("lstm", {"embed_dim": 32, "hidden_dim": 32, "n_layer": 2, "dropout": 0.0,
                      "tokenizer": "char"}),
    "lstm-cache": ("lstm", {"embed_dim": 32, "hidden_dim": 32, "n_layer": 1, "dropout": 0.0,
                            "tokenizer": "char", "cache_size": 64}),
    "gpt-rotary": ("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32,
                           "positions": "rotary"}),
    "moe": ("moe", {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}),
    "bert": ("bert", {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}),
    "seq2seq": ("seq2seq", {"n_layer": 1, "n_head": 2, "n_embd": 32, "segment_len": 16}),
    "nplm": ("nplm", {"embed_dim": 16, "hidden_dim": 32, "tokenizer": "char",
                      "mix_trigram": 0.3}),
}


def _fit(name: str, corpus, device: str):
    family, options = FAMILIES[name]
    return lmbench.build_model(family, **options, train=TRAIN).to(device).fit(corpus)


def _perplexity(model, corpus) -> float:
    ids = model.tokenizer.encode_split(corpus.split("test"))
    return float(np.exp(score_stream(model, ids, EvalConfig(progress=False)).mean()))


@pytest.mark.parametrize("name", FAMILIES)
def test_the_same_weights_score_alike_on_cuda(name, tiny_corpus):
    cpu = _fit(name, tiny_corpus, "cpu")
    cuda = copy.deepcopy(cpu).to("cuda")
    assert cuda.device.type == "cuda"
    assert _perplexity(cuda, tiny_corpus) == pytest.approx(_perplexity(cpu, tiny_corpus),
                                                           rel=SAME_WEIGHTS_RTOL)
    ids = torch.randint(0, cpu.tokenizer.vocab_size, (2, 8))
    logits, state = cuda.logits(ids.cuda())  # ids from the GPU are read too
    assert logits.device == cuda.device
    cuda.select_state(state, torch.tensor([1, 0]))  # rows from the CPU


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_training_on_cuda_matches_the_cpu(name, tiny_corpus):
    cpu, cuda = _fit(name, tiny_corpus, "cpu"), _fit(name, tiny_corpus, "cuda")
    assert {p.device.type for p in cuda.net.parameters()} == {"cuda"}
    cpu_valid = cpu.training_log()["best_valid_nats"]
    cuda_valid = cuda.training_log()["best_valid_nats"]
    assert cuda_valid == pytest.approx(cpu_valid, rel=VALID_RTOL)
    assert _perplexity(cuda, tiny_corpus) == pytest.approx(_perplexity(cpu, tiny_corpus),
                                                           rel=PERPLEXITY_RTOL)


def test_kv_cached_decoding_on_cuda_equals_recomputation(tiny_corpus):
    model = _fit("gpt", tiny_corpus, "cuda")
    prompt = model.tokenizer.encode("the cat")
    for new in (8, 40):  # within the block, and past it (the cache slides)
        cached = generate(model, prompt, new, sampler=GREEDY)
        assert cached == generate(model, prompt, new, sampler=GREEDY, use_cache=False)
    ids = torch.randint(0, model.tokenizer.vocab_size, (2, 24), device="cuda")
    whole, _ = model.logits(ids)
    first, state = model.logits(ids[:, :10])
    rest, _ = model.logits(ids[:, 10:], state)
    torch.testing.assert_close(torch.cat((first, rest), dim=1), whole, atol=1e-4, rtol=1e-4)
    sampled = generate(model, prompt, 16, seed=3, sampler=SamplingConfig(top_p=0.9))
    assert sampled == generate(model, prompt, 16, seed=3, sampler=SamplingConfig(top_p=0.9))
    assert len(beam_search(model, prompt, 8, beam_width=3).ids) == 8


def test_speculative_decoding_across_devices(tiny_corpus):
    target = _fit("gpt", tiny_corpus, "cuda")
    draft = lmbench.build_model("ngram", order=3, tokenizer="char")
    draft.tokenizer = target.tokenizer
    draft.fit(tiny_corpus)  # the draft on the CPU, the target on the GPU
    prompt = target.tokenizer.encode("the")
    ids, stats = speculative_generate(target, draft, prompt, 20, gamma=3)
    assert ids == generate(target, prompt, 20, sampler=GREEDY)
    assert stats.n_drafted > 0


def test_bench_and_runs_on_cuda_record_the_device(tiny_corpus, tmp_path):
    model = _fit("gpt", tiny_corpus, "cuda")
    result = measure_throughput(model, tiny_corpus, BenchConfig.quick())
    assert result.device.startswith("cuda:") and result.hardware["device"] == result.device
    assert result.tensor_memory_source == "cuda.max_memory_allocated"
    assert result.peak_tensor_bytes >= result.weight_bytes
    folder = tmp_path / "tiny"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(tiny_corpus.split(split).text)
    family, options = FAMILIES["lstm"]
    config = parse_config({"corpus": str(folder), "splits": ["test"], "device": "cuda",
                           "models": [{"family": family, "label": "lstm", **options,
                                       "train": TRAIN},
                                      {"family": "ngram", "label": "kn3", "order": 3,
                                       "tokenizer": "char"}]})
    lstm, ngram = run(config, tmp_path / "out", save_models=True, log=lambda line: None)
    assert lstm.device.startswith("cuda:") and ngram.device == "cpu"
    loaded = lmbench.load_model(tmp_path / "out" / lstm.run_id / "model.npz")
    assert loaded.device == torch.device("cpu")  # a saved model loads anywhere
