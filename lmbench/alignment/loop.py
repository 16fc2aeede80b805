"""The loop shared by PPO and GRPO: rollout, measure, guard, update, log, checkpoint.

Each step (Ziegler et al. 2019 section 2.2; Shao et al. 2024 algorithm 1):

1. ``prompts_per_step`` prompts (the prompt list read in order, cycling) and ``group_size``
   completions of each are sampled from the current policy (``lmbench.alignment.rollout``,
   seed ``seed + step * 1_000_003``) and scored by the reward function.
2. With the network in eval mode (no dropout: sampling, the old log-probabilities and the
   updates see one function, so the first ratio is exactly 1) and no gradients: log pi_old,
   log pi_ref (``reference.token_logprobs``), the Monte-Carlo KL(pi || pi_ref) of the samples
   (``losses.monte_carlo_kl``, nats per completion) and the policy's mean token entropy.
3. Divergence guard: a KL that is not finite or above ``max_kl_nats`` stops the run before the
   update; so does a non-finite loss, checked before each optimizer step. Either way the
   weights of the last step whose rollout passed the guard are put back into the policy (and
   written to ``checkpoint_dir``) and ``TrainingDiverged`` names the step.
4. The method's update (``ppo.py``, ``grpo.py``): ``epochs`` passes of AdamW steps over the
   rollout (linear warm-up to a constant learning rate, gradients clipped to ``grad_clip``).

The log is the trainer's ``TrainLog``: one curve point per step, ``train_loss`` the update's
mean loss and ``metrics`` with ``reward`` (the mean raw reward), ``kl_nats``, ``entropy_nats``
and the method's own. ``checkpoint_dir`` receives ``policy.npz`` (``policy.save``: a saved model
``lmbench evaluate`` and ``generate`` read), ``heads.npz`` (a value head) and ``log.json`` every
``checkpoint_every`` steps and at the end. A run does not resume from them (a rollout depends on
the policy, so a restarted run would sample other completions); they keep the last good weights.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lmbench.alignment.losses import entropy, monte_carlo_kl
from lmbench.alignment.reference import check_reference, frozen_copy, reference_logprobs
from lmbench.alignment.rollout import RewardFunction, Rollout, policy_logprobs, rollout
from lmbench.core.device import autocast, autocast_precision
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.core.io import write_json_atomic, write_npz_atomic
from lmbench.training.trainer import TrainLog


class TrainingDiverged(LmbenchError):
    """A policy-optimisation run stopped by its divergence guard; ``log`` is what it did up to
    that step (the policy holds the last good weights)."""

    def __init__(self, message: str, log: TrainLog) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class PolicyOptimisationConfig:
    """Settings PPO and GRPO share (their configs add their own)."""

    steps: int = 100  # rollout + update rounds
    prompts_per_step: int = 8  # P
    group_size: int = 1  # G completions per prompt
    max_new_tokens: int = 32
    epochs: int = 1  # optimisation passes over each rollout
    minibatch_size: int | None = None  # completions per optimizer step; None: the whole rollout
    learning_rate: float = 1e-4
    warmup_steps: int = 0  # optimizer steps of linear warm-up
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    clip_range: float = 0.2  # the ratio's clip epsilon
    kl_coef: float = 0.05  # beta of the KL penalty to the reference; >= 0
    max_kl_nats: float | None = 100.0  # the divergence guard's bound; None: off
    bf16: bool = False  # bf16 autocast of the policy's forward passes where native
    checkpoint_every: int = 50
    seed: int = 0
    progress: bool = False  # one line on stderr per step

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "epochs",
                      "checkpoint_every"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LmbenchError(f"{name}.{field} must be an integer >= 1, got {value!r}")
        if self.minibatch_size is not None and self.minibatch_size < 1:
            raise LmbenchError(f"{name}.minibatch_size must be >= 1, got {self.minibatch_size}")
        if self.warmup_steps < 0:
            raise LmbenchError(f"{name}.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.kl_coef >= 0 or math.isinf(self.kl_coef):
            raise LmbenchError(f"{name}.kl_coef must be >= 0 and finite, got {self.kl_coef!r}")
        checks = {"learning_rate": (self.learning_rate, 0 < self.learning_rate < math.inf),
                  "weight_decay": (self.weight_decay, 0 <= self.weight_decay < math.inf),
                  "grad_clip": (self.grad_clip, 0 <= self.grad_clip < math.inf),
                  "clip_range": (self.clip_range, 0 < self.clip_range < 1)}
        for field, (value, ok) in checks.items():
            if not ok:
                raise LmbenchError(f"{name}.{field} out of range (learning_rate > 0, "
                                   f"weight_decay and grad_clip >= 0, clip_range in (0, 1)): "
                                   f"got {value!r}")
        if self.max_kl_nats is not None and not self.max_kl_nats > 0:
            raise LmbenchError(f"{name}.max_kl_nats must be > 0 (or None: off), got "
                               f"{self.max_kl_nats!r}")


@dataclass(frozen=True)
class RolloutScores:
    """What step 2 of the loop measured on a rollout (all without gradients, (N, T))."""

    rollout: Rollout
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    mask: torch.Tensor  # on the policy's device
    kl_nats: float
    entropy_nats: float


class Optimise:
    """One AdamW step on a loss, refused (``_NonFinite``) before it could store a NaN."""

    def __init__(self, parameters: list[torch.nn.Parameter], config: PolicyOptimisationConfig):
        self.parameters, self.config, self.n_steps = parameters, config, 0
        decay = [p for p in parameters if p.dim() >= 2]
        no_decay = [p for p in parameters if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)

    def __call__(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise _NonFinite(loss.item())
        warmup = min(1.0, (self.n_steps + 1) / max(1, self.config.warmup_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * warmup
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        self.n_steps += 1


class _NonFinite(Exception):
    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


# update(scores, optimise) -> (mean loss, metrics)
Update = Callable[[RolloutScores, Optimise], tuple[float, dict[str, float]]]


def minibatches(n: int, size: int | None) -> list[slice]:
    """Consecutive slices of ``size`` rows covering ``range(n)`` (one slice when None)."""
    size = n if size is None else size
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def resolve_reference(policy: LanguageModel, reference: LanguageModel | None) -> LanguageModel:
    """``reference``, checked; None: a frozen copy of ``policy`` as it is now."""
    if not isinstance(policy, Trainable):
        raise LmbenchError(f"policy optimisation trains a Trainable (torch) policy; "
                           f"{policy.name!r} is not")
    reference = frozen_copy(policy) if reference is None else reference
    check_reference(policy, reference)
    return reference


def run(policy: LanguageModel, prompts: Sequence[str], reward: RewardFunction,
        config: PolicyOptimisationConfig, reference: LanguageModel, update: Update,
        heads: dict[str, torch.nn.Module], what: str,
        checkpoint_dir: str | Path | None = None) -> TrainLog:
    """The loop of the module docstring; ``heads`` are extra trained modules (a value head)."""
    if not prompts:
        raise LmbenchError(f"{what} needs at least one prompt")
    net = policy.network()
    device = next(net.parameters()).device
    parameters = [p for p in net.parameters() if p.requires_grad]
    for head in heads.values():
        parameters += [p for p in head.parameters() if p.requires_grad]
    if not parameters:
        raise LmbenchError(f"{what}: the policy has no trainable parameter")
    optimise = Optimise(parameters, config)
    log, started = TrainLog(precision=autocast_precision(device, config.bf16)), time.perf_counter()
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    torch.manual_seed(config.seed)

    def snapshot() -> dict:
        return {"net": copy.deepcopy(net.state_dict()),
                "heads": {k: copy.deepcopy(h.state_dict()) for k, h in heads.items()}}

    def save() -> None:
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        policy.save(folder / "policy.npz")
        if heads:
            arrays = {f"{k}/{name}": v.detach().float().cpu().numpy()
                      for k, h in heads.items() for name, v in h.state_dict().items()}
            write_npz_atomic(folder / "heads.npz", arrays, {"heads": sorted(heads)})
        write_json_atomic(folder / "log.json", log.to_dict())

    def diverged(good: dict, message: str) -> TrainingDiverged:
        net.load_state_dict(good["net"])
        for k, h in heads.items():
            h.load_state_dict(good["heads"][k])
        log.stopped_by = "diverged"
        save()
        return TrainingDiverged(f"{what} diverged at step {log.steps}: {message}; the policy "
                                "holds the weights of the last good step", log)

    good = snapshot()
    for step in range(config.steps):
        net.eval()
        start = step * config.prompts_per_step
        chosen = [prompts[(start + i) % len(prompts)] for i in range(config.prompts_per_step)]
        drawn = rollout(policy, chosen, reward, config.group_size, config.max_new_tokens,
                        config.seed + step * 1_000_003)
        batch = drawn.batch.to(device)
        with torch.no_grad(), autocast(device, config.bf16):
            old, logits = policy_logprobs(policy, batch)
            old_entropy = float(entropy(logits, batch.loss_mask))
        ref = reference_logprobs(reference, batch.input_ids, batch.masked_targets(), device)
        kl = float(monte_carlo_kl(old, ref, batch.loss_mask))
        if not math.isfinite(kl) or (config.max_kl_nats is not None and kl > config.max_kl_nats):
            raise diverged(good, f"KL(pi || pi_ref) = {kl:.4g} nats exceeds max_kl_nats = "
                                 f"{config.max_kl_nats}")
        good = snapshot()
        scores = RolloutScores(drawn, old.detach(), ref, batch.loss_mask, kl, old_entropy)
        try:
            loss, metrics = update(scores, optimise)
        except _NonFinite as error:
            raise diverged(good, f"the loss is {error.value}") from None
        log.steps += 1
        log.tokens += batch.n_tokens
        log.seconds = time.perf_counter() - started
        point_metrics = {"reward": float(drawn.rewards.mean()), "kl_nats": kl,
                         "entropy_nats": old_entropy, **metrics}
        log.curve.append({"step": log.steps, "tokens": log.tokens,
                          "seconds": round(log.seconds, 3), "train_loss": loss,
                          "valid_loss": None, "metrics": point_metrics})
        if config.progress:
            print(f"{what}: step {log.steps} reward {point_metrics['reward']:.4f} kl {kl:.4f} "
                  f"entropy {old_entropy:.3f} loss {loss:.4f}", file=sys.stderr, flush=True)
        if log.steps % config.checkpoint_every == 0 and log.steps < config.steps:
            save()
    log.stopped_by = "max_steps"
    save()
    return log
