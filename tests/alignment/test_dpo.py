"""DPO / IPO through the trainer: the chosen-over-rejected log-ratio rises; bad input refused."""

from __future__ import annotations

import pytest
import torch

import lmbench
from lmbench.alignment.dpo import DPO, DPOConfig, dpo_objective, train_dpo
from lmbench.alignment.reference import frozen_copy
from lmbench.core.errors import LmbenchError
from lmbench.data.examples import Example, PreferencePair
from lmbench.training.batching import ExampleBatches
from lmbench.training.trainer import TrainConfig

PAIRS = [PreferencePair("the cat ", "sat on the mat .", "ate a fish ."),
         PreferencePair("a dog ", "found a bone .", "saw the river ."),
         PreferencePair("she ", "liked it .", "walked to the log ."),
         PreferencePair("my friend ", "sat on it .", "ate the red barn .")]
TRAIN = TrainConfig(batch_size=4, learning_rate=3e-3, warmup_steps=1, max_steps=12,
                    progress=False, bf16=False)


def _margin(policy, reference) -> float:
    """Mean h = log-ratio(chosen) - log-ratio(rejected) over PAIRS."""
    batch = ExampleBatches(PAIRS, policy.tokenizer, len(PAIRS))(0)
    policy.network().eval()
    output = dpo_objective(policy, reference)(policy, policy.network(), batch)
    return output.metrics["chosen_logratio"] - output.metrics["rejected_logratio"]


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_dpo_raises_the_chosen_over_rejected_log_ratio(policy, loss):
    reference = frozen_copy(policy)
    assert _margin(policy, reference) == pytest.approx(0.0, abs=1e-5)  # pi = pi_ref at start
    log = train_dpo(policy, PAIRS, DPOConfig(beta=0.5, loss=loss), reference=reference,
                    train_config=TRAIN)
    assert log.steps == 12
    assert _margin(policy, reference) > 1.0
    assert log.curve[-1]["metrics"]["reward_accuracy"] > 0.5  # averaged over the 12 steps


def test_dpo_loss_at_the_start_is_log_2(policy):
    batch = ExampleBatches(PAIRS, policy.tokenizer, len(PAIRS))(0)
    policy.network().eval()
    output = dpo_objective(policy, frozen_copy(policy))(policy, policy.network(), batch)
    assert output.loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    output.loss.backward()  # gradients reach the policy only
    assert any(p.grad is not None for p in policy.network().parameters())


def test_dpo_refuses_an_unfrozen_reference_another_vocabulary_and_bad_pairs(policy,
                                                                            tiny_corpus):
    with pytest.raises(LmbenchError, match="not frozen"):
        dpo_objective(policy, _unfrozen(policy))
    with pytest.raises(LmbenchError, match="is the policy itself"):
        dpo_objective(policy, policy)
    word = lmbench.build_model("ngram", order=2, tokenizer="word").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="tokenizer differs"):
        dpo_objective(policy, word)
    with pytest.raises(LmbenchError, match="chosen == rejected"):
        train_dpo(policy, [PreferencePair("a", "b", "b")], train_config=TRAIN)
    with pytest.raises(LmbenchError, match="not a PreferencePair"):
        train_dpo(policy, [Example("a", "b")], train_config=TRAIN)
    with pytest.raises(LmbenchError, match="dpo.beta must be > 0"):
        DPOConfig(beta=0.0)
    with pytest.raises(LmbenchError, match="dpo.loss must be one of"):
        DPOConfig(loss="hinge")
    with pytest.raises(LmbenchError, match="sigmoid loss only"):
        DPOConfig(loss="ipo", label_smoothing=0.1)
    with pytest.raises(LmbenchError, match="reads PairBatch"):
        objective = DPO(frozen_copy(policy))
        objective(policy, policy.network(), ExampleBatches([Example("a", "b")],
                                                           policy.tokenizer, 1)(0))


def _unfrozen(policy):
    reference = frozen_copy(policy)
    reference.network().requires_grad_(True)
    return reference


def test_an_ngram_reference_works(policy, tiny_corpus):
    """Any LanguageModel with the policy's tokenizer can be the reference."""
    ngram = lmbench.build_model("ngram", order=3, tokenizer="char")
    ngram.tokenizer = policy.tokenizer
    ngram.fit(tiny_corpus)
    log = train_dpo(policy, PAIRS, reference=ngram,
                    train_config=TrainConfig(batch_size=4, max_steps=2, warmup_steps=1,
                                             progress=False, bf16=False))
    assert log.steps == 2
