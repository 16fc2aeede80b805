"""SFT on the response tokens only: the response's loss falls, the prompt's is not trained."""

from __future__ import annotations

import pytest

from lmbench.alignment.sft import train_sft
from lmbench.core.errors import LmbenchError
from lmbench.data.examples import Example, PreferencePair
from lmbench.training.batching import ExampleBatches
from lmbench.training.objectives import sft
from lmbench.training.trainer import TrainConfig

EXAMPLES = [Example("the cat ", "sat on the mat ."), Example("a dog ", "found a bone .")]


def test_sft_lowers_the_response_loss(policy):
    batch = ExampleBatches(EXAMPLES, policy.tokenizer, 2)(0)
    policy.network().eval()
    before = sft(policy, policy.network(), batch).loss.item()
    log = train_sft(policy, EXAMPLES, TrainConfig(batch_size=2, max_steps=6, warmup_steps=1,
                                                  learning_rate=1e-2, progress=False,
                                                  bf16=False))
    policy.network().eval()
    assert log.steps == 6
    assert sft(policy, policy.network(), batch).loss.item() < before - 0.3


def test_sft_bad_input(policy):
    with pytest.raises(LmbenchError, match="at least one example"):
        train_sft(policy, [])
    with pytest.raises(LmbenchError, match="not an Example"):
        train_sft(policy, [PreferencePair("a", "b", "c")])
