"""The contract every registered model honours, run over all of ``MODELS`` with tiny configs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import (
    AdaptsLayers,
    ComputesHidden,
    CountsFlops,
    Embeds,
    LanguageModel,
    RollsBackState,
    SelectsStateRows,
    StartsFromEmbeddings,
    StartsFromKeyValues,
    Trainable,
)
from lmbench.evaluation.scoring import EvalConfig, evaluate
from lmbench.inference.decoding import beam_search, beam_search_batch
from lmbench.inference.sampling import Sampler, SamplingConfig, TopK, generate, sample, sample_batch
from lmbench.models import MODELS, load_model

# One or more tiny configurations per registered family (seconds each).
TINY_CONFIGS: dict[str, list[dict]] = {
    "ngram": [
        {"order": 3, "smoothing": "modified-kneser-ney", "tokenizer": "char"},
        {"order": 2, "smoothing": "witten-bell", "tokenizer": "word",
         "tokenizer_options": {"unk_max_count": 0}},
        {"order": 4, "smoothing": "add-k", "k": 0.5, "tokenizer": "byte"},
        {"order": 3, "smoothing": "kneser-ney", "tokenizer": "bpe",
         "tokenizer_options": {"vocab_size": 300}},
    ],
}

TINY_TRAIN = {"max_steps": 40, "batch_size": 8, "seq_len": 16, "eval_every": 20,
              "warmup_steps": 5, "learning_rate": 1e-2, "progress": False}
TINY_CONFIGS.update({
    "nplm": [{"context": 3, "embed_dim": 8, "hidden_dim": 16, "train": TINY_TRAIN},
             {"context": 2, "embed_dim": 8, "hidden_dim": 0, "mix_trigram": 0.5,
              "tokenizer": "char",
              "train": TINY_TRAIN}],
    "rnn": [{"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "char",
             "train": TINY_TRAIN}],
    "lstm": [{"embed_dim": 16, "hidden_dim": 24, "n_layer": 2, "train": TINY_TRAIN},
             {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "adaptive_cutoffs": [8, 20],
              "cache_size": 12, "cache_theta": 0.5, "cache_lambda": 0.2, "train": TINY_TRAIN}],
    "gru": [{"embed_dim": 16, "hidden_dim": 16, "n_layer": 1, "tokenizer": "bpe",
             "tokenizer_options": {"vocab_size": 300}, "train": TINY_TRAIN}],
    "gpt": [{"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24, "train": TINY_TRAIN},
            {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 32, "positions": "rotary",
             "tokenizer": "word", "train": {**TINY_TRAIN, "bf16": False}}],
    "moe": [{"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24, "n_expert": 4,
             "top_k": 2, "train": TINY_TRAIN},
            {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 32, "n_expert": 2,
             "top_k": 1, "positions": "rotary", "tokenizer": "word",
             "train": {**TINY_TRAIN, "bf16": False}}],
    "bert": [{"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24, "train": TINY_TRAIN},
             {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "tokenizer": "bpe",
              "tokenizer_options": {"vocab_size": 300}, "train": TINY_TRAIN}],
    "seq2seq": [{"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 8, "train": TINY_TRAIN},
                {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 4, "tokenizer": "word",
                 "train": {**TINY_TRAIN, "seq_len": 8}}],
    "interpolation": [{"components": [{"family": "ngram", "order": 2},
                                      {"family": "gru", "embed_dim": 8, "hidden_dim": 8,
                                       "n_layer": 1, "train": TINY_TRAIN}]},
                      {"components": [{"family": "ngram", "order": 3, "tokenizer": "char"},
                                      {"family": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16,
                                       "block_size": 24, "tokenizer": "char",
                                       "train": TINY_TRAIN}],
                       "weights": [0.3, 0.7]}],
})

CASES = [(family, options) for family in TINY_CONFIGS for options in TINY_CONFIGS[family]]


def test_every_registered_family_has_a_tiny_config():
    assert set(MODELS) == set(TINY_CONFIGS)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1].get('tokenizer')}")
def fitted(request, tiny_corpus):
    family, options = request.param
    return lmbench.build_model(family, **options).fit(tiny_corpus)


def _stream(model, corpus):
    """The test split as (1, T) inputs and targets, T within the model's window."""
    ids = model.tokenizer.encode_split(corpus.split("test"))
    ids = ids[: model.capabilities.max_window or len(ids)]
    inputs = np.concatenate(([model.tokenizer.boundary_id], ids[:-1]))
    return torch.from_numpy(inputs)[None], torch.from_numpy(ids)[None]


def test_next_token_distribution_sums_to_one(fitted, tiny_corpus):
    if not fitted.capabilities.exact_likelihood:
        pytest.skip("pseudo-likelihood models define no next-token distribution")
    inputs, _ = _stream(fitted, tiny_corpus)
    logits, _ = fitted.logits(inputs[:, :40])
    sums = torch.logsumexp(torch.log_softmax(logits.double(), -1), -1)
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-9)


