"""seq2seq: the documented segment conditioning, cached = one-pass scoring, training, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lmbench
import lmbench.models.seq2seq  # noqa: F401  (registers "seq2seq")
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.scoring import EvalConfig, evaluate, score_stream
from lmbench.models import load_model
from lmbench.models.seq2seq import Seq2SeqConfig, Seq2SeqNetwork
from lmbench.training.trainer import TrainConfig

L = 8  # segment_len of the fitted model
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": L,
        "train": {"max_steps": 40, "batch_size": 8, "seq_len": 2 * L, "eval_every": 20,
                  "warmup_steps": 5, "learning_rate": 1e-2, "bf16": False, "progress": False}}


@pytest.fixture(scope="module")
def fitted(tiny_corpus):
    return lmbench.build_model("seq2seq", **TINY).fit(tiny_corpus)


def _stream(model, corpus, n_tokens: int = 3 * L + 5):
    """The test split's first tokens as (1, T) inputs (boundary first) and targets."""
    ids = torch.from_numpy(model.tokenizer.encode_split(corpus.split("test"))[:n_tokens])
    inputs = torch.cat((torch.tensor([model.tokenizer.boundary_id]), ids[:-1]))
    return inputs[None], ids[None]


def _network(segment_len: int = 5, vocab_size: int = 13) -> Seq2SeqNetwork:
    torch.manual_seed(0)
    config = Seq2SeqConfig(n_layer=2, n_head=2, n_embd=16, segment_len=segment_len,
                           train=TrainConfig(seq_len=2 * segment_len))
    return Seq2SeqNetwork(config, vocab_size, boundary_id=0).eval()


def test_one_call_decodes_each_segment_from_the_previous_one():
    """The module docstring's formula, one segment at a time, equals the folded one-call pass."""
    net, n = _network(), 5
    inputs = torch.cat((torch.zeros(2, 1, dtype=torch.long), torch.randint(1, 13, (2, 17))), 1)
    padded = torch.cat((torch.zeros(2, n - 1, dtype=torch.long), inputs), 1)  # u_t = b, t < 0
    expected = []
    for start in range(0, inputs.shape[1], n):  # segment k = start / n
        source = padded[:, start : start + n]  # u_{kL-L+1} .. u_{kL}
        logits, _ = net.decode(inputs[:, start : start + n], net.encode(source))
        expected.append(logits)
    with torch.no_grad():
        full, state = net(inputs)
    assert torch.allclose(full, torch.cat(expected, 1), atol=1e-5)
    assert state.position == inputs.shape[1] % n


def test_a_token_reaches_the_rest_of_its_segment_and_the_next_segment_only():
    net, n = _network(), 5
    inputs = torch.randint(1, 13, (1, 4 * n))
    changed = inputs.clone()
    p = n + 2  # input of segment 1, in the source of segment 2
    changed[0, p] = changed[0, p] % 12 + 1
    with torch.no_grad():
        before, after = net(inputs)[0], net(changed)[0]
    moved = (before - after).abs().amax(-1)[0] > 1e-6  # (T,)
    assert moved.tolist() == [p <= t < 3 * n for t in range(4 * n)]


def test_incremental_decoding_equals_one_call(fitted, tiny_corpus):
    """One token at a time (the cache, then a new source at every boundary) = one call."""
    inputs, targets = _stream(fitted, tiny_corpus)
    batched, _ = fitted.token_logprobs(inputs, targets)
    incremental, state = [], None
    for t in range(inputs.shape[1]):
        logits, state = fitted.logits(inputs[:, t : t + 1], state)
        incremental.append(torch.log_softmax(logits.double(), -1)[0, 0, targets[0, t]])
    assert torch.allclose(batched[0], torch.stack(incremental), atol=1e-5)


@pytest.mark.parametrize("cut", [1, L - 1, L, L + 1, 2 * L + 3])
def test_scoring_in_two_chunks_with_state_equals_one_call(fitted, tiny_corpus, cut):
    inputs, targets = _stream(fitted, tiny_corpus)
    whole, _ = fitted.token_logprobs(inputs, targets)
    first, state = fitted.token_logprobs(inputs[:, :cut], targets[:, :cut])
    second, _ = fitted.token_logprobs(inputs[:, cut:], targets[:, cut:], state)
    assert torch.allclose(whole, torch.cat([first, second], 1), atol=1e-5)


def test_evaluator_windows_not_aligned_with_segments_score_the_same(fitted, tiny_corpus):
    inputs, targets = _stream(fitted, tiny_corpus, 60)
    whole, _ = fitted.token_logprobs(inputs, targets)
    nll = score_stream(fitted, targets[0].numpy(), EvalConfig(window_len=5, progress=False))
    assert np.allclose(nll, -whole[0].numpy(), atol=1e-5)


def test_training_loss_is_the_scoring_nll(fitted, tiny_corpus):
    """The trainer's objective uses the scoring conditioning, window after window."""
    inputs, targets = _stream(fitted, tiny_corpus, 4 * L)
    scored, _ = fitted.token_logprobs(inputs, targets)
    net = fitted.net.eval()
    with torch.no_grad():
        first, state = fitted.training_loss(net, inputs[:, :2 * L], targets[:, :2 * L])
        second, _ = fitted.training_loss(net, inputs[:, 2 * L:], targets[:, 2 * L:], state)
    assert first.item() == pytest.approx(-scored[0, :2 * L].mean().item(), rel=1e-5)
    assert second.item() == pytest.approx(-scored[0, 2 * L:].mean().item(), rel=1e-5)


def test_fit_beats_the_uniform_distribution(fitted, tiny_corpus):
    for split in ("train", "test"):
        result = evaluate(fitted, tiny_corpus, split, EvalConfig(progress=False, n_bootstrap=10))
        assert result.nll_nats / result.n_tokens < math.log(fitted.tokenizer.vocab_size)


def test_next_token_distribution_sums_to_one(fitted, tiny_corpus):
    inputs, _ = _stream(fitted, tiny_corpus)
    logits, _ = fitted.logits(inputs)
    sums = torch.logsumexp(torch.log_softmax(logits.double(), -1), -1)
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-9)


def test_save_and_load_round_trip_scores_exactly(fitted, tiny_corpus, tmp_path):
    fitted.save(tmp_path / "model.npz")
    same = load_model(tmp_path / "model.npz")
    inputs, targets = _stream(fitted, tiny_corpus)
    assert torch.equal(fitted.token_logprobs(inputs, targets)[0],
                       same.token_logprobs(inputs, targets)[0])
    assert same.config() == fitted.config() and same.n_params() == fitted.n_params()


def test_generation_crosses_segment_boundaries(fitted):
    from lmbench.inference.sampling import generate

    out = generate(fitted, fitted.tokenizer.encode("the cat")[:2], 3 * L, seed=1)
    assert out == generate(fitted, fitted.tokenizer.encode("the cat")[:2], 3 * L, seed=1)
    assert len(out) == 3 * L


@pytest.mark.parametrize("options", [
    {"segment_len": 8, "train": {"seq_len": 12}},  # not whole segments
    {"n_embd": 15, "n_head": 3},  # odd: no sinusoidal pairs
    {"segment_len": 0},
])
def test_bad_configurations_are_refused(options):
    with pytest.raises(LmbenchError):
        lmbench.build_model("seq2seq", **options)
