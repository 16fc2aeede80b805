"""A reward model learns a toy preference; save / load; where it meets a policy."""

from __future__ import annotations

import random

import pytest
import torch

import lmbench
from lmbench.alignment.reward import (
    BradleyTerry,
    RewardConfig,
    RewardModel,
    pairwise_accuracy,
    train_reward_model,
)
from lmbench.alignment.rollout import sample_completions
from lmbench.core.errors import LmbenchError
from lmbench.data.examples import Example, PreferencePair
from lmbench.training.batching import ExampleBatches
from lmbench.training.trainer import TrainConfig

LETTERS = "abcdefghilmnorstuw "  # characters of the tiny corpus, without 'k'


def _pairs(n: int, seed: int) -> list[PreferencePair]:
    """Chosen responses contain a 'k' somewhere, rejected ones do not (else random letters)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        length = rng.randint(4, 10)
        rejected = "".join(rng.choice(LETTERS) for _ in range(length))
        at = rng.randrange(length)
        chosen = rejected[:at] + "k" + rejected[at + 1:]
        pairs.append(PreferencePair(rng.choice(["the cat ", "a dog ", "she "]), chosen, rejected))
    return pairs


TRAIN = TrainConfig(batch_size=16, learning_rate=3e-3, warmup_steps=2, max_steps=25,
                    progress=False, bf16=False)


@pytest.fixture(scope="module")
def reward_model(gpt_target):
    return train_reward_model(gpt_target, _pairs(200, 0), RewardConfig(margin=0.5),
                              train_config=TRAIN)


def test_a_reward_model_learns_a_toy_preference(reward_model, gpt_target):
    held_out = _pairs(100, 1)
    assert pairwise_accuracy(reward_model, held_out) > 0.9
    assert reward_model.train_log.steps == 25
    # the base model itself did not change (the reward model trains a copy)
    assert reward_model.base.network() is not gpt_target.network()
    scores = reward_model.score_texts(["she "] * 2, ["a cat sat", "a kat sat"])
    assert scores[1] > scores[0]


def test_save_and_load_round_trip(reward_model, tmp_path):
    path = tmp_path / "rm.npz"
    reward_model.save(path)
    loaded = RewardModel.load(path)
    pairs = _pairs(20, 2)
    batch = ExampleBatches(pairs, loaded.tokenizer, 20)(0)
    assert torch.allclose(loaded.scores(batch.chosen), reward_model.scores(batch.chosen),
                          atol=1e-5)
    assert loaded.config()["base_family"] == "gpt"
    assert loaded.train_log.steps == 25
    assert lmbench.load_model(path).family == "gpt"  # the file is also its base model's
    plain = tmp_path / "plain.npz"
    reward_model.base.save(plain)
    with pytest.raises(LmbenchError, match="not a reward model file"):
        RewardModel.load(plain)


def test_rewards_of_a_policys_completions(reward_model, gpt_target, tiny_corpus):
    reward = reward_model.reward_function(gpt_target)
    completions = sample_completions(gpt_target, ["she "], 3, 5, seed=0)
    values = reward(completions)
    assert len(values) == 3 and all(isinstance(v, float) for v in values)
    word = lmbench.build_model("ngram", order=2, tokenizer="word").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="reward model's tokenizer differs from the policy"):
        reward_model.reward_function(word)


def test_reward_model_bad_input(gpt_target, tiny_corpus):
    ngram = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="hidden states"):
        RewardModel(ngram)
    with pytest.raises(LmbenchError, match="chosen == rejected"):
        train_reward_model(gpt_target, [PreferencePair("a", "b", "b")], train_config=TRAIN)
    with pytest.raises(LmbenchError, match="reads PairBatch"):
        model = RewardModel(gpt_target)
        BradleyTerry()(model, model.network(),
                       ExampleBatches([Example("a", "b")], gpt_target.tokenizer, 1)(0))
    with pytest.raises(LmbenchError, match="margin must be finite"):
        RewardConfig(margin=float("nan"))


@pytest.mark.parametrize("family, options", [
    ("lstm", {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1}),
    ("moe", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "n_expert": 2}),
])
def test_a_reward_head_on_other_families(family, options, tiny_corpus):
    """Any ComputesHidden torch family takes the head: the pairwise loss has gradients."""
    base = lmbench.build_model(family, tokenizer="char", train={
        "max_steps": 1, "batch_size": 2, "seq_len": 8, "progress": False, "bf16": False},
        **options).fit(tiny_corpus, valid=False)
    model = RewardModel(base)
    batch = ExampleBatches(_pairs(4, 3), base.tokenizer, 4)(0)
    output = BradleyTerry()(model, model.network(), batch)
    output.loss.backward()
    assert model.network().head.weight.grad is not None
    assert any(p.grad is not None for p in base.network().parameters())
