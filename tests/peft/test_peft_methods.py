"""lmbench.peft: LoRA and adapters on every neural family, with tiny models and few steps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lmbench
from lmbench import peft
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptsLayers,
    ComputesHidden,
    CountsFlops,
    Embeds,
    RollsBackState,
    SelectsStateRows,
)
from lmbench.inference.sampling import generate
from lmbench.models import MODELS
from lmbench.peft.lora import LoRAModule
from lmbench.training.trainer import TrainConfig, _optimizer

TRAIN = {"max_steps": 8, "batch_size": 8, "seq_len": 16, "eval_every": 8, "warmup_steps": 2,
         "learning_rate": 1e-2, "progress": False, "bf16": False}
FAMILIES = {
    "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 24},
    "moe": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24, "n_expert": 2},
    "rnn": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char"},
    "lstm": {"embed_dim": 16, "hidden_dim": 24, "n_layer": 2, "tokenizer": "char"},
    "gru": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char"},
    "nplm": {"context": 3, "embed_dim": 8, "hidden_dim": 16, "tokenizer": "char"},
    "bert": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24},
    "seq2seq": {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 8},
}
NEURAL = sorted(FAMILIES)


@pytest.fixture(scope="module", params=NEURAL)
def base(request, tiny_corpus):
    return lmbench.build_model(request.param, **FAMILIES[request.param],
                               train=TRAIN).fit(tiny_corpus)


@pytest.fixture(scope="module")
def gpt_base(tiny_corpus):
    return lmbench.build_model("gpt", **FAMILIES["gpt"], train=TRAIN).fit(tiny_corpus)


def _ids(model, seed=0, shape=(2, 12)) -> torch.Tensor:
    return torch.randint(0, model.tokenizer.vocab_size, shape,
                         generator=torch.Generator().manual_seed(seed))


def _every_role(model) -> tuple[str, ...]:
    return tuple(role for role, weights in model.adaptable_weights().items() if weights)


def _perturb(adapted, seed=0) -> None:
    """Random values in every trainable weight (B and the up projections start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapted.adapter_state().values():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network().state_dict().items()}


def _methods(model):
    return [peft.LoRAConfig(rank=2, targets=_every_role(model)), peft.AdapterConfig(4)]


def test_supported_methods_are_declared_for_every_family():
    table = peft.supported_methods()
    assert set(table) == set(MODELS)
    for family in NEURAL:
        assert table[family][:2] == ("adapters", "lora")  # prompt/prefix: test_peft_prompts
        assert issubclass(MODELS.get(family), AdaptsLayers)
    assert table["ngram"] == () and table["interpolation"] == ()


@pytest.mark.parametrize("method", ["lora", "adapters"])
def test_the_adapted_model_starts_equal_to_the_base(base, method):
    config = _methods(base)[method == "adapters"]
    adapted = peft.adapt(base, config)
    ids = _ids(base)
    # Against a frozen copy of the base: on CPU, PyTorch picks a different nn.RNN/nn.GRU kernel
    # when no weight requires grad (last-bit differences, by CPU), and an adapted model's base
    # weights are frozen. The adapter's zero path must then add exactly nothing.
    frozen = copy.deepcopy(base)
    frozen.network().requires_grad_(False)
    assert torch.equal(adapted.token_logprobs(ids, ids)[0], frozen.token_logprobs(ids, ids)[0])
    assert torch.allclose(adapted.token_logprobs(ids, ids)[0], base.token_logprobs(ids, ids)[0],
                          rtol=0, atol=1e-5)
    assert 0 < adapted.n_trainable() < base.n_params()
    assert adapted.trainable_fraction() == adapted.n_trainable() / base.n_params()
    _perturb(adapted)
    assert not torch.allclose(adapted.token_logprobs(ids, ids)[0],
                              base.token_logprobs(ids, ids)[0], atol=1e-6)


