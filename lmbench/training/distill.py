"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network"): a student trained on a teacher's softened next-token distributions.

For student logits z_s and teacher logits z_t at one position, temperature T and weight alpha:

    L = alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) ) + (1 - alpha) * CE(z_s, y)

averaged over positions (section 2 of the paper: the soft-target gradients scale as 1/T^2, so
the T^2 keeps their share of the gradient when T changes). T > 1 exposes the teacher's "dark
knowledge" in the small probabilities; alpha = 0 is plain training.

``distill`` is the one trainer with the ``distill`` objective of ``lmbench.training.objectives``
(where ``distillation_loss`` lives) passed to the student's ``fit``: batches, schedule, budget,
validation and checkpoints are the student's own, and nothing is patched onto the student. The
teacher (any ``LanguageModel`` with the same tokenizer: a larger gpt, an LSTM, even an n-gram)
reads each training window from no state through ``teacher.logits`` (no gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, LanguageModel, Trainable
from lmbench.training import objectives
from lmbench.training.objectives import distillation_loss

__all__ = ["DistillConfig", "distill", "distillation_loss"]


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


def _share_tokenizer(teacher: LanguageModel, student: LanguageModel) -> None:
    """An unfitted student takes the teacher's tokenizer; a fitted one must equal it."""
    if not student.tokenizer.is_fitted:
        student.tokenizer = teacher.tokenizer
        return
    if student.tokenizer.token_strings() != teacher.tokenizer.token_strings():
        raise LmbenchError("the student's tokenizer differs from the teacher's; build the "
                           "student unfitted so it takes the teacher's")


def distill(teacher: LanguageModel, student, corpus, config: DistillConfig = DistillConfig(),
            *, checkpoint_dir=None):
    """Fit ``student`` (an unfitted ``Trainable`` model) on ``corpus`` against ``teacher``.

    Example::

        teacher = lmbench.build_model("gpt", n_layer=4, n_embd=128).fit(corpus)
        student = lmbench.build_model("gpt", n_layer=1, n_embd=32, train={"max_steps": 500})
        distill(teacher, student, corpus, DistillConfig(temperature=2.0, alpha=0.5))

    Returns:
        ``student``, fitted.
    """
    if not isinstance(student, Trainable):
        raise LmbenchError(f"the student must be a neural model trained by "
                           f"lmbench.training.trainer; {student.name!r} is not")
    _share_tokenizer(teacher, student)
    objective = objectives.distill(teacher, config.temperature, config.alpha)
    return student.fit(corpus, budget=config.budget, checkpoint_dir=checkpoint_dir,
                       objective=objective)