def test_batched_scoring_equals_incremental_scoring(fitted, tiny_corpus):
    if not fitted.capabilities.exact_likelihood:
        pytest.skip("pseudo-likelihood conditions on right context, which logits() cannot see")
    inputs, targets = _stream(fitted, tiny_corpus)
    inputs, targets = inputs[:, :40], targets[:, :40]
    batched, _ = fitted.token_logprobs(inputs, targets)
    incremental, state = [], None
    for t in range(inputs.shape[1]):
        logits, state = fitted.logits(inputs[:, t : t + 1], state)
        incremental.append(torch.log_softmax(logits.double(), -1)[0, 0, targets[0, t]])
    assert torch.allclose(batched[0].double(), torch.stack(incremental), atol=1e-6)


def test_scoring_in_two_chunks_with_state_equals_one_call(fitted, tiny_corpus):
    inputs, targets = _stream(fitted, tiny_corpus)
    whole, _ = fitted.token_logprobs(inputs, targets)
    cut = inputs.shape[1] // 2
    first, state = fitted.token_logprobs(inputs[:, :cut], targets[:, :cut])
    second, _ = fitted.token_logprobs(inputs[:, cut:], targets[:, cut:], state)
    if not fitted.capabilities.exact_likelihood:  # PLL: the first chunk loses its right context
        assert torch.allclose(whole[:, cut:], second, atol=1e-6)
        return
    assert torch.allclose(whole, torch.cat([first, second], 1), atol=1e-6)


def test_fit_beats_the_uniform_distribution(fitted, tiny_corpus):
    result = evaluate(fitted, tiny_corpus, "train", EvalConfig(progress=False))
    assert result.nll_nats / result.n_tokens < math.log(fitted.tokenizer.vocab_size)


def test_save_and_load_round_trip_scores_exactly(fitted, tiny_corpus, tmp_path):
    fitted.save(tmp_path / "model.npz")
    same = load_model(tmp_path / "model.npz")
    inputs, targets = _stream(fitted, tiny_corpus)
    assert torch.equal(fitted.token_logprobs(inputs, targets)[0],
                       same.token_logprobs(inputs, targets)[0])
    assert same.config() == fitted.config()


def test_generation_with_a_seed_is_deterministic(fitted):
    prompt = fitted.tokenizer.encode("the cat")[:2]
    first = generate(fitted, prompt, 20, seed=3)
    assert first == generate(fitted, prompt, 20, seed=3)
    assert len(first) == 20 and all(0 <= i < fitted.tokenizer.vocab_size for i in first)
    others = [generate(fitted, prompt, 20, seed=s) for s in range(4, 8)]
    assert any(o != first for o in others)  # the seed matters


def test_generation_with_the_cache_equals_generation_without_it(fitted):
    prompt, greedy = fitted.tokenizer.encode("the cat")[:2], SamplingConfig(temperature=0)
    cached = generate(fitted, prompt, 30, sampler=greedy)
    assert cached == generate(fitted, prompt, 30, sampler=greedy, use_cache=False)
    assert cached == generate(fitted, prompt, 30, seed=5, sampler=Sampler((TopK(1),)))


# ------------------------------------------------------------------------- batched decoding

SELECTS_STATE = {"ngram", "nplm", "rnn", "lstm", "gru", "gpt", "moe", "bert", "seq2seq",
                 "interpolation"}


