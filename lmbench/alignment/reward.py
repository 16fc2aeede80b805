"""Reward models: a scalar head on any torch family's final hidden state, trained on preference
pairs with the Bradley-Terry loss (Ouyang et al. 2022, "Training language models to follow
instructions with human feedback", section 3.5 and eq. 1; Ziegler et al. 2019 section 2.2).

r(x, y) = w . h_L(x, y) + b, where h_L is the base model's final hidden state
(``ComputesHidden.forward_hidden``) at the last token of the boundary + prompt + response
sequence: for a preference pair's responses that is the boundary id that ends every response
(InstructGPT reads its reward at the end-of-sequence token), for a sampled completion cut at
``max_new_tokens`` its last token. Sequences longer than the base's window keep their last
``max_window`` tokens (the prompt is cut from the left). The loss is
L = -mean log sigma(r(x, y_w) - r(x, y_l) - margin) (``losses.bradley_terry_loss``) through the
ordinary trainer (``BradleyTerry`` is an objective value), training the base network and the
head together; ``pairwise_accuracy`` counts held-out pairs with r(y_w) > r(y_l) (ties: half).

A reward model file is its base model's own ``.npz`` (so ``lmbench.load_model`` reads the base)
plus the head's arrays (``reward_head/weight``, ``reward_head/bias``) and a ``reward_model``
entry in the JSON meta naming the base family and the settings. Where a reward model meets a
policy (``reward_function``) the two must share one tokenizer, else a one-line error.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lmbench.alignment.losses import bradley_terry_loss
from lmbench.alignment.reference import check_pairs, check_same_tokenizer
from lmbench.alignment.rollout import Completion, RewardFunction, completion_batch
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import ComputesHidden, LanguageModel, Trainable
from lmbench.core.io import read_npz, write_npz_atomic
from lmbench.data.examples import PreferencePair
from lmbench.models.catalog import load_model
from lmbench.training.batching import (
    IGNORE_INDEX,
    ExampleBatch,
    ExampleBatches,
    PairBatch,
    collate,
    tokenize_response,
)
from lmbench.training.objectives import LossOutput
from lmbench.training.trainer import TrainConfig, TrainLog, train

REWARD_TRAIN = TrainConfig(batch_size=16, learning_rate=1e-3, warmup_steps=10, max_steps=200,
                           eval_every=50, checkpoint_every=100, progress=False)


@dataclass(frozen=True)
class RewardConfig:
    margin: float = 0.0  # m of the Bradley-Terry loss (Llama 2 eq. 2); 0: plain

    def __post_init__(self) -> None:
        if not abs(self.margin) < float("inf"):
            raise LmbenchError(f"reward.margin must be finite, got {self.margin!r}")


def full_sequences(batch: ExampleBatch, boundary_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``ExampleBatch``'s rows as whole sequences: (B, T + 1) ids boundary + prompt +
    response (padding: the boundary id) and (B,) the index of each row's last token."""
    targets = torch.where(batch.target_ids == IGNORE_INDEX, boundary_id, batch.target_ids)
    ids = torch.cat([batch.input_ids[:, :1], targets], dim=1)  # (B, T + 1)
    last = (batch.target_ids != IGNORE_INDEX).sum(dim=1)  # (B,)
    return ids, last


