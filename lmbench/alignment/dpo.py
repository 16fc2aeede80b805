"""Direct preference optimisation (Rafailov et al. 2023, "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model") and its IPO variant (Azar et al. 2023, "A General
Theoretical Paradigm to Understand Learning from Human Preferences").

On a ``PairBatch`` of (x, y_w, y_l) the policy's and the frozen reference's log-probabilities of
each response are summed over its tokens, log pi(y | x) = sum_t log pi(y_t | x, y_<t), and

    h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]
    sigmoid (eq. 7):  L = -log sigma(beta h)    (label smoothing eps: cDPO, see losses)
    ipo (eq. 17):     L = (h / |y| - 1 / (2 beta))^2    (log-ratios averaged per token, as TRL)

``DPO`` is an objective value of ``lmbench.training.objectives`` (``(model, network, batch,
state) -> LossOutput``), so ``train_dpo`` is the ordinary trainer (AdamW, warm-up + cosine,
clipping, checkpoints) on the pairs' per-example batches; any ``Trainable`` policy works, a
PEFT-adapted one included. Its metrics (averaged into the training curve): ``reward_accuracy``
(h > 0), ``reward_margin`` (beta h), ``chosen_logratio`` and ``rejected_logratio``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmbench.alignment.losses import dpo_loss, ipo_loss
from lmbench.alignment.reference import (
    check_pairs,
    check_reference,
    frozen_copy,
    reference_logprobs,
)
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.data.examples import PreferencePair
from lmbench.training.batching import IGNORE_INDEX, ExampleBatches, PairBatch
from lmbench.training.objectives import LossOutput, token_logprobs_with_grad
from lmbench.training.trainer import TrainConfig, TrainLog, train

LOSSES = ("sigmoid", "ipo")
# A short fine-tuning run: the policy is already trained, so a small learning rate and warm-up.
DPO_TRAIN = TrainConfig(batch_size=16, learning_rate=5e-4, warmup_steps=10, max_steps=200,
                        eval_every=50, checkpoint_every=100, progress=False)


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1  # the KL strength (IPO's tau); > 0
    loss: str = "sigmoid"  # "sigmoid" (DPO eq. 7) or "ipo" (IPO eq. 17)
    label_smoothing: float = 0.0  # cDPO's eps in [0, 0.5); sigmoid only

    def __post_init__(self) -> None:
        if not 0 < self.beta < math.inf:
            raise LmbenchError(f"dpo.beta must be > 0 and finite, got {self.beta!r}")
        if self.loss not in LOSSES:
            raise LmbenchError(f"dpo.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise LmbenchError(f"dpo.label_smoothing must be in [0, 0.5), got "
                               f"{self.label_smoothing!r}")
        if self.loss == "ipo" and self.label_smoothing:
            raise LmbenchError("dpo.label_smoothing applies to the sigmoid loss only, not ipo")


@dataclass(frozen=True)
class DPO:
    """The DPO / IPO objective against a frozen ``reference`` (module docstring)."""

    reference: LanguageModel
    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        DPOConfig(self.beta, self.loss, self.label_smoothing)  # the same checks
        if isinstance(self.reference, Trainable) and any(
                p.requires_grad for p in self.reference.network().parameters()):
            raise LmbenchError("the reference model is not frozen (a parameter requires grad); "
                               "pass lmbench.alignment.reference.frozen_copy(model)")

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        if not isinstance(batch, PairBatch):
            raise LmbenchError(f"the dpo objective reads PairBatch batches, got "
                               f"{type(batch).__name__}")
        B = batch.chosen.input_ids.shape[0]
        inputs = torch.cat([batch.chosen.input_ids, batch.rejected.input_ids])  # (2B, T)
        targets = torch.cat([batch.chosen.masked_targets(), batch.rejected.masked_targets()])
        policy = token_logprobs_with_grad(model, inputs, targets)  # (2B, T)
        reference = reference_logprobs(self.reference, inputs, targets, policy.device)
        counted = (targets != IGNORE_INDEX).to(policy.device)  # (2B, T)
        logratios = (policy - reference).sum(-1)  # (2B,)
        if self.loss == "ipo":
            logratios = logratios / counted.sum(-1).clamp(min=1)
            loss = ipo_loss(logratios[:B], logratios[B:], self.beta)
        else:
            loss = dpo_loss(logratios[:B], logratios[B:], self.beta, self.label_smoothing)
        h = (logratios[:B] - logratios[B:]).detach()
        metrics = {"reward_accuracy": float((h > 0).float().mean()),
                   "reward_margin": float(self.beta * h.mean()),
                   "chosen_logratio": float(logratios[:B].detach().mean()),
                   "rejected_logratio": float(logratios[B:].detach().mean())}
        return LossOutput(loss + model.auxiliary_loss(), None, metrics)


def dpo_objective(policy: LanguageModel, reference: LanguageModel,
                  config: DPOConfig = DPOConfig()) -> DPO:
    """The ``DPO`` objective for ``policy`` after checking that ``reference`` is frozen and
    shares the policy's vocabulary."""
    check_reference(policy, reference)
    return DPO(reference, config.beta, config.loss, config.label_smoothing)


def train_dpo(policy: LanguageModel, pairs: Sequence[PreferencePair],
              config: DPOConfig = DPOConfig(), *, reference: LanguageModel | None = None,
              train_config: TrainConfig = DPO_TRAIN, checkpoint_dir=None) -> TrainLog:
    """Train ``policy`` (a fitted ``Trainable``, in place) on preference pairs by DPO / IPO.

    Args:
        policy: the model to align (usually the SFT model); its tokenizer reads the pairs.
        pairs: the (prompt, chosen, rejected) pairs.
        config: beta, the loss and label smoothing.
        reference: the frozen pi_ref; None: ``frozen_copy(policy)`` taken before training.
        train_config: batch size (pairs per step), learning rate, schedule and budget.
        checkpoint_dir: where the trainer checkpoints (and resumes) this run.

    Returns:
        The trainer's log; its curve's metrics are the module docstring's.
    """
    if not isinstance(policy, Trainable):
        raise LmbenchError(f"dpo trains a Trainable (torch) policy; {policy.name!r} is not")
    check_pairs(pairs, "dpo")
    reference = frozen_copy(policy) if reference is None else reference
    objective = dpo_objective(policy, reference, config)
    batches = ExampleBatches(pairs, policy.tokenizer, train_config.batch_size,
                             seed=train_config.seed, max_len=policy.capabilities.max_window)
    return train(policy, batches, objective, train_config, checkpoint_dir=checkpoint_dir)