class _OneBeamAtATime(LanguageModel):
    """``model`` without ``select_state``: beam search extends each beam in a call of its own
    (the sequential reference)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model, self.name = model, model.name
        self.tokenizer, self.capabilities = model.tokenizer, model.capabilities

    def logits(self, input_ids, state=None):
        return self.model.logits(input_ids, state)

    def token_logprobs(self, input_ids, target_ids, state=None):
        return self.model.token_logprobs(input_ids, target_ids, state)

    def fit(self, corpus, **options):
        return self

    def n_params(self):
        return self.model.n_params()

    def config(self):
        return self.model.config()

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def _prompts(model, corpus, n=3, length=4) -> list[list[int]]:
    """``n`` different prompts of ``length`` ids from the test split."""
    ids = model.tokenizer.encode_split(corpus.split("test")).tolist()
    return [ids[7 * i : 7 * i + length] for i in range(n)]


def test_select_state_continues_the_chosen_rows(fitted, tiny_corpus):
    prompts = _prompts(fitted, tiny_corpus)
    contexts = torch.tensor([[fitted.tokenizer.boundary_id, *p] for p in prompts])  # (3, 5)
    _, state = fitted.logits(contexts)
    rows = torch.tensor([2, 0, 0])
    if not isinstance(fitted, SelectsStateRows):
        assert fitted.name not in SELECTS_STATE, f"{fitted.name} must implement select_state"
        pytest.skip(f"{fitted.name} does not select rows of its state")
    selected = fitted.select_state(state, rows)
    following = contexts[:, 1:2]  # (3, 1) any ids
    continued, _ = fitted.logits(following, selected)
    whole, _ = fitted.logits(torch.cat((contexts[rows], following), dim=1))
    assert torch.allclose(torch.log_softmax(continued[:, -1].double(), -1),
                          torch.log_softmax(whole[:, -1].double(), -1), atol=1e-5)
    assert fitted.select_state(None, rows) is None


def test_batched_greedy_equals_one_prompt_at_a_time(fitted, tiny_corpus):
    prompts, greedy = _prompts(fitted, tiny_corpus), SamplingConfig(temperature=0)
    batched = sample_batch(fitted, prompts, 24, sampler=greedy, seeds=[0, 0, 0])
    for prompt, row in zip(prompts, batched):
        alone = sample(fitted, prompt, 24, sampler=greedy)
        assert row.ids == alone.ids
        assert row.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_batched_beam_search_equals_sequential_beam_search(fitted, tiny_corpus):
    prompts = _prompts(fitted, tiny_corpus, n=2)
    batched = beam_search_batch(fitted, prompts, 8, beam_width=3)
    sequential = [beam_search(_OneBeamAtATime(fitted), p, 8, beam_width=3) for p in prompts]
    assert [c.ids for c in batched] == [c.ids for c in sequential]
    assert [c.score for c in batched] == pytest.approx([c.score for c in sequential], abs=1e-4)
    assert beam_search(fitted, prompts[1], 8, beam_width=3).ids == sequential[1].ids


# ------------------------------------------------------------------------ declared abilities

ABILITIES = {  # what each family declares (lmbench.core.interface), and nothing more
    "gpt": {Trainable, SelectsStateRows, RollsBackState, Embeds, CountsFlops, ComputesHidden,
            AdaptsLayers},
    "moe": {Trainable, SelectsStateRows, RollsBackState, Embeds, CountsFlops, ComputesHidden,
            AdaptsLayers},
    **{name: {Trainable, SelectsStateRows, ComputesHidden, AdaptsLayers}
       for name in ("nplm", "rnn", "lstm", "gru", "bert", "seq2seq")},
    "ngram": {SelectsStateRows},
    "interpolation": {SelectsStateRows},
}


def test_each_family_declares_its_abilities():
    assert set(ABILITIES) == set(MODELS)
    for family, declared in ABILITIES.items():
        model_class = MODELS.get(family)
        found = {a for a in (Trainable, SelectsStateRows, RollsBackState, Embeds, CountsFlops,
                             ComputesHidden, AdaptsLayers)
                 if issubclass(model_class, a)}
        assert found == declared, family


def test_embeds_gives_one_finite_vector_per_sequence(fitted, tiny_corpus):
    if not isinstance(fitted, Embeds):
        pytest.skip(f"{fitted.name} does not embed")
    contexts = torch.tensor([[fitted.tokenizer.boundary_id, *p]
                             for p in _prompts(fitted, tiny_corpus)])  # (3, 5)
    vectors = fitted.embed(contexts)  # (3, D)
    assert vectors.dtype == torch.float32 and vectors.ndim == 2 and vectors.shape[0] == 3
    assert vectors.shape[1] > 0 and torch.isfinite(vectors).all()
    assert torch.allclose(fitted.embed(contexts[1:2]), vectors[1:2], atol=1e-5)  # row by row


def test_rolling_the_state_back_equals_reading_the_prefix_alone(fitted, tiny_corpus):
    if not isinstance(fitted, RollsBackState):
        pytest.skip(f"{fitted.name} does not roll its state back")
    inputs, _ = _stream(fitted, tiny_corpus)
    ids = inputs[:, :12]  # (1, 12) within every window
    _, state = fitted.logits(ids)
    assert fitted.state_length(state) == 12 and fitted.state_length(None) == 0
    cut = fitted.rollback_state(state, 5)
    assert fitted.state_length(cut) == 5 and fitted.state_length(state) == 12  # a new state
    following = ids[:, 5:9]  # (1, 4)
    rolled, _ = fitted.logits(following, cut)
    _, prefix_state = fitted.logits(ids[:, :5])
    recomputed, _ = fitted.logits(following, prefix_state)
    assert torch.allclose(rolled, recomputed, atol=1e-5)
    assert torch.allclose(rolled, fitted.logits(ids[:, :9])[0][:, 5:], atol=1e-5)


def test_counts_flops_gives_a_positive_count(fitted):
    if not isinstance(fitted, CountsFlops):
        pytest.skip(f"{fitted.name} does not count FLOPs")
    counts = [fitted.flops_per_token(), fitted.flops_per_token(1), fitted.flops_per_token(8)]
    assert all(math.isfinite(c) and c > 0 for c in counts)
    assert counts[1] <= counts[2]  # attending to more keys costs no less


def test_trainable_gives_its_network_and_a_model_to_train_again(fitted):
    if not isinstance(fitted, Trainable):
        pytest.skip(f"{fitted.name} is not a torch network")
    assert isinstance(fitted.network(), torch.nn.Module)
    fresh = fitted.with_train_config(fitted.train_config())
    assert type(fresh) is type(fitted) and fresh.tokenizer is fitted.tokenizer
    assert fresh.config() == fitted.config()
    with pytest.raises(LmbenchError, match="not fitted"):
        fresh.network()  # a new model: fit trains it
    one_step = replace(fitted.train_config(), max_steps=1)
    assert fitted.with_train_config(one_step).train_config() == one_step
    assert fitted.train_config().max_steps != 1  # the model itself is unchanged


def test_computes_hidden_splits_forward_logits_and_keeps_gradients(fitted, tiny_corpus):
    if not isinstance(fitted, ComputesHidden):
        pytest.skip(f"{fitted.name} does not expose its hidden states")
    inputs, _ = _stream(fitted, tiny_corpus)
    ids = inputs[:, :12].repeat(2, 1)  # (2, 12)
    network = fitted.network().eval()
    hidden, state = fitted.forward_hidden(ids[:, :7])
    assert hidden.shape == (2, 7, fitted.hidden_size) and hidden.requires_grad
    logits, logits_state = fitted.forward_logits(ids[:, :7])
    assert torch.allclose(fitted.logits_from_hidden(hidden), logits, atol=1e-5)
    # Continuing from the state returned with the hidden states agrees as well.
    more, _ = fitted.forward_hidden(ids[:, 7:], state)
    more_logits, _ = fitted.forward_logits(ids[:, 7:], logits_state)
    assert torch.allclose(fitted.logits_from_hidden(more), more_logits, atol=1e-5)
    network.zero_grad()
    fitted.logits_from_hidden(hidden).float().logsumexp(-1).sum().backward()
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    network.zero_grad()


def test_adapts_layers_names_real_weights_and_sublayers(fitted):
    if not isinstance(fitted, AdaptsLayers):
        pytest.skip(f"{fitted.name} names no layers for PEFT")
    network = fitted.network()
    roles = fitted.adaptable_weights()
    assert set(fitted.default_adapted_roles()) <= {r for r, weights in roles.items() if weights}
    for weights in roles.values():
        for weight in weights:
            parameter = getattr(network.get_submodule(weight.module), weight.parameter)
            assert parameter.dim() == (3 if weight.kind == "experts" else 2), weight
    for path, width in fitted.adapter_sublayers().items():
        assert isinstance(network.get_submodule(path), torch.nn.Module) and width > 0


def test_a_stream_can_start_from_embeddings_or_key_values(fitted):
    """StartsFromEmbeddings: the state after P input embeddings is a state ``logits`` continues
    (the embeddings of real ids give what reading the ids gives, but for a continuous cache,
    whose pairs start empty); StartsFromKeyValues: likewise from per-layer keys and values."""
    if not isinstance(fitted, (StartsFromEmbeddings, StartsFromKeyValues)):
        pytest.skip(f"{fitted.name} starts streams from nothing only")
    ids = torch.randint(0, fitted.tokenizer.vocab_size, (2, 9),
                        generator=torch.Generator().manual_seed(0))
    whole, _ = fitted.logits(ids)  # (B, T, V); leaves the network in eval mode
    with torch.inference_mode():
        if isinstance(fitted, StartsFromEmbeddings):
            table = fitted.input_embedding_weight()  # (V, E)
            state = fitted.state_from_embeddings(table[ids[:, :4].to(table.device)])
            rest, _ = fitted.logits(ids[:, 4:], state)
            assert rest.shape == whole[:, 4:].shape and torch.isfinite(rest).all()
            if fitted.config().get("cache_size", 0) == 0:
                assert torch.allclose(rest, whole[:, 4:], atol=1e-4)
        if isinstance(fitted, StartsFromKeyValues):
            n_layer, n_head, head_dim = fitted.attention_shape()
            layers = [(torch.randn(2, n_head, 3, head_dim), torch.randn(2, n_head, 3, head_dim))
                      for _ in range(n_layer)]
            first, state = fitted.logits(ids[:, :5], fitted.state_from_key_values(layers))
            rest, _ = fitted.logits(ids[:, 5:], state)
            both, _ = fitted.logits(ids, fitted.state_from_key_values(layers))
            assert torch.allclose(torch.cat((first, rest), dim=1), both, atol=1e-4)
            assert not torch.allclose(both, whole, atol=1e-4)