def test_merged_equals_unmerged_on_every_family(base):
    adapted = peft.adapt(base, peft.LoRAConfig(rank=2, targets=_every_role(base)))
    _perturb(adapted)
    ids = _ids(base)
    unmerged = adapted.token_logprobs(ids, ids)[0]
    merged = peft.merge(adapted)
    assert merged.merged and not adapted.merged
    assert torch.allclose(merged.token_logprobs(ids, ids)[0], unmerged, atol=1e-5)
    assert not any(isinstance(m, LoRAModule) for m in merged.network().modules())
    assert set(merged.network().state_dict()) == set(base.network().state_dict())
    assert merged.n_trainable() == adapted.n_trainable()
    again = peft.unmerge(merged)
    assert torch.allclose(again.token_logprobs(ids, ids)[0], unmerged, atol=1e-5)
    for name, value in again.adapter_state().items():
        assert torch.equal(value, adapted.adapter_state()[name])
    plain = peft.merge_and_unload(adapted)
    assert type(plain) is type(base)
    assert torch.allclose(plain.token_logprobs(ids, ids)[0], unmerged, atol=1e-5)


def test_the_adapted_model_keeps_the_bases_abilities(base):
    adapted = peft.adapt(base, peft.AdapterConfig(4))
    for ability in (SelectsStateRows, Embeds, CountsFlops, RollsBackState, ComputesHidden):
        assert isinstance(adapted, ability) == isinstance(base, ability)
    assert not isinstance(adapted, AdaptsLayers)  # no adapter on an adapter
    assert adapted.family == base.family and adapted.name == f"{base.name}+adapters"
    assert adapted.config()["peft"]["method"] == "adapters"
    prompt = base.tokenizer.encode("the cat")[:2]
    assert generate(adapted, prompt, 8, seed=1) == generate(base, prompt, 8, seed=1)


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_a_short_fine_tune_lowers_the_loss_and_leaves_the_base_unchanged(family, tiny_corpus):
    base = lmbench.build_model(family, **FAMILIES[family], train=TRAIN).fit(tiny_corpus)
    before = _weights(base)
    for config in _methods(base):
        adapted = peft.adapt(base, config,
                             train=TrainConfig(**{**TRAIN, "max_steps": 30, "eval_every": 10}))
        frozen = _weights(adapted)
        trained = peft.finetune(adapted, tiny_corpus)
        curve = trained.training_log()["curve"]
        assert curve[0]["step"] == 0  # the zero-shot start point is evaluated
        assert trained.training_log()["best_valid_nats"] < curve[0]["valid_loss"]
        assert all(torch.equal(v, before[k]) for k, v in _weights(base).items())
        after = _weights(trained)
        changed = {k for k in frozen if not torch.equal(frozen[k], after[k])}
        assert changed and changed <= set(trained.adapter_state())


def test_the_trainer_optimises_only_the_new_weights(gpt_base):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2))
    trainable = {id(p) for p in adapted.network().parameters() if p.requires_grad}
    assert trainable == {id(p) for p in adapted.adapter_state().values()}
    assert all(p.requires_grad for p in gpt_base.network().parameters())  # the base untouched
    optimiser = _optimizer(adapted.network(), adapted.train_config())
    optimised = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert optimised == trainable


def test_save_and_load_round_trip(base, tmp_path):
    for config in _methods(base):
        adapted = peft.adapt(base, config)
        _perturb(adapted, seed=3)
        path = tmp_path / f"{config.name}.npz"
        adapted.save(path)
        again = peft.load_adapter(base, path)
        ids = _ids(base, seed=1)
        assert torch.equal(again.token_logprobs(ids, ids)[0], adapted.token_logprobs(ids, ids)[0])
        assert again.method == config
        base_path = tmp_path / "base.npz"
        base.save(base_path)
        assert path.stat().st_size < base_path.stat().st_size
        with np.load(path) as data:
            assert all(name == "meta" or name.startswith("adapter/") for name in data.files)


def test_a_merged_model_saves_its_unmerged_adapter(gpt_base, tmp_path):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2))
    _perturb(adapted)
    peft.merge(adapted).save(tmp_path / "merged.npz")
    again = peft.load_adapter(gpt_base, tmp_path / "merged.npz")
    ids = _ids(gpt_base)
    assert torch.allclose(again.token_logprobs(ids, ids)[0], adapted.token_logprobs(ids, ids)[0],
                          atol=1e-6)


def test_an_adapter_refuses_another_base(gpt_base, tiny_corpus, tmp_path):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2))
    adapted.save(tmp_path / "a.npz")
    other = lmbench.build_model("gpt", **FAMILIES["gpt"],
                                train={**TRAIN, "seed": 7}).fit(tiny_corpus)
    with pytest.raises(LmbenchError, match=r"a\.npz: adapter of another base model"):
        peft.load_adapter(other, tmp_path / "a.npz")
    with pytest.raises(LmbenchError, match="adapter file not found"):
        peft.load_adapter(gpt_base, tmp_path / "missing.npz")
    gpt_base.save(tmp_path / "model.npz")
    with pytest.raises(LmbenchError, match="not a peft adapter file"):
        peft.load_adapter(gpt_base, tmp_path / "model.npz")
    with pytest.raises(LmbenchError, match="load_adapter"):
        type(adapted).load(tmp_path / "a.npz")


