"""A LoRA-adapted policy drops in: GRPO and DPO train its adapter only, against the base."""

from __future__ import annotations

import torch

from lmbench import peft
from lmbench.alignment.dpo import train_dpo
from lmbench.alignment.grpo import GRPOConfig, train_grpo
from lmbench.alignment.reference import frozen_copy
from lmbench.alignment.rollout import verifier_reward
from lmbench.data.examples import PreferencePair
from lmbench.training.trainer import TrainConfig

REWARD = verifier_reward(lambda prompt, text: text[:4].count("a") / 4)


def _split(adapted) -> tuple[dict, dict]:
    """(trainable, frozen) parameters of the adapted network, cloned."""
    named = dict(adapted.network().named_parameters())
    return ({k: v.detach().clone() for k, v in named.items() if v.requires_grad},
            {k: v.detach().clone() for k, v in named.items() if not v.requires_grad})


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_grpo_and_dpo_train_a_lora_adapter_only(policy):
    reference = frozen_copy(policy)  # the base before adaptation: pi_ref
    adapted = peft.lora(policy, peft.LoRAConfig(rank=2))
    trainable, frozen = _split(adapted)
    assert trainable and frozen
    log = train_grpo(adapted, ["the cat ", "she "], REWARD,
                     GRPOConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=3,
                                learning_rate=1e-2), reference=reference)
    assert abs(log.curve[0]["metrics"]["kl_nats"]) < 1e-4  # LoRA starts at the base
    after_trainable, after_frozen = _split(adapted)
    assert _changed(trainable, after_trainable)
    assert not _changed(frozen, after_frozen)
    pairs = [PreferencePair("a dog ", "found a bone .", "saw it .")]
    train_dpo(adapted, pairs, reference=reference,
              train_config=TrainConfig(batch_size=1, max_steps=2, warmup_steps=1,
                                       learning_rate=1e-2, progress=False, bf16=False))
    assert not _changed(frozen, _split(adapted)[1])