class RewardNetwork(nn.Module):
    """The base network (a submodule, so it trains and saves) and the scalar head."""

    def __init__(self, base: LanguageModel, head: nn.Linear) -> None:
        super().__init__()
        self.body = base.network()
        self.head = head
        self.base = base  # a LanguageModel, not a module: its forward_hidden reads self.body

    def forward(self, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(B, S) whole sequences and (B,) last-token indices -> (B,) float32 rewards."""
        hidden, _ = self.base.forward_hidden(ids)  # (B, S, H)
        rows = torch.arange(ids.shape[0], device=hidden.device)
        final = hidden[rows, last.to(hidden.device)]  # (B, H)
        return self.head(final.float()).squeeze(-1)


class RewardModel(Trainable):
    """A reward model on a fitted ``ComputesHidden`` torch model (module docstring)."""

    name = "reward"

    def __init__(self, base: LanguageModel, config: RewardConfig = RewardConfig(),
                 head: nn.Linear | None = None) -> None:
        if not (isinstance(base, ComputesHidden) and isinstance(base, Trainable)):
            raise LmbenchError(f"a reward model needs a torch base model with hidden states "
                               f"(ComputesHidden); {base.name!r} has none")
        self.base, self.config_ = base, config
        device = next(base.network().parameters()).device
        if head is None:
            head = nn.Linear(base.hidden_size, 1)
            nn.init.normal_(head.weight, std=1 / (base.hidden_size + 1) ** 0.5)
            nn.init.zeros_(head.bias)
        self.net = RewardNetwork(base, head.to(device))
        self.train_log: TrainLog | None = None

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def capabilities(self):
        return self.base.capabilities

    def network(self) -> nn.Module:
        return self.net

    def forward_logits(self, input_ids, state=None):
        return self.base.forward_logits(input_ids, state)

    def train_config(self) -> TrainConfig:
        return self.base.train_config()

    def with_train_config(self, config: TrainConfig):
        raise LmbenchError("a reward model is trained by lmbench.alignment.reward."
                           "train_reward_model, not refit")

    def config(self) -> dict:
        return {"family": self.name, "base_family": self.base.family,
                "base": self.base.config(), "reward": asdict(self.config_)}

    def n_params(self) -> int:
        return self.base.n_params() + sum(p.numel() for p in self.net.head.parameters())

    # ------------------------------------------------------------------------------- scoring

    def scores(self, batch: ExampleBatch) -> torch.Tensor:
        """(B,) float32 rewards of an ``ExampleBatch``'s rows, on the CPU (eval mode, no grad)."""
        ids, last = full_sequences(batch, self.tokenizer.boundary_id)
        self.net.eval()
        with torch.no_grad():
            return self.net(ids, last).cpu()

    def score_texts(self, prompts: Sequence[str], responses: Sequence[str],
                    batch_size: int = 64) -> torch.Tensor:
        """(N,) rewards of (prompt, response) texts, tokenized as training pairs are."""
        if len(prompts) != len(responses):
            raise LmbenchError(f"score_texts: {len(prompts)} prompts, {len(responses)} responses")
        rows = [tokenize_response(self.tokenizer, p, r) for p, r in zip(prompts, responses)]
        window = self.capabilities.max_window
        max_len = None if window is None else window - 1
        out = [self.scores(collate(rows[i:i + batch_size], self.tokenizer.boundary_id, max_len))
               for i in range(0, len(rows), batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    def reward_function(self, policy: LanguageModel) -> RewardFunction:
        """The rewards of ``policy``'s completions (``lmbench.alignment.rollout``); a one-line
        error if the policy's tokenizer is not this reward model's."""
        check_same_tokenizer(self, policy, "reward model", "policy")

        def reward(completions: Sequence[Completion]) -> list[float]:
            return self.scores(completion_batch(policy, completions)).tolist()

        return reward

    # --------------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> None:
        """The base model's ``.npz`` plus the head and a ``reward_model`` meta entry."""
        path = Path(path)
        with tempfile.TemporaryDirectory(dir=path.parent if path.parent.is_dir() else None) as d:
            base_file = Path(d) / "base.npz"
            self.base.save(base_file)
            meta, arrays = read_npz(base_file, "a base model")
        head = self.net.head
        arrays["reward_head/weight"] = head.weight.detach().float().cpu().numpy()
        arrays["reward_head/bias"] = head.bias.detach().float().cpu().numpy()
        meta["reward_model"] = {"base_family": self.base.family, "reward": asdict(self.config_),
                                "train_log": self.train_log.to_dict() if self.train_log
                                else None}
        write_npz_atomic(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> RewardModel:
        """A reward model ``save`` wrote (on the CPU); a one-line error for another file."""
        meta, arrays = read_npz(Path(path), "a reward model")
        entry = meta.get("reward_model")
        if not isinstance(entry, dict) or "reward_head/weight" not in arrays:
            raise LmbenchError(f"{path}: not a reward model file (no 'reward_model' entry; a "
                               "plain model file is a base, not a reward model)")
        base = load_model(path)
        weight = torch.from_numpy(arrays["reward_head/weight"].copy())
        bias = torch.from_numpy(arrays["reward_head/bias"].copy())
        if not isinstance(base, ComputesHidden) or weight.shape != (1, base.hidden_size):
            raise LmbenchError(f"{path}: reward head of shape {tuple(weight.shape)} does not fit "
                               f"the base model")
        head = nn.Linear(base.hidden_size, 1)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        model = cls(base, RewardConfig(**entry.get("reward", {})), head)
        if entry.get("train_log"):
            model.train_log = TrainLog(**entry["train_log"])
        return model


@dataclass(frozen=True)
class BradleyTerry:
    """The reward model's pairwise objective on ``PairBatch`` batches (module docstring)."""

    margin: float = 0.0

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        if not isinstance(batch, PairBatch):
            raise LmbenchError(f"the Bradley-Terry objective reads PairBatch batches, got "
                               f"{type(batch).__name__}")
        boundary = model.tokenizer.boundary_id
        chosen_ids, chosen_last = full_sequences(batch.chosen, boundary)
        rejected_ids, rejected_last = full_sequences(batch.rejected, boundary)
        B = chosen_ids.shape[0]
        rewards = network(torch.cat([chosen_ids, rejected_ids]),
                          torch.cat([chosen_last, rejected_last]))  # (2B,)
        loss = bradley_terry_loss(rewards[:B], rewards[B:], self.margin or None)
        difference = (rewards[:B] - rewards[B:]).detach()
        return LossOutput(loss, None, {"accuracy": float((difference > 0).float().mean()),
                                       "reward_margin": float(difference.mean())})


def _pair_batches(pairs: Sequence[PreferencePair], model: RewardModel, batch_size: int,
                  seed: int = 0) -> ExampleBatches:
    window = model.capabilities.max_window
    return ExampleBatches(pairs, model.tokenizer, batch_size, seed=seed,
                          max_len=None if window is None else window - 1)


def train_reward_model(base: LanguageModel, pairs: Sequence[PreferencePair],
                       config: RewardConfig = RewardConfig(), *,
                       train_config: TrainConfig = REWARD_TRAIN,
                       checkpoint_dir=None) -> RewardModel:
    """A reward model on a copy of ``base`` (``base`` itself is not changed), trained on pairs.

    Args:
        base: a fitted ``ComputesHidden`` torch model (usually the SFT model), whose tokenizer
            reads the pairs.
        pairs: (prompt, chosen, rejected) pairs; chosen == rejected is an error.
        config: the Bradley-Terry margin.
        train_config: pairs per step, learning rate, schedule and budget of the trainer.
        checkpoint_dir: where the trainer checkpoints and resumes.

    Returns:
        The trained ``RewardModel`` (its ``train_log`` is the trainer's log, with the
        ``accuracy`` and ``reward_margin`` metrics on the training pairs).
    """
    check_pairs(pairs, "reward model")
    model = RewardModel(copy.deepcopy(base), config)
    model.base.network().requires_grad_(True)
    batches = _pair_batches(pairs, model, train_config.batch_size, train_config.seed)
    model.train_log = train(model, batches, BradleyTerry(config.margin), train_config,
                             checkpoint_dir=checkpoint_dir)
    return model


def pairwise_accuracy(model: RewardModel, pairs: Sequence[PreferencePair],
                      batch_size: int = 64) -> float:
    """The fraction of ``pairs`` with r(chosen) > r(rejected) (a tie counts one half)."""
    check_pairs(pairs, "pairwise_accuracy")
    tokenizer, boundary = model.tokenizer, model.tokenizer.boundary_id
    window = model.capabilities.max_window
    max_len = None if window is None else window - 1
    correct = 0.0
    for start in range(0, len(pairs), batch_size):
        part = pairs[start:start + batch_size]
        chosen = model.scores(collate([tokenize_response(tokenizer, p.prompt, p.chosen)
                                       for p in part], boundary, max_len))
        rejected = model.scores(collate([tokenize_response(tokenizer, p.prompt, p.rejected)
                                         for p in part], boundary, max_len))
        correct += float((chosen > rejected).sum() + 0.5 * (chosen == rejected).sum())
    return correct / len(pairs)
