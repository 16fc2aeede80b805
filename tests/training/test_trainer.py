"""The trainer: seeded determinism, resume from a checkpoint, a diverging loss, budgets."""

from __future__ import annotations

import pytest
import torch

import lmbench
import lmbench.training.trainer as train_module
from lmbench.core import device as device_module
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget

TRAIN = {"max_steps": 24, "batch_size": 4, "seq_len": 12, "eval_every": 8, "warmup_steps": 3,
         "learning_rate": 1e-2, "checkpoint_every": 8, "progress": False}


def _model(family="gpt", **train):
    options = {"gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                       "dropout": 0.1},
               "lstm": {"embed_dim": 12, "hidden_dim": 12, "n_layer": 2, "dropout": 0.1}}[family]
    return lmbench.build_model(family, tokenizer="char", train={**TRAIN, **train}, **options)


def _weights(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()}


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_same_seed_same_weights_and_metrics(tiny_corpus, family):
    first, second = _model(family).fit(tiny_corpus), _model(family).fit(tiny_corpus)
    for name, value in _weights(first).items():
        assert torch.equal(value, second.net.state_dict()[name]), name
    assert first.train_log_.curve == [
        {**p, "seconds": q["seconds"]} for p, q in zip(second.train_log_.curve,
                                                       first.train_log_.curve)]
    other = _model(family, seed=1).fit(tiny_corpus)
    assert not torch.equal(_weights(other)["token_embedding.weight" if family == "gpt"
                                           else "embedding.weight"],
                           _weights(first)["token_embedding.weight" if family == "gpt"
                                           else "embedding.weight"])


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_resume_after_a_kill_reaches_the_same_weights(tiny_corpus, tmp_path, monkeypatch, family):
    uninterrupted = _model(family).fit(tiny_corpus, checkpoint_dir=tmp_path / "a")
    save = train_module._save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        if payload["log"]["steps"] == 16:
            raise KeyboardInterrupt  # killed right after the step-16 checkpoint

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _model(family).fit(tiny_corpus, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(train_module, "_save_checkpoint", save)
    resumed = _model(family).fit(tiny_corpus, checkpoint_dir=tmp_path / "b")
    assert resumed.train_log_.steps == 24
    for name, value in _weights(uninterrupted).items():
        assert torch.allclose(value, resumed.net.state_dict()[name], atol=0, rtol=0), name


def test_a_checkpoint_of_another_config_is_refused(tiny_corpus, tmp_path):
    _model().fit(tiny_corpus, checkpoint_dir=tmp_path)
    with pytest.raises(LmbenchError, match="checkpoint of a different configuration"):
        _model(learning_rate=5e-3).fit(tiny_corpus, checkpoint_dir=tmp_path)


def test_nan_loss_stops_with_the_step_and_no_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    model = _model()
    original = model.auxiliary_loss
    calls = {"n": 0}

    def poisoned():
        calls["n"] += 1
        return torch.tensor(float("nan")) if calls["n"] == 5 else original()

    monkeypatch.setattr(model, "auxiliary_loss", poisoned)
    with pytest.raises(LmbenchError, match="loss is nan at step 4"):
        model.fit(tiny_corpus, checkpoint_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_budgets_stop_training(tiny_corpus):
    model = _model().fit(tiny_corpus, budget=Budget(max_tokens=4 * 12 * 5))
    assert model.train_log_.steps == 5 and model.train_log_.stopped_by == "max_tokens"
    model = _model(max_steps=10_000, eval_every=1000).fit(tiny_corpus,
                                                          budget=Budget(max_seconds=1.0))
    assert model.train_log_.stopped_by == "max_seconds" and model.train_log_.seconds >= 1.0


@pytest.mark.parametrize("native_bf16", [True, False])
def test_the_log_says_which_precision_training_ran_in(tiny_corpus, monkeypatch, native_bf16):
    # bf16 = True asks for autocast, which runs only where the device has bf16 matmuls
    monkeypatch.setattr(device_module, "_cpu_has_native_bf16", lambda: native_bf16)
    log = _model(max_steps=2).fit(tiny_corpus).train_log_
    assert log.precision == ("bf16" if native_bf16 else "fp32")
    assert _model(max_steps=2, bf16=False).fit(tiny_corpus).train_log_.precision == "fp32"


def test_best_validation_weights_are_restored(tiny_corpus):
    model = _model(max_steps=30, eval_every=5, learning_rate=3e-2).fit(tiny_corpus)
    log = model.train_log_
    valid = [p["valid_loss"] for p in log.curve]
    assert log.best_valid_nats == min(valid)
    result = lmbench.evaluate(model, tiny_corpus, "valid", lmbench.EvalConfig(progress=False))
    assert result.nll_nats / result.n_tokens == pytest.approx(log.best_valid_nats, rel=1e-6)


def test_learning_rate_schedule_warms_up_then_decays():
    config = train_module.TrainConfig(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1)
    rates = [train_module.learning_rate(config, s, s / 100) for s in range(101)]
    assert rates[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + 1)))
    assert max(rates) == pytest.approx(rates[9], rel=0.01)
    assert rates[-1] == pytest.approx(0.1)
