"""Training objectives: values passed to the trainer, never methods patched onto a model.

An objective is a callable ``objective(model, network, batch, state) -> LossOutput``: ``model``
is a ``lmbench.core.interface.Trainable``, ``network`` its module or the ``torch.compile``
wrapper of it (call ``network`` for the forward pass the trainer optimises), ``batch`` one batch
of ``lmbench.training.batching`` on the network's device and ``state`` what the previous batch
of the same stream returned (None at a stream's start). It returns the scalar loss, the state to
carry and optional named metrics (averaged into the training curve). Later objectives (a reward
model's pairwise loss, DPO, PPO / GRPO) take a ``PairBatch`` or their own batch kind and fit the
same signature; ``token_logprobs_with_grad`` gives them log-probabilities with gradients for
every torch family. Each family names its default in its own file (``default_objective()``).

With logits z (B, T, V), targets y and ``-1`` targets ignored (every objective here):

- ``next_token``: L = -1/N sum_{t} log softmax(z_t)[y_t] (the cross-entropy of the interface's
  conditioning) + the family's ``auxiliary_loss()`` (a mixture's balance and router z-loss,
  Switch eq. 4-6 and ST-MoE eq. 5; 0 elsewhere). State-carrying families continue the stream
  from ``state`` (truncated BPTT).
- ``masked_lm`` (BERT, Devlin et al. 2019 section 3.1): the window x = (inputs[:, 0], targets)
  is corrupted, each position chosen with probability ``mask_rate`` and a chosen one becoming
  [MASK] (0.8), a random token (0.1) or itself (0.1);  L = -1/|M| sum_{t in M} log p(x_t | x~).
- ``encoder_decoder`` (Vaswani et al. 2017): the teacher-forced cross-entropy of the decoder,
  p(y_t | u_0..u_t) = Decoder(u_{kL}..u_t; Encoder(s_k)), the source s_k the previous segment
  (carried in ``state`` across batches), over whole segments of ``segment_len`` tokens.
- ``distill(teacher, temperature, alpha)`` (Hinton, Vinyals & Dean 2015):
  L = alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) CE(z_s, y).
- ``sft`` (supervised fine-tuning, Ouyang et al. 2022 section 3.5): next-token cross-entropy over
  the positions of a per-example batch whose loss mask is set (the response),
  L = -sum m log p(y | x) / sum m, plus ``auxiliary_loss()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, State, Trainable
from lmbench.training.batching import IGNORE_INDEX, Batch, ExampleBatch, StreamBatch

MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # BERT: of the chosen tokens; the other 0.1 stay


@dataclass(frozen=True)
class LossOutput:
    """What an objective returns for one batch."""

    loss: torch.Tensor  # scalar, with the graph
    state: State = None  # carried to the next batch of the stream (detached by the trainer)
    metrics: Mapping[str, float] = field(default_factory=dict)  # e.g. {"accuracy": 0.7}


class Objective(Protocol):
    """``(model, network, batch, state) -> LossOutput``; see the module docstring."""

    def __call__(self, model: Trainable, network: torch.nn.Module, batch: Batch,
                 state: State = None) -> LossOutput: ...


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL of (B, T, V) logits at (B, T) targets, in fp32; IGNORE_INDEX targets skipped."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),  # (B T, V)
                           ignore_index=IGNORE_INDEX)


def _stream(batch: Batch, objective: str) -> StreamBatch:
    if not isinstance(batch, StreamBatch):
        raise LmbenchError(f"the {objective} objective reads stream batches, got "
                           f"{type(batch).__name__}")
    return batch


@dataclass(frozen=True)
class NextToken:
    """Next-token cross-entropy plus the family's auxiliary losses (module docstring)."""

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        batch = _stream(batch, "next_token")
        logits, state = network(batch.inputs, state,
                                want_state=model.capabilities.carries_state)  # (B, T, V)
        return LossOutput(_cross_entropy(logits, batch.targets) + model.auxiliary_loss(), state)


def corrupt(ids: torch.Tensor, vocab_size: int, mask_rate: float,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of (B, T) ids -> (corrupted ids, chosen positions), both (B, T).

    A position is chosen when its uniform draw u < mask_rate; then u / mask_rate is uniform too,
    and splits the chosen ones 80 / 10 / 10 into [MASK] (id ``vocab_size``), a random real token,
    and unchanged. At least one position is chosen, so the loss is always defined. The draws come
    from ``generator``, else torch's global one (seeded and checkpointed by the trainer)."""
    draws = torch.rand(ids.shape, generator=generator, device=ids.device)  # (B, T)
    if not (draws < mask_rate).any():
        draws.view(-1)[draws.argmin()] = 0.0
    chosen = draws < mask_rate
    split = draws / mask_rate
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator, device=ids.device)
    corrupted = torch.where(chosen & (split < MASK_FRACTION), vocab_size, ids)
    to_random = chosen & (split >= MASK_FRACTION) & (split < MASK_FRACTION + RANDOM_FRACTION)
    return torch.where(to_random, random_ids, corrupted), chosen


@dataclass(frozen=True)
class MaskedLM:
    """BERT's masked-LM loss (module docstring). The network is called as
    ``network(corrupted (B, T), key_mask None, read (B, T) bool) -> (N, V)`` logits at the N
    read positions, [MASK] being id V; the window keeps the last ``max_window`` tokens."""

    mask_rate: float = 0.15

    def __post_init__(self) -> None:
        if not 0 < self.mask_rate < 1:
            raise LmbenchError(f"mask_rate must be in (0, 1), got {self.mask_rate}")

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        batch = _stream(batch, "masked_lm")
        window = torch.cat((batch.inputs[:, :1], batch.targets), dim=1)  # (B, T + 1)
        if model.capabilities.max_window is not None:
            window = window[:, -model.capabilities.max_window:]
        corrupted, chosen = corrupt(window, model.tokenizer.vocab_size, self.mask_rate)
        logits = network(corrupted, None, chosen)  # (N, V)
        return LossOutput(F.cross_entropy(logits.float(), window[chosen]), None)


