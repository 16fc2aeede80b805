"""TrainConfig and Budget refuse, before any network is built, values that would train forever,
fail after training or poison the weights: one line naming the field."""

from __future__ import annotations

import math

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget
from lmbench.training.trainer import TrainConfig


@pytest.mark.parametrize("field, value, message", [
    ("max_steps", -5, "train.max_steps must be > 0"),
    ("max_steps", 0, "train.max_steps must be > 0"),
    ("max_tokens", -1, "train.max_tokens must be > 0"),
    ("max_seconds", math.nan, "train.max_seconds must be > 0"),
    ("max_seconds", math.inf, "train.max_seconds must be > 0"),
    ("seed", -1, "train.seed must be in [0, 2**32 - 1]"),
    ("seed", 2**32, "train.seed must be in [0, 2**32 - 1]"),
    ("learning_rate", math.nan, "train.learning_rate must be > 0 and finite"),
    ("learning_rate", math.inf, "train.learning_rate must be > 0 and finite"),
    ("weight_decay", math.nan, "train.weight_decay must be >= 0"),
    ("weight_decay", -0.1, "train.weight_decay must be >= 0"),
    ("grad_clip", math.inf, "train.grad_clip must be >= 0"),
    ("grad_clip", -1.0, "train.grad_clip must be >= 0"),
    ("beta1", 1.0, "train.beta1 must be in [0, 1)"),
    ("beta2", -0.5, "train.beta2 must be in [0, 1)"),
    ("beta2", math.nan, "train.beta2 must be in [0, 1)"),
    ("min_lr_ratio", 2.0, "train.min_lr_ratio must be in [0, 1]"),
    ("warmup_steps", -1, "train.warmup_steps must be >= 0"),
    ("patience", -1, "train.patience must be >= 0"),
])
def test_bad_train_values_are_one_line_errors(field, value, message):
    with pytest.raises(LmbenchError) as error:
        TrainConfig(**{field: value})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_edge_values_that_make_sense_are_kept():
    TrainConfig(seed=2**32 - 1, grad_clip=0.0, weight_decay=0.0, beta1=0.0, warmup_steps=0,
                min_lr_ratio=1.0, max_steps=None, max_seconds=0.5)


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("max_steps", -5),
                                          ("max_tokens", -1), ("max_seconds", math.nan)])
def test_bad_budgets_are_refused(field, value):
    with pytest.raises(LmbenchError, match=f"budget {field} must be > 0"):
        Budget(**{field: value})


def test_a_run_file_with_a_bad_budget_fails_when_read():
    from lmbench.runs.config import parse_config

    with pytest.raises(LmbenchError, match=r"train.max_steps must be > 0 \(and finite\), got -5"):
        parse_config({"corpus": "tiny", "models": [{"family": "gpt", "train": {"max_steps": -5}}]},
                     "run.toml")
    with pytest.raises(LmbenchError, match=r"'seed' must be in \[0, 2\*\*32 - 1\]"):
        parse_config({"corpus": "tiny", "seed": 2**40, "models": [{"family": "ngram"}]})
    with pytest.raises(LmbenchError, match="'splits' is empty"):
        parse_config({"corpus": "tiny", "splits": [], "models": [{"family": "ngram"}]})
