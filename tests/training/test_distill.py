"""Distillation: alpha = 0 is plain training exactly; with soft targets the loss falls; the loss
function is Hinton et al.'s formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget
from lmbench.training.distill import DistillConfig, distill, distillation_loss

STUDENT = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32,
           "train": {"max_steps": 24, "batch_size": 4, "seq_len": 32, "warmup_steps": 4,
                     "learning_rate": 1e-2, "eval_every": 6, "eval_tokens": 300,
                     "progress": False, "bf16": False}}


def _student(tokenizer=None):
    student = lmbench.build_model("gpt", **STUDENT)
    if tokenizer is not None:
        student.tokenizer = tokenizer
    return student


def test_alpha_zero_is_plain_training(gpt_target, tiny_corpus):
    plain = _student(gpt_target.tokenizer).fit(tiny_corpus)
    distilled = distill(gpt_target, _student(), tiny_corpus, DistillConfig(alpha=0.0))
    assert distilled.tokenizer is gpt_target.tokenizer
    for name, weight in plain.net.state_dict().items():
        assert torch.equal(weight, distilled.net.state_dict()[name]), name
    losses = [[(p["train_loss"], p["valid_loss"]) for p in model.training_log()["curve"]]
              for model in (plain, distilled)]
    assert losses[0] == losses[1]
    assert "training_loss" not in vars(distilled)  # the hook is the class's again


def test_distillation_loss_decreases(gpt_target, tiny_corpus):
    config = DistillConfig(temperature=2.0, alpha=0.7, budget=Budget(max_steps=24))
    student = distill(gpt_target, _student(), tiny_corpus, config)
    curve = student.training_log()["curve"]
    assert len(curve) == 4
    assert curve[-1]["train_loss"] < 0.8 * curve[0]["train_loss"]
    assert curve[-1]["valid_loss"] < curve[0]["valid_loss"]


def test_the_loss_is_hintons_formula():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    targets = torch.randint(0, 5, (2, 3))
    T, alpha = 3.0, 0.25
    p = torch.softmax(teacher / T, -1)
    kl = (p * (p.log() - torch.log_softmax(student / T, -1))).sum(-1).mean()
    ce = F.cross_entropy(student.flatten(0, 1), targets.flatten())
    expected = alpha * T**2 * kl + (1 - alpha) * ce
    assert distillation_loss(student, teacher, targets, T, alpha) == pytest.approx(
        float(expected), rel=1e-5)
    # a student equal to its teacher pays only the hard-label term
    same = distillation_loss(teacher, teacher, targets, T, alpha)
    hard = F.cross_entropy(teacher.flatten(0, 1), targets.flatten())
    assert same == pytest.approx(float((1 - alpha) * hard), rel=1e-5)


def test_bad_settings_are_refused(gpt_target, tiny_corpus):
    with pytest.raises(LmbenchError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(LmbenchError, match="temperature"):
        DistillConfig(temperature=0)
    word_student = lmbench.build_model("gpt", tokenizer="word", **{
        k: v for k, v in STUDENT.items() if k != "tokenizer"})
    word_student.tokenizer.fit(tiny_corpus.train)
    with pytest.raises(LmbenchError, match="tokenizer"):
        distill(gpt_target, word_student, tiny_corpus)


def test_a_statistical_teacher(ngram_draft, tiny_corpus):
    """An n-gram teacher's logits are log-probabilities; they distil like any others."""
    config = DistillConfig(alpha=1.0, budget=Budget(max_steps=18))
    student = distill(ngram_draft, _student(), tiny_corpus, config)
    curve = student.training_log()["curve"]
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]