@dataclass(frozen=True)
class EncoderDecoder:
    """The encoder-decoder's teacher-forced cross-entropy (module docstring): the network
    continues the segmentation of each stream from ``state``; with ``segment_len`` a window
    that is not whole segments is an error (the carried source would be cut)."""

    segment_len: int | None = None

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        batch = _stream(batch, "encoder_decoder")
        L = self.segment_len
        if L is not None and batch.inputs.shape[1] % L:
            raise LmbenchError(f"encoder_decoder trains on whole segments: window of "
                               f"{batch.inputs.shape[1]} tokens, segment_len {L}")
        logits, state = network(batch.inputs, state)  # (B, T, V); state: the last segment
        return LossOutput(_cross_entropy(logits, batch.targets) + model.auxiliary_loss(), state)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      targets: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al.'s loss (module docstring) for (B, T, V) logits and (B, T) targets, averaged
    over the positions whose target is not IGNORE_INDEX (a scalar); ``teacher_logits`` may be
    None when ``alpha`` is 0."""
    student_logits = student_logits.float().flatten(0, 1)  # (B T, V)
    targets = targets.flatten()
    hard = F.cross_entropy(student_logits, targets, ignore_index=IGNORE_INDEX)
    if alpha == 0:
        return hard
    kept = targets != IGNORE_INDEX
    if not kept.all():
        student_logits, teacher_logits = student_logits[kept], teacher_logits.flatten(0, 1)[kept]
    teacher_logprobs = torch.log_softmax(teacher_logits.float().flatten(0, -2) / temperature, -1)
    student_logprobs = torch.log_softmax(student_logits / temperature, dim=-1)
    soft = F.kl_div(student_logprobs, teacher_logprobs, log_target=True, reduction="batchmean")
    return alpha * temperature**2 * soft + (1 - alpha) * hard


@dataclass(frozen=True)
class Distill:
    """Distillation against ``teacher`` (module docstring). The teacher (any ``LanguageModel``
    with the student's tokenizer: a larger gpt, an LSTM, an n-gram) reads each training window
    from no state through ``teacher.logits`` (evaluation mode, no gradients)."""

    teacher: LanguageModel
    temperature: float = 2.0  # T of the soft targets (> 0); Hinton et al. use 1-20
    alpha: float = 0.5  # weight of the soft-target term in [0, 1]; 0 = plain training

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise LmbenchError(f"distillation temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise LmbenchError(f"distillation alpha must be in [0, 1], got {self.alpha}")

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        batch = _stream(batch, "distill")
        logits, state = network(batch.inputs, state,
                                want_state=model.capabilities.carries_state)  # (B, T, V)
        teacher_logits = None
        if self.alpha > 0:
            # inference_mode tensors cannot enter autograd; a clone outside it can
            teacher_logits = self.teacher.logits(batch.inputs)[0].to(logits.device).clone()
        loss = distillation_loss(logits, teacher_logits, batch.targets, self.temperature,
                                 self.alpha)
        return LossOutput(loss + model.auxiliary_loss(), state)


def distill(teacher: LanguageModel, temperature: float = 2.0, alpha: float = 0.5) -> Distill:
    """The distillation objective against ``teacher`` (module docstring)."""
    return Distill(teacher, temperature, alpha)


@dataclass(frozen=True)
class SFT:
    """Next-token loss over the masked positions of a per-example batch (module docstring)."""

    def __call__(self, model, network, batch, state=None) -> LossOutput:
        if not isinstance(batch, ExampleBatch):
            raise LmbenchError(f"the sft objective reads ExampleBatch batches, got "
                               f"{type(batch).__name__}")
        logits, _ = network(batch.input_ids, None, want_state=False)  # (B, T, V)
        targets = batch.masked_targets()  # (B, T)
        loss = _cross_entropy(logits, targets) + model.auxiliary_loss()
        return LossOutput(loss, None, {"n_loss_tokens": float((targets != IGNORE_INDEX).sum())})


next_token = NextToken()
masked_lm = MaskedLM()
encoder_decoder = EncoderDecoder()
sft = SFT()


def token_logprobs_with_grad(model: Trainable, input_ids: torch.Tensor,
                             target_ids: torch.Tensor) -> torch.Tensor:
    """log p(target | context) with the autograd graph, for objectives written once for every
    torch family (preference and policy losses sum these over a response).

    Args:
        model: a fitted ``Trainable``; its network's current mode (train / eval) is kept.
        input_ids: (B, T) ids, read from no state.
        target_ids: (B, T) next ids; IGNORE_INDEX (-1) targets give 0.0 (and no gradient).

    Returns:
        (B, T) float32 natural-log probabilities on the network's device.
    """
    logits, _ = model.forward_logits(input_ids)  # (B, T, V)
    targets = torch.as_tensor(target_ids, dtype=torch.long, device=logits.device)  # (B, T)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(targets != IGNORE_INDEX, picked, 0.0)


def describe(objective: Objective) -> dict:
    """The objective's kind and plain settings (the checkpoint's identity includes them)."""
    settings = {}
    if is_dataclass(objective):
        for setting in fields(objective):
            value = getattr(objective, setting.name)
            if isinstance(value, (bool, int, float, str, type(None))):
                settings[setting.name] = value
    return {"kind": type(objective).__name__, **settings}
