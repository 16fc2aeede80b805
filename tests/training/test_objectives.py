"""Objectives as values: each one on every family it applies to, the moved ones giving the loss
the family methods gave, SFT counting only the response, log-probabilities with gradients, and
a pairwise objective written outside the library that the trainer runs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.data.examples import Example, PreferencePair
from lmbench.training.batching import (
    IGNORE_INDEX,
    ExampleBatch,
    ExampleBatches,
    StreamBatch,
    StreamBatches,
)
from lmbench.training.objectives import (
    LossOutput,
    corrupt,
    distill,
    distillation_loss,
    encoder_decoder,
    masked_lm,
    next_token,
    sft,
    token_logprobs_with_grad,
)
from lmbench.training.trainer import TrainConfig, train

STEPS = {"max_steps": 3, "batch_size": 4, "seq_len": 16, "warmup_steps": 1, "eval_every": 3,
         "eval_tokens": 200, "learning_rate": 1e-2, "progress": False, "bf16": False}
TINY = {
    "nplm": {"context": 3, "embed_dim": 8, "hidden_dim": 16},
    "rnn": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1},
    "lstm": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1},
    "gru": {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1},
    "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
    "moe": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "n_expert": 2},
    "bert": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    "seq2seq": {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 8},
}


def _ready(family, corpus, **train):
    """A tiny model of ``family`` with its tokenizer fitted and a fresh network."""
    model = lmbench.build_model(family, tokenizer="char", train={**STEPS, **train},
                                **TINY[family])
    model.tokenizer.fit(corpus.train)
    torch.manual_seed(0)
    model.net = model.build_network(model.tokenizer.vocab_size)
    return model


def _stream(model, corpus, step=0):
    config = model.config_.train
    ids = model.tokenizer.encode_split(corpus.train)
    return StreamBatches(ids, config.batch_size, config.seq_len, seed=0,
                         sequential=model.capabilities.carries_state)


@pytest.mark.parametrize("family", ["nplm", "rnn", "lstm", "gru", "gpt", "moe"])
def test_next_token_is_cross_entropy_plus_the_auxiliary_loss(family, tiny_corpus):
    model = _ready(family, tiny_corpus)
    assert model.default_objective() is next_token
    batches = _stream(model, tiny_corpus)
    batch = batches(0)
    model.net.train()
    torch.manual_seed(1)
    output = next_token(model, model.net, batch, None)
    aux = model.auxiliary_loss()  # the same forward pass's
    torch.manual_seed(1)
    logits, _ = model.net(batch.inputs, None)
    expected = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten()) + aux
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    if model.capabilities.carries_state:  # truncated BPTT hands the state on
        assert output.state is not None
    log = train(model, batches, next_token, model.config_.train,
                valid_ids=model.tokenizer.encode_split(tiny_corpus.split("valid")))
    assert log.steps == 3 and log.curve[-1]["valid_loss"] is not None


def test_masked_lm_is_berts_loss_as_before(tiny_corpus):
    model = _ready("bert", tiny_corpus, seq_len=16)
    assert model.default_objective() == masked_lm  # the config's mask_rate, 0.15
    batch = _stream(model, tiny_corpus)(0)
    torch.manual_seed(7)
    got = masked_lm(model, model.net, batch).loss
    torch.manual_seed(7)  # the old MaskedLM.training_loss, step for step
    window = torch.cat((batch.inputs[:, :1], batch.targets), dim=1)[:, -16:]
    corrupted, chosen = corrupt(window, model.tokenizer.vocab_size, 0.15)
    expected = F.cross_entropy(model.net(corrupted, None, chosen).float(), window[chosen])
    assert torch.equal(got, expected)
    assert train(model, _stream(model, tiny_corpus), masked_lm, model.config_.train).steps == 3


def test_encoder_decoder_is_the_seq2seq_loss_as_before(tiny_corpus):
    model = _ready("seq2seq", tiny_corpus)
    objective = model.default_objective()
    assert objective == encoder_decoder.__class__(segment_len=8)
    batches = _stream(model, tiny_corpus)
    first, second = batches(0), batches(1)
    out = objective(model, model.net, first)
    out2 = objective(model, model.net, second, out.state)
    logits, state = model.net(first.inputs, None)  # the old Seq2SeqLM.training_loss
    logits2, _ = model.net(second.inputs, state)
    for got, logit, batch in ((out, logits, first), (out2, logits2, second)):
        assert torch.equal(got.loss, F.cross_entropy(logit.float().flatten(0, 1),
                                                     batch.targets.flatten()))
    with pytest.raises(LmbenchError, match="whole segments: window of 12 tokens"):
        objective(model, model.net, StreamBatch(first.inputs[:, :12], first.targets[:, :12]))
    assert train(model, batches, objective, model.config_.train).steps == 3


def test_distill_against_a_teacher(gpt_target, tiny_corpus):
    student = _ready("gpt", tiny_corpus)
    student.tokenizer = gpt_target.tokenizer
    student.net = student.build_network(student.tokenizer.vocab_size)
    batch = _stream(student, tiny_corpus)(0)
    student.net.eval()
    objective = distill(gpt_target, temperature=2.0, alpha=0.6)
    logits, _ = student.net(batch.inputs)
    teacher = gpt_target.logits(batch.inputs)[0]
    expected = distillation_loss(logits, teacher, batch.targets, 2.0, 0.6)
    assert objective(student, student.net, batch).loss.item() == pytest.approx(
        expected.item(), rel=1e-6)
    plain = distill(gpt_target, alpha=0.0)(student, student.net, batch).loss
    assert torch.equal(plain, next_token(student, student.net, batch).loss)
    with pytest.raises(LmbenchError, match="alpha"):
        distill(gpt_target, alpha=2.0)


WHO = ["the cat", "a dog", "my friend", "she", "the farmer", "the cow"]
QA = [Example(f"who {verb} ? ", f"{who} {verb} .\n") for who in WHO for verb in ("ate", "sat")]


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_sft_counts_only_the_response(family, tiny_corpus):
    model = _ready(family, tiny_corpus, max_steps=30, learning_rate=2e-2, eval_every=10)
    batches = ExampleBatches(QA, model.tokenizer, 4, seed=0, max_len=32)
    batch = batches(0)
    model.net.eval()
    loss = sft(model, model.net, batch).loss
    # = the mean NLL of the response tokens under the scoring path (ignored targets score 0)
    scored, _ = model.token_logprobs(batch.input_ids, batch.masked_targets())
    assert loss.item() == pytest.approx(-scored.sum().item() / batch.loss_mask.sum().item(),
                                        rel=1e-5)
    # changing a masked-out target (prompt or padding) never changes the loss
    noise = torch.randint(0, model.tokenizer.vocab_size, batch.target_ids.shape)
    changed = ExampleBatch(batch.input_ids,
                           torch.where(batch.loss_mask, batch.target_ids, noise), batch.loss_mask)
    assert torch.equal(sft(model, model.net, changed).loss, loss)
    log = train(model, batches, sft, model.config_.train)
    curve = [p["train_loss"] for p in log.curve]
    assert log.steps == 30 and curve[-1] < curve[0]
    assert log.curve[0]["metrics"]["n_loss_tokens"] > 0
    with pytest.raises(LmbenchError, match="sft objective reads ExampleBatch"):
        sft(model, model.net, _stream(model, tiny_corpus)(0))


def test_token_logprobs_with_grad_is_autograd_of_the_cross_entropy(tiny_corpus):
    model = _ready("gpt", tiny_corpus)
    inputs = torch.randint(0, model.tokenizer.vocab_size, (2, 10))
    targets = torch.randint(0, model.tokenizer.vocab_size, (2, 10))
    targets[0, :4] = IGNORE_INDEX
    logprobs = token_logprobs_with_grad(model, inputs, targets)  # (B, T)
    assert logprobs.shape == (2, 10) and (logprobs[0, :4] == 0).all()
    (-logprobs.sum() / (targets != IGNORE_INDEX).sum()).backward()
    ours = [p.grad.clone() for p in model.net.parameters()]
    model.net.zero_grad()
    logits, _ = model.net(inputs)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1).backward()
    assert any(g.abs().sum() > 0 for g in ours)
    for mine, reference in zip(ours, (p.grad for p in model.net.parameters())):
        assert torch.allclose(mine, reference, atol=1e-6)


def test_a_pairwise_objective_needs_no_change_to_the_trainer(tiny_corpus):
    """A Bradley-Terry preference loss on the policy's own sequence log-probabilities
    (-log sigmoid(log p(chosen) - log p(rejected))), written here, outside lmbench."""

    def preference(model, network, batch, state=None):
        def sequence_logprob(rows: ExampleBatch):  # (B,)
            return token_logprobs_with_grad(model, rows.input_ids, rows.masked_targets()).sum(1)

        margin = sequence_logprob(batch.chosen) - sequence_logprob(batch.rejected)  # (B,)
        return LossOutput(-F.logsigmoid(margin).mean(), None,
                          {"accuracy": float((margin > 0).float().mean())})

    model = _ready("gpt", tiny_corpus)
    pairs = [PreferencePair(f"{who} ", "sat on a mat .", "mat a on sat .") for who in WHO[:5]]
    config = TrainConfig(max_steps=12, warmup_steps=1, learning_rate=2e-2, eval_every=6,
                         progress=False, bf16=False)
    log = train(model, ExampleBatches(pairs, model.tokenizer, 5), preference, config)
    assert log.curve[-1]["train_loss"] < log.curve[0]["train_loss"]
    assert log.curve[-1]["metrics"]["accuracy"] >= log.curve[0]["metrics"]["accuracy"]


def test_the_trainer_refuses_a_model_it_cannot_train(ngram_draft, tiny_corpus):
    batches = StreamBatches(ngram_draft.tokenizer.encode_split(tiny_corpus.train), 2, 8)
    with pytest.raises(LmbenchError, match="needs a Trainable model"):
        train(ngram_draft, batches, next_token, TrainConfig(progress=False))


def test_the_documented_objective_runs(tiny_corpus):
    """docs/adding_an_objective.md: its label-smoothing objective, as written, through fit."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "adding_an_objective.md").read_text()
    namespace: dict = {}
    exec(text.split("```python\n")[1].split("```")[0], namespace)
    smoothed = namespace["LabelSmoothed"]
    model = _ready("gpt", tiny_corpus)
    batch = _stream(model, tiny_corpus)(0)
    model.net.eval()
    assert torch.equal(smoothed(0.0)(model, model.net, batch).loss,
                       next_token(model, model.net, batch).loss)
    logprobs = torch.log_softmax(model.net(batch.inputs)[0], -1)  # (B, T, V)
    nll = -logprobs.gather(-1, batch.targets[..., None]).mean()
    expected = 0.9 * nll - 0.1 * logprobs.mean()  # (1 - e) one-hot + e uniform
    assert smoothed(0.1)(model, model.net, batch).loss.item() == pytest.approx(expected.item(),
                                                                                rel=1e-5)
    fitted = lmbench.build_model("gpt", tokenizer="char", train=STEPS, **TINY["gpt"])
    fitted.fit(tiny_corpus, objective=smoothed(0.1))
    assert fitted.train_log_.steps == 3
