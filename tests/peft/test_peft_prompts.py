"""lmbench.peft: prompt tuning and prefix tuning, with tiny models and few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmbench
from lmbench import peft
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Embeds, StartsFromEmbeddings, StartsFromKeyValues
from lmbench.evaluation.scoring import score_stream
from lmbench.inference.sampling import generate
from lmbench.models import MODELS
from lmbench.training.trainer import TrainConfig

TRAIN = {"max_steps": 8, "batch_size": 8, "seq_len": 16, "eval_every": 8, "warmup_steps": 2,
         "learning_rate": 1e-2, "progress": False, "bf16": False}
FAMILIES = {
    "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 24},
    "moe": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24, "n_expert": 2},
    "lstm": {"embed_dim": 16, "hidden_dim": 24, "n_layer": 2, "tokenizer": "char"},
    "gru": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char"},
}
PROMPT_FAMILIES = sorted(FAMILIES)
PREFIX_FAMILIES = ["gpt", "moe"]
P = 4


@pytest.fixture(scope="module")
def bases(tiny_corpus):
    return {family: lmbench.build_model(family, **options, train=TRAIN).fit(tiny_corpus)
            for family, options in FAMILIES.items()}


def _ids(model, seed=0, shape=(2, 12)) -> torch.Tensor:
    return torch.randint(0, model.tokenizer.vocab_size, shape,
                         generator=torch.Generator().manual_seed(seed))


def _perturb(adapted, seed=0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapted.adapter_state().values():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network().state_dict().items()}


def _config(family, method, **options):
    if method == "prompt":
        return peft.PromptTuningConfig(n_prompt_tokens=P, **options)
    return peft.PrefixTuningConfig(n_prefix_tokens=P, hidden=8, **options)


CASES = ([(f, "prompt") for f in PROMPT_FAMILIES] + [(f, "prefix") for f in PREFIX_FAMILIES])


def test_support_is_declared_per_method():
    table = peft.supported_methods()
    for family in ("gpt", "moe"):
        assert table[family] == ("adapters", "lora", "prefix", "prompt")
    for family in ("rnn", "lstm", "gru"):
        assert table[family] == ("adapters", "lora", "prompt")
    for family in ("bert", "seq2seq", "nplm"):
        assert table[family] == ("adapters", "lora")
    assert table["ngram"] == ()
    assert issubclass(MODELS.get("gpt"), StartsFromKeyValues)
    assert issubclass(MODELS.get("lstm"), StartsFromEmbeddings)
    assert not issubclass(MODELS.get("lstm"), StartsFromKeyValues)


@pytest.mark.parametrize("family, method", CASES)
def test_the_adapted_model_is_an_ordinary_language_model(bases, family, method, tiny_corpus):
    base = bases[family]
    adapted = peft.adapt(base, _config(family, method))
    _perturb(adapted)
    ids = _ids(base)
    logits, _ = adapted.logits(ids)  # (B, T, V)
    assert torch.allclose(logits.double().softmax(-1).sum(-1), torch.ones(ids.shape,
                                                                           dtype=torch.double))
    assert not torch.allclose(logits, base.logits(ids)[0], atol=1e-4)  # the prompt acts
    context = base.capabilities.max_context
    caps = adapted.capabilities
    if context is None:
        assert caps == base.capabilities
    else:
        assert caps.max_context == context - P and caps.max_window == context - P
    if isinstance(adapted, Embeds):  # a text longer than the reduced context, in chunks
        assert torch.isfinite(adapted.embed(_ids(base, shape=(2, 50)))).all()
    drawn = generate(adapted, base.tokenizer.encode("the cat")[:2], 40, seed=1)
    assert len(drawn) == 40  # longer than the reduced context: the cache slides
    stream = base.tokenizer.encode_split(tiny_corpus.split("valid"))[:70]  # > block_size
    nll = score_stream(adapted, stream)  # windows of block_size - P tokens, the prompt in each
    assert nll.shape == (len(stream),) and np.isfinite(nll).all()


@pytest.mark.parametrize("family, method", CASES)
def test_incremental_scoring_equals_one_shot_with_the_prompt(bases, family, method):
    base = bases[family]
    adapted = peft.adapt(base, _config(family, method))
    _perturb(adapted)
    ids = _ids(base, seed=2, shape=(2, 14))
    whole, _ = adapted.token_logprobs(ids[:, :-1], ids[:, 1:])
    first, state = adapted.token_logprobs(ids[:, :6], ids[:, 1:7])
    rest, _ = adapted.token_logprobs(ids[:, 6:-1], ids[:, 7:], state)
    assert torch.allclose(torch.cat((first, rest), dim=1), whole, atol=1e-5)


def test_the_gpt_window_keeps_the_prompt_when_it_slides(bases):
    base = bases["gpt"]
    adapted = peft.adapt(base, _config("gpt", "prompt"))
    _perturb(adapted)
    block = FAMILIES["gpt"]["block_size"]
    ids = _ids(base, seed=4, shape=(1, block + 6))
    state = None
    for t in range(ids.shape[1]):
        step, state = adapted.logits(ids[:, t : t + 1], state)
    window = ids[:, -(block - P):]  # what the model still sees: the prompt and these
    fresh, _ = adapted.logits(window)
    assert torch.allclose(step[0, -1], fresh[0, -1], atol=1e-5)
    assert adapted.state_length(state) == block - P


@pytest.mark.parametrize("family, method", [("gpt", "prompt"), ("lstm", "prompt"),
                                            ("gpt", "prefix")])
def test_a_short_fine_tune_trains_only_the_prompt(family, method, bases, tiny_corpus):
    base = bases[family]
    before = _weights(base)
    adapted = peft.adapt(base, _config(family, method),
                         train=TrainConfig(**{**TRAIN, "max_steps": 30, "eval_every": 10,
                                              "learning_rate": 3e-2}))
    trained = peft.finetune(adapted, tiny_corpus)
    curve = trained.training_log()["curve"]
    assert curve[0]["step"] == 0
    assert trained.training_log()["best_valid_nats"] < curve[0]["valid_loss"]
    assert all(torch.equal(v, before[k]) for k, v in _weights(base).items())
    after, start = _weights(trained), _weights(adapted)
    changed = {k for k in after if not torch.equal(start[k], after[k])}
    assert changed and changed <= set(trained.adapter_state())
    if method == "prompt":
        width = base.input_embedding_weight().shape[1]
        assert trained.n_trainable() == P * width
        assert set(trained.adapter_state()) == {"soft_prompt.weight"}
    assert trained.trainable_fraction() == trained.n_trainable() / base.n_params()


@pytest.mark.parametrize("init", ["random", "vocab", "text"])
def test_prompt_initialisations(bases, init):
    base = bases["gpt"]
    config = peft.PromptTuningConfig(n_prompt_tokens=5, init=init, init_text="the cat")
    prompt = peft.adapt(base, config).adapter_state()["soft_prompt.weight"]  # (5, C)
    table = base.input_embedding_weight()
    assert prompt.shape == (5, table.shape[1])
    if init == "text":
        ids = base.tokenizer.encode("the cat")
        assert torch.equal(prompt, table[torch.tensor((ids * 5)[:5])])
    elif init == "vocab":
        assert all((table == row).all(-1).any() for row in prompt)
        again = peft.adapt(base, config).adapter_state()["soft_prompt.weight"]
        assert torch.equal(prompt, again)  # the seed fixes the draw
    else:
        assert abs(prompt.std().item() / table.std().item() - 1) < 0.6


def test_prefix_with_the_mlp_folds_to_plain_key_values(bases, tmp_path):
    base = bases["gpt"]
    adapted = peft.adapt(base, _config("gpt", "prefix", reparameterize=True))
    _perturb(adapted)
    n_layer, n_embd = FAMILIES["gpt"]["n_layer"], FAMILIES["gpt"]["n_embd"]
    assert adapted.n_trainable() > P * n_layer * 2 * n_embd
    folded = peft.fold(adapted)
    assert not folded.method.reparameterize and adapted.method.reparameterize
    assert folded.n_trainable() == P * n_layer * 2 * n_embd
    ids = _ids(base)
    assert torch.allclose(folded.token_logprobs(ids, ids)[0],
                          adapted.token_logprobs(ids, ids)[0], atol=1e-5)
    adapted.save(tmp_path / "prefix.npz")  # saved folded
    with np.load(tmp_path / "prefix.npz") as data:
        weights = [name for name in data.files if name != "meta"]
        assert weights == ["adapter/prefix.key_values"]
        assert data[weights[0]].shape == (P, n_layer, 2, n_embd)
    again = peft.load_adapter(base, tmp_path / "prefix.npz")
    assert torch.allclose(again.token_logprobs(ids, ids)[0],
                          adapted.token_logprobs(ids, ids)[0], atol=1e-5)


def test_the_prefix_is_attended_to_by_every_token(bases):
    base = bases["gpt"]
    adapted = peft.adapt(base, _config("gpt", "prefix", reparameterize=False))
    ids = _ids(base, shape=(1, 10))
    plain = adapted.logits(ids)[0]
    with torch.no_grad():  # change only the last prefix position's values
        adapted.network().prefix.key_values[-1, :, 1] += 1.0
    moved = adapted.logits(ids)[0]
    assert (moved - plain).abs().amax(-1).min() > 0  # every position sees it


@pytest.mark.parametrize("family, method", CASES)
def test_save_and_load_round_trip_and_refuse_another_base(bases, family, method, tmp_path,
                                                          tiny_corpus):
    base = bases[family]
    adapted = peft.adapt(base, _config(family, method))
    _perturb(adapted, seed=3)
    path = tmp_path / "adapter.npz"
    adapted.save(path)
    again = peft.load_adapter(base, path)
    ids = _ids(base, seed=1)
    assert torch.allclose(again.token_logprobs(ids, ids)[0],
                          adapted.token_logprobs(ids, ids)[0], atol=1e-6)
    other = lmbench.build_model(family, **FAMILIES[family],
                                train={**TRAIN, "seed": 7, "max_steps": 1}).fit(tiny_corpus)
    with pytest.raises(LmbenchError, match=r"adapter\.npz: adapter of another base model"):
        peft.load_adapter(other, path)


def _one_line(call, message):
    with pytest.raises(LmbenchError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_bad_input_is_a_one_line_error(bases, tiny_corpus):
    gpt, lstm = bases["gpt"], bases["lstm"]
    block = FAMILIES["gpt"]["block_size"]
    _one_line(lambda: peft.adapt(gpt, peft.PromptTuningConfig(n_prompt_tokens=block)),
              rf"n_prompt_tokens = {block} must be below the gpt model's context of {block}")
    _one_line(lambda: peft.adapt(gpt, peft.PrefixTuningConfig(n_prefix_tokens=block + 5)),
              "n_prefix_tokens = 29 must be below the gpt model's context of 24")
    _one_line(lambda: peft.adapt(lstm, peft.PrefixTuningConfig()),
              "'prefix' is not supported for the lstm model")
    ngram = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    for config in (peft.PromptTuningConfig(), peft.PrefixTuningConfig()):
        _one_line(lambda config=config: peft.adapt(ngram, config),
                  f"'{config.name}' is not supported for the ngram model")
    _one_line(lambda: peft.method_config("prompt", {"n_prompt_tokens": 0}),
              "n_prompt_tokens must be an integer >= 1")
    _one_line(lambda: peft.method_config("prompt", {"init": "zeros"}), "init")
    _one_line(lambda: peft.method_config("prompt", {"init": "text"}), "needs a non-empty")
    _one_line(lambda: peft.method_config("prefix", {"hidden": 0}), "hidden must be")
    _one_line(lambda: peft.method_config("prefix", {"n_prefix_tokens": 2.5}), "n_prefix_tokens")
    _one_line(lambda: peft.adapt(gpt, peft.PromptTuningConfig(n_prompt_tokens=12),
                                 train=TrainConfig(**{**TRAIN, "seq_len": 16})),
              "train seq_len 16 is above the gpt[+]prompt model's window of 12 tokens")
    _one_line(lambda: peft.fold(peft.adapt(gpt, peft.LoRAConfig())), "prefix-tuned")


def test_prompt_tuning_on_an_lstm_with_adaptive_softmax_and_continuous_cache(tiny_corpus):
    base = lmbench.build_model("lstm", embed_dim=16, hidden_dim=16, n_layer=1,
                               adaptive_cutoffs=[8, 20], cache_size=12, tokenizer="char",
                               train=TRAIN).fit(tiny_corpus)
    adapted = peft.adapt(base, _config("lstm", "prompt"),
                         train=TrainConfig(**{**TRAIN, "max_steps": 4, "eval_every": 4}))
    adapted.fit(tiny_corpus)  # the adaptive softmax's own loss reads the prompt too
    assert adapted.training_log()["steps"] == 4
    _perturb(adapted)
    ids = _ids(base, seed=5, shape=(2, 14))
    whole, _ = adapted.token_logprobs(ids[:, :-1], ids[:, 1:])
    first, state = adapted.token_logprobs(ids[:, :6], ids[:, 1:7])
    rest, _ = adapted.token_logprobs(ids[:, 6:-1], ids[:, 7:], state)
    assert torch.allclose(torch.cat((first, rest), dim=1), whole, atol=1e-5)
    assert not torch.allclose(whole, base.token_logprobs(ids[:, :-1], ids[:, 1:])[0], atol=1e-4)