@pytest.mark.parametrize("options, message", [
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"rank": 2.5}, "rank"),
    ({"alpha": 0}, "alpha must be > 0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"init": "xavier"}, "init"),
    ({"ranks": 4}, "ranks"),
])
def test_bad_lora_settings_are_one_line_errors(options, message):
    with pytest.raises(LmbenchError, match=message) as error:
        peft.method_config("lora", options)
    assert "\n" not in str(error.value)


def test_bad_targets_and_families_are_one_line_errors(gpt_base, tiny_corpus):
    with pytest.raises(LmbenchError, match="lora target 'experts' matches no layer of the gpt"):
        peft.adapt(gpt_base, peft.LoRAConfig(targets=("experts",)))
    with pytest.raises(LmbenchError, match="unknown peft method 'prefixes'"):
        peft.method_config("prefixes")
    with pytest.raises(LmbenchError, match="bottleneck must be an integer >= 1"):
        peft.AdapterConfig(bottleneck=0)
    ngram = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="'lora' is not supported for the ngram model"):
        peft.adapt(ngram, peft.LoRAConfig())
    unfitted = lmbench.build_model("gpt", **FAMILIES["gpt"])
    with pytest.raises(LmbenchError, match="not fitted"):
        peft.adapt(unfitted, peft.LoRAConfig())
    adapted = peft.adapt(gpt_base, peft.LoRAConfig())
    with pytest.raises(LmbenchError, match="adapted already"):
        peft.adapt(adapted, peft.AdapterConfig())
    with pytest.raises(LmbenchError, match="merged; unmerge it"):
        peft.merge(adapted).fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="LoRA-adapted"):
        peft.merge(peft.adapt(gpt_base, peft.AdapterConfig()))
    lstm = lmbench.build_model("lstm", **FAMILIES["rnn"], train=TRAIN).fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="lora target 'projection' matches no layer"):
        peft.adapt(lstm, peft.LoRAConfig(targets=("projection",)))  # hidden == embed: none


def test_tied_weights_are_never_roles(base):
    network = base.network()
    counts: dict[int, int] = {}
    for _, parameter in network.named_parameters(remove_duplicate=False):
        counts[id(parameter)] = counts.get(id(parameter), 0) + 1
    for weights in base.adaptable_weights().values():
        for weight in weights:
            parameter = getattr(network.get_submodule(weight.module), weight.parameter)
            assert counts[id(parameter)] == 1, weight


def test_lora_on_a_fused_qkv_adapts_only_the_chosen_rows(gpt_base):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2, targets=("v",)))
    _perturb(adapted)
    merged = peft.merge(adapted)
    C = FAMILIES["gpt"]["n_embd"]
    old = gpt_base.network().blocks[0].attn.qkv.weight
    new = merged.network().blocks[0].attn.qkv.weight
    assert torch.equal(new[: 2 * C], old[: 2 * C]) and not torch.equal(new[2 * C :], old[2 * C :])


def test_with_train_config_gives_fresh_modules_on_the_same_base(gpt_base):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2))
    _perturb(adapted)
    config = TrainConfig(**{**TRAIN, "max_steps": 1})
    fresh = adapted.with_train_config(config)
    assert fresh.train_config() == config and fresh.method == adapted.method
    ids = _ids(gpt_base)
    assert torch.equal(fresh.token_logprobs(ids, ids)[0], gpt_base.token_logprobs(ids, ids)[0])
    assert copy.deepcopy(adapted).n_trainable() == adapted.n_trainable()


def test_a_damaged_adapter_file_is_a_one_line_error(gpt_base, tmp_path):
    adapted = peft.adapt(gpt_base, peft.LoRAConfig(rank=2))
    adapted.save(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as data:
        arrays = {name: data[name] for name in data.files}
    dropped = sorted(k for k in arrays if k.startswith("adapter/"))[0]
    del arrays[dropped]
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(LmbenchError, match=r"b\.npz: damaged adapter file: missing weight"):
        peft.load_adapter(gpt_base, tmp_path / "b.npz")
