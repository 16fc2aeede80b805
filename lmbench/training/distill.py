"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network"): a student trained on a teacher's softened next-token distributions.

For student logits z_s and teacher logits z_t at one position, temperature T and weight alpha:

    L = alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) ) + (1 - alpha) * CE(z_s, y)

averaged over positions (section 2 of the paper: the soft-target gradients scale as 1/T^2, so
the T^2 keeps their share of the gradient when T changes). T > 1 exposes the teacher's "dark
knowledge" in the small probabilities; alpha = 0 is plain training.

``distill`` reuses the one trainer (``lmbench.training.trainer``) unchanged: it replaces the student's
``training_loss`` hook (``NeuralLM.training_loss``) on the instance for the duration of the fit,
so batches, schedule, budget, validation and checkpoints are the student's own. The teacher
(any ``LanguageModel`` with the same tokenizer: a larger gpt, an LSTM, even an n-gram) reads each
training window from no state through ``teacher.logits`` (evaluation mode, no gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, LanguageModel


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0  # T of the soft targets (> 0); Hinton et al. use 1-20
    alpha: float = 0.5  # weight of the soft-target term in [0, 1]; 0 = plain training
    budget: Budget | None = None  # overrides the student's train limits (steps, tokens, seconds)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise LmbenchError(f"distillation temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise LmbenchError(f"distillation alpha must be in [0, 1], got {self.alpha}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      targets: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """The loss of the module docstring for (B, T, V) logits and (B, T) targets (a scalar)."""
    student_logits = student_logits.float().flatten(0, 1)  # (B T, V)
    hard = F.cross_entropy(student_logits, targets.flatten())
    if alpha == 0:
        return hard
    teacher_logprobs = torch.log_softmax(teacher_logits.float().flatten(0, 1) / temperature, -1)
    student_logprobs = torch.log_softmax(student_logits / temperature, dim=-1)
    soft = F.kl_div(student_logprobs, teacher_logprobs, log_target=True, reduction="batchmean")
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def _share_tokenizer(teacher: LanguageModel, student: LanguageModel) -> None:
    """An unfitted student takes the teacher's tokenizer; a fitted one must equal it."""
    if not getattr(student.tokenizer, "fitted_", False):
        student.tokenizer = teacher.tokenizer
        return
    if student.tokenizer.token_strings() != teacher.tokenizer.token_strings():
        raise LmbenchError("the student's tokenizer differs from the teacher's; build the "
                           "student unfitted so it takes the teacher's")


def distill(teacher: LanguageModel, student, corpus, config: DistillConfig = DistillConfig(),
            *, checkpoint_dir=None):
    """Fit ``student`` (an unfitted ``NeuralLM``) on ``corpus`` against ``teacher``; returns it.

    Example::

        teacher = lmbench.build_model("gpt", n_layer=4, n_embd=128).fit(corpus)
        student = lmbench.build_model("gpt", n_layer=1, n_embd=32, train={"max_steps": 500})
        distill(teacher, student, corpus, DistillConfig(temperature=2.0, alpha=0.5))
    """
    if not hasattr(student, "training_loss"):
        raise LmbenchError(f"the student must be a neural model trained by lmbench.training.trainer; "
                           f"{student.name!r} is not")
    _share_tokenizer(teacher, student)
    carries_state = student.capabilities.carries_state
    temperature, alpha = config.temperature, config.alpha

    def training_loss(network, inputs, targets, state=None):
        logits, state = network(inputs, state, want_state=carries_state)  # (B, T, V)
        teacher_logits = None
        if alpha > 0:
            # inference_mode tensors cannot enter autograd; a clone outside it can
            teacher_logits = teacher.logits(inputs)[0].clone()
        loss = distillation_loss(logits, teacher_logits, targets, temperature, alpha)
        return loss + student.auxiliary_loss(), state

    student.training_loss = training_loss  # the instance's hook, for this fit only
    try:
        student.fit(corpus, budget=config.budget, checkpoint_dir=checkpoint_dir)
    finally:
        del student.training_loss
    return student
