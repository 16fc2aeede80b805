"""The evaluator API for outside models: ``FunctionLM`` and the Hugging Face adapter score like
built-in families, honour the interface's contract and land on the leaderboard."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import lmbench
from lmbench.adapters import FunctionLM
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, SelectsStateRows
from lmbench.evaluation.scoring import EvalConfig, evaluate
from lmbench.inference.decoding import beam_search_batch
from lmbench.reports.tables import leaderboard_table
from lmbench.storage.store import ResultStore

EVAL = EvalConfig(progress=False, window_len=64, block_len=32)


def _check_contract(model, ids: list[int]) -> None:
    """Batched scoring equals token-by-token scoring, and two chunks with state equal one."""
    inputs = torch.tensor([[model.tokenizer.boundary_id, *ids[:-1]]])
    targets = torch.tensor([ids])
    whole, _ = model.token_logprobs(inputs, targets)
    incremental, state = [], None
    for t in range(inputs.shape[1]):
        logits, state = model.logits(inputs[:, t : t + 1], state)
        incremental.append(torch.log_softmax(logits.double(), -1)[0, 0, targets[0, t]])
    assert torch.allclose(whole[0], torch.stack(incremental), atol=1e-5)
    cut = inputs.shape[1] // 2
    first, state = model.token_logprobs(inputs[:, :cut], targets[:, :cut])
    second, _ = model.token_logprobs(inputs[:, cut:], targets[:, cut:], state)
    assert torch.allclose(whole, torch.cat([first, second], 1), atol=1e-5)


def test_a_uniform_function_scores_log2_of_the_vocabulary(tiny_corpus):
    uniform = FunctionLM(lambda ids: torch.zeros(*ids.shape, 257), tokenizer="byte",
                         name="uniform").fit(tiny_corpus)
    result = evaluate(uniform, tiny_corpus, "test", EVAL)
    assert result.bits_per_byte == pytest.approx(math.log2(257))
    assert result.model == "uniform"


def test_a_wrapped_model_scores_exactly_like_the_model(tiny_corpus):
    kn3 = lmbench.build_model("ngram", order=3, smoothing="kneser-ney").fit(tiny_corpus)

    def next_token_logprobs(ids):  # numpy out, as a user's function may return
        return torch.log_softmax(kn3.logits(ids)[0].double(), -1).numpy()

    wrapped = FunctionLM(next_token_logprobs, kn3.tokenizer, name="kn3-fn", max_context=2)
    direct = evaluate(kn3, tiny_corpus, "test", EVAL)
    through = evaluate(wrapped.fit(tiny_corpus), tiny_corpus, "test", EVAL)
    assert through.nll_nats == pytest.approx(direct.nll_nats, rel=1e-9)
    ids = kn3.tokenizer.encode_split(tiny_corpus.split("test"))[:30].tolist()
    _check_contract(wrapped, ids)


def test_a_function_model_batches_its_beams(tiny_corpus):
    kn3 = lmbench.build_model("ngram", order=3, smoothing="kneser-ney").fit(tiny_corpus)

    class OneBeamAtATime(LanguageModel):
        """The same function model without ``SelectsStateRows``: one call per beam."""

        def __init__(self, model: FunctionLM) -> None:
            self.model, self.name, self.tokenizer = model, model.name, model.tokenizer
            self.capabilities = model.capabilities

        def logits(self, input_ids, state=None):
            return self.model.logits(input_ids, state)

        def token_logprobs(self, input_ids, target_ids, state=None):
            return self.model.token_logprobs(input_ids, target_ids, state)

        fit = n_params = config = save = load = None  # not used by beam search

    def function(ids):
        return kn3.logits(ids)[0]

    batched = FunctionLM(function, kn3.tokenizer, max_context=2)
    sequential = OneBeamAtATime(FunctionLM(function, kn3.tokenizer, max_context=2))
    assert isinstance(batched, SelectsStateRows)
    assert not isinstance(sequential, SelectsStateRows)
    ids = kn3.tokenizer.encode_split(tiny_corpus.split("test")).tolist()
    prompts = [ids[0:3], ids[5:8]]
    assert (beam_search_batch(batched, prompts, 6, 3)
            == beam_search_batch(sequential, prompts, 6, 3))


def test_function_mistakes_are_reported(tiny_corpus):
    wrong = FunctionLM(lambda ids: torch.zeros(*ids.shape, 10), tokenizer="byte")
    with pytest.raises(LmbenchError, match=r"expected \(B, T, V\) = \(1, 5, 257\)"):
        wrong.logits(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(LmbenchError, match="callable"):
        FunctionLM("not a function")
    with pytest.raises(LmbenchError, match="cannot be saved"):
        wrong.save("x.npz")


def test_record_run_puts_a_user_model_on_the_leaderboard(tiny_corpus, tmp_path):
    uniform = FunctionLM(lambda ids: torch.zeros(*ids.shape, 257), tokenizer="byte",
                         name="my-model", n_params=123)
    record = lmbench.record_run(uniform.fit(tiny_corpus), tiny_corpus, tmp_path,
                                eval_config=EVAL, fit_s=2.5,
                                generation={"samples": [{"prompt": "a", "text": "b"}]})
    (stored,) = ResultStore(tmp_path).records()
    assert stored == record and stored.config["family"] == "function"
    assert stored.tokenizer["name"] == "byte" and len(stored.tokenizer["sha256"]) == 64
    row = leaderboard_table([stored]).iloc[0]
    assert row["model"] == "my-model" and row["params"] == 123 and row["rank"] == 1
    assert row["bits/byte"] == pytest.approx(math.log2(257))


def test_record_run_reuses_what_evaluate_already_scored(tiny_corpus, tmp_path):
    calls = []

    def uniform(ids):
        calls.append(ids.shape)
        return torch.zeros(*ids.shape, 257)

    model = FunctionLM(uniform, tokenizer="byte", name="my-model").fit(tiny_corpus)
    test = lmbench.evaluate(model, tiny_corpus, "test", EVAL)
    calls.clear()
    record = lmbench.record_run(model, tiny_corpus, tmp_path, splits=("valid", "test"),
                                eval_config=EVAL, metrics={"test": test})
    assert record.metrics["test"] is test and set(record.metrics) == {"valid", "test"}
    n_valid = len(calls)  # only valid was scored
    assert n_valid and lmbench.evaluate(model, tiny_corpus, "valid", EVAL) and \
        len(calls) == 2 * n_valid
    with pytest.raises(LmbenchError, match=r"metrics\['valid'\] scored 'my-model' on 'tiny'"):
        lmbench.record_run(model, tiny_corpus, tmp_path, metrics={"valid": test})


def test_every_split_is_reached_the_same_way(tiny_corpus):
    for name in ("train", "valid", "test"):
        assert getattr(tiny_corpus, name) is tiny_corpus.split(name)


# ----------------------------------------------------------------------- Hugging Face adapter

def _transformers():
    try:
        import transformers
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("transformers is not installed; CI installs the 'transformers' extra")
        pytest.skip("transformers is not installed (pip install 'lmbench[transformers]')")
    return transformers


@pytest.fixture(scope="module")
def tiny_gpt2():
    """A 1-layer GPT-2 over bytes (vocab 257, boundary 256), random weights, no download."""
    transformers = _transformers()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=257,
                                     n_positions=64, bos_token_id=256, eos_token_id=256)
    return transformers.GPT2LMHeadModel(config).eval()


def test_huggingface_scores_equal_the_models_own_loss(tiny_gpt2):
    from lmbench.adapters.huggingface import HuggingFaceLM
    from lmbench.data.corpora import Corpus, _lines_split

    text = "the cat sat on the mat.\nthe dog ate it.\n"  # 40 bytes: one window of 41
    corpus = Corpus("short", {s: _lines_split(s, text) for s in ("train", "test")})
    model = HuggingFaceLM(tiny_gpt2, lmbench.build_model("ngram", tokenizer="byte").tokenizer,
                          name="tiny-gpt2")
    assert model.capabilities.max_window == 64
    result = evaluate(model.fit(corpus), corpus, "test", EVAL)
    ids = torch.tensor([[256, *text.encode("utf-8")]])
    with torch.no_grad():
        loss = tiny_gpt2(input_ids=ids, labels=ids).loss.item()  # mean NLL of the 40 bytes
    assert result.n_tokens == 40
    assert result.nll_nats / result.n_tokens == pytest.approx(loss, abs=1e-5)
    assert model.n_params() == sum(p.numel() for p in tiny_gpt2.parameters())  # tied once
    _check_contract(model, list(text.encode("utf-8"))[:20])


def test_huggingface_long_texts_are_windowed(tiny_gpt2, tiny_corpus, tmp_path):
    from lmbench.adapters.huggingface import HuggingFaceLM

    model = HuggingFaceLM(tiny_gpt2, lmbench.build_model("ngram", tokenizer="byte").tokenizer)
    result = evaluate(model.fit(tiny_corpus), tiny_corpus, "test", EVAL)
    assert result.n_tokens == tiny_corpus.split("test").n_bytes > 64
    assert math.isfinite(result.nll_nats) and 7.0 < result.bits_per_byte < 8.5  # untrained
    model.save(tmp_path / "hf")
    again = HuggingFaceLM.load(tmp_path / "hf")
    inputs = torch.tensor([[256, 116, 104, 101]])
    assert torch.equal(model.logits(inputs)[0], again.logits(inputs)[0])


def test_huggingface_tokenizer_wrapper(tiny_corpus):
    transformers = _transformers()
    from lmbench.adapters.huggingface import HuggingFaceLM, HuggingFaceTokenizer

    bpe = lmbench.build_model("ngram", tokenizer="bpe",
                              tokenizer_options={"vocab_size": 300}).tokenizer.fit(
        tiny_corpus.train)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._hf,
                                                        bos_token="<bos>")
    wrapped = HuggingFaceTokenizer(hf_tokenizer)
    assert wrapped.boundary_id == bpe.boundary_id and wrapped.vocab_size == bpe.vocab_size
    split = tiny_corpus.split("test")
    assert np.array_equal(wrapped.encode_split(split), bpe.encode_split(split))
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=300,
                                     n_positions=32)
    model = HuggingFaceLM(transformers.GPT2LMHeadModel(config), hf_tokenizer, name="bpe-gpt2")
    result = evaluate(model, tiny_corpus, "test", EVAL)
    assert result.n_tokens == len(bpe.encode_split(split)) and math.isfinite(result.nll_nats)


def test_huggingface_takes_a_tokenizer_name_like_function_lm(tiny_gpt2, tiny_corpus):
    from lmbench.adapters.huggingface import HuggingFaceLM

    by_name = HuggingFaceLM(tiny_gpt2, "byte", name="tiny-gpt2")
    given = HuggingFaceLM(tiny_gpt2, lmbench.build_model("ngram", tokenizer="byte").tokenizer)
    assert by_name.tokenizer.name == "byte"
    assert evaluate(by_name.fit(tiny_corpus), tiny_corpus, "test", EVAL).nll_nats == \
        evaluate(given.fit(tiny_corpus), tiny_corpus, "test", EVAL).nll_nats
