import math

import pytest
import torch
import torch.nn.functional as F

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.scoring import score_stream
from lmbench.models.adaptive_softmax import AdaptiveSoftmax


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return AdaptiveSoftmax(16, 50, [5, 20], div_value=2.0)


def test_log_prob_is_a_distribution_over_the_whole_vocabulary(layer):
    hidden = torch.randn(7, 16)
    logprob = layer.log_prob(hidden)
    assert logprob.shape == (7, 50)
    assert torch.allclose(logprob.logsumexp(-1), torch.zeros(7), atol=1e-5)


def test_training_loss_equals_cross_entropy_of_the_full_distribution(layer):
    hidden = torch.randn(40, 16)
    targets = torch.tensor([0, 4, 5, 19, 20, 49] * 6 + [1, 2, 3, 30])
    full = F.nll_loss(layer.log_prob(hidden), targets, reduction="none")
    assert torch.allclose(layer.nll(hidden, targets), full, atol=1e-5)
    assert torch.allclose(layer.loss(hidden, targets), full.mean(), atol=1e-6)


def test_shortlist_only_batch_and_gradients_reach_the_tails(layer):
    hidden = torch.randn(3, 16, requires_grad=True)
    layer.loss(hidden, torch.tensor([0, 1, 2])).backward()  # no tail target: tails skipped
    assert layer.tails[0][0].weight.grad is None
    layer.loss(hidden, torch.tensor([0, 10, 45])).backward()
    assert layer.tails[0][0].weight.grad is not None
    assert layer.tails[1][1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cutoffs", [[0, 5], [5, 5], [5, 3], [5, 60]])
def test_bad_cutoffs_are_rejected(cutoffs):
    with pytest.raises(LmbenchError, match="adaptive_cutoffs"):
        AdaptiveSoftmax(16, 50, cutoffs)


def test_lstm_with_adaptive_softmax_trains_and_scores(tiny_corpus):
    model = lmbench.build_model("lstm", embed_dim=16, hidden_dim=16, n_layer=1,
                                adaptive_cutoffs=[8, 20], dropout=0.0,
                                train={"max_steps": 300, "batch_size": 8, "seq_len": 8,
                                       "learning_rate": 1e-2})
    model.fit(tiny_corpus, valid=False)
    ids = torch.tensor([model.tokenizer.encode_split(tiny_corpus.train)[:12].tolist()])
    logits, _ = model.logits(ids)
    assert torch.allclose(torch.logsumexp(logits, -1), torch.zeros(1, 12), atol=1e-5)
    nll = score_stream(model, model.tokenizer.encode_split(tiny_corpus.train))
    assert nll.mean() < 0.8 * math.log(model.tokenizer.vocab_size)  # learned beyond uniform
