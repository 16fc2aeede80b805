"""Supervised fine-tuning (Ouyang et al. 2022, "Training language models to follow instructions
with human feedback", section 3.5): next-token cross-entropy on the response tokens only,

    L = -sum_t m_t log p(y_t | x, y_<t) / sum_t m_t,   m_t = 1 on the response,

the ``sft`` objective of ``lmbench.training.objectives`` through the ordinary trainer on
per-example batches (``lmbench.training.batching.ExampleBatches``; prompts longer than the
model's window are cut from the left). The model is fine-tuned in place from its current
weights (a pretrained base, or a PEFT-adapted one), keeping its tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.data.examples import Example
from lmbench.training.batching import ExampleBatches
from lmbench.training.objectives import sft
from lmbench.training.trainer import TrainConfig, TrainLog, train

SFT_TRAIN = TrainConfig(batch_size=32, learning_rate=1e-3, warmup_steps=20, max_steps=500,
                        eval_every=100, checkpoint_every=100, progress=False)


def train_sft(model: LanguageModel, examples: Sequence[Example],
              train_config: TrainConfig = SFT_TRAIN, *, checkpoint_dir=None) -> TrainLog:
    """Fine-tune ``model`` (a fitted ``Trainable``) on (prompt, response) examples.

    Args:
        model: the base model; its tokenizer reads the examples.
        examples: the ``Example``s (``lmbench.data.examples.load_examples``).
        train_config: examples per step, learning rate, schedule and budget.
        checkpoint_dir: where the trainer checkpoints and resumes.

    Returns:
        The trainer's log (metric ``n_loss_tokens``: response tokens per batch).
    """
    if not isinstance(model, Trainable):
        raise LmbenchError(f"sft trains a Trainable (torch) model; {model.name!r} is not")
    if not examples:
        raise LmbenchError("sft needs at least one example")
    bad = next((i for i, e in enumerate(examples) if not isinstance(e, Example)), None)
    if bad is not None:
        raise LmbenchError(f"sft: example {bad} is a {type(examples[bad]).__name__}, not an "
                           "Example (prompt, response)")
    batches = ExampleBatches(examples, model.tokenizer, train_config.batch_size,
                             seed=train_config.seed, max_len=model.capabilities.max_window)
    return train(model, batches, sft, train_config, checkpoint_dir=checkpoint_dir)
