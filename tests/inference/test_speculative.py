"""Speculative decoding: greedy output equals the target's greedy output for any draft, and
sampling reproduces the target's distribution (chi-square on a small vocabulary)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Capabilities, LanguageModel
from lmbench.inference.sampling import SamplingConfig, generate
from lmbench.inference.speculative import speculative_generate

GREEDY = SamplingConfig(temperature=0)


class FixedModel(LanguageModel):
    """Next-token probabilities ``probs`` after any context; the state counts the ids read."""

    name = "fixed"

    def __init__(self, probs):
        self.logprobs = torch.tensor(probs, dtype=torch.float64).log()
        self.tokenizer = SimpleNamespace(boundary_id=0, vocab_size=len(probs))
        self.capabilities = Capabilities()

    def logits(self, input_ids, state=None):
        B, T = input_ids.shape
        return self.logprobs.expand(B, T, -1).clone(), (state or 0) + T

    def token_logprobs(self, input_ids, target_ids, state=None): ...
    def fit(self, *args, **kwargs): ...
    def n_params(self): return 0
    def config(self): return {}
    def save(self, path): ...
    @classmethod
    def load(cls, path): ...


class ShiftedModel(FixedModel):
    """The wrapped model's scores rolled by one id: its argmax is never the wrapped model's."""

    def __init__(self, model):
        self.model, self.tokenizer, self.capabilities = model, model.tokenizer, model.capabilities

    def logits(self, input_ids, state=None):
        logits, state = self.model.logits(input_ids, state)
        return logits.roll(1, dims=-1), state


def _prompt(model, text="the cat "):
    return model.tokenizer.encode(text)


@pytest.mark.parametrize("draft_name", ["gpt_draft", "ngram_draft", "gpt_target"])
@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_greedy_output_is_the_targets_greedy_output(gpt_target, draft_name, gamma, request):
    draft = request.getfixturevalue(draft_name)
    prompt = _prompt(gpt_target)
    expected = generate(gpt_target, prompt, 40, sampler=GREEDY)
    ids, stats = speculative_generate(gpt_target, draft, prompt, 40, gamma)
    assert ids == expected
    assert stats.n_new_tokens == 40 and stats.n_rounds == stats.n_target_calls
    if draft is gpt_target:  # a draft equal to the target is always right
        assert stats.acceptance_rate == 1.0
        assert stats.n_rounds == math.ceil(40 / (gamma + 1))


def test_greedy_past_the_window_still_equals_the_target(gpt_target, ngram_draft):
    """60 new ids after a 20-id prompt overrun block_size 64: the target slides its window."""
    prompt = _prompt(gpt_target, "the old bird found the")
    expected = generate(gpt_target, prompt, 60, sampler=GREEDY)
    ids, _ = speculative_generate(gpt_target, ngram_draft, prompt, 60, 4)
    assert ids == expected


def test_a_statistical_target_rolls_back_by_re_reading(ngram_draft, gpt_draft):
    """An n-gram's state is not a KVCache: rejected rounds resume from the saved state."""
    prompt = _prompt(ngram_draft)
    ids, stats = speculative_generate(ngram_draft, gpt_draft, prompt, 30, 4)
    assert ids == generate(ngram_draft, prompt, 30, sampler=GREEDY)
    assert stats.n_target_ids_read > len(prompt) + 1 + 30  # rejected and re-read ids


def test_a_draft_that_is_always_wrong_still_gives_the_target_output(gpt_target):
    prompt = _prompt(gpt_target)
    ids, stats = speculative_generate(gpt_target, ShiftedModel(gpt_target), prompt, 25, 3)
    assert ids == generate(gpt_target, prompt, 25, sampler=GREEDY)
    assert stats.acceptance_rate == 0.0 and stats.n_target_calls == 25


def test_stop_ids_end_generation(gpt_target, gpt_draft):
    prompt = _prompt(gpt_target)
    reference = generate(gpt_target, prompt, 40, sampler=GREEDY)
    stop = reference[7]
    ids, _ = speculative_generate(gpt_target, gpt_draft, prompt, 40, 4, stop_ids=[stop])
    assert ids == generate(gpt_target, prompt, 40, sampler=GREEDY, stop_ids=[stop])


def test_the_draft_must_share_the_tokenizer(gpt_target):
    with pytest.raises(LmbenchError, match="tokenizer"):
        speculative_generate(gpt_target, FixedModel([0.5, 0.5]), [], 5)


def _chi_square_sf_3(x: float) -> float:
    """P(chi^2 with 3 degrees of freedom > x)."""
    return math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)


def _chi_square_p(ids, probs) -> float:
    counts = torch.bincount(torch.tensor(ids), minlength=len(probs)).double()
    expected = len(ids) * torch.tensor(probs, dtype=torch.float64)
    return _chi_square_sf_3(float(((counts - expected) ** 2 / expected).sum()))


def test_sampling_preserves_the_target_distribution():
    p, q = [0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]  # a draft far from the target
    target, draft = FixedModel(p), FixedModel(q)
    ids, stats = speculative_generate(target, draft, [], 6000, 3, sampler=SamplingConfig(),
                                      seed=1)
    assert len(ids) == 6000
    assert 0.1 < stats.acceptance_rate < 0.9  # acceptances, rejections and bonus tokens all occur
    assert _chi_square_p(ids, p) > 1e-3
    # the test has power: the same counts are nowhere near the draft's distribution
    assert _chi_square_p(ids, q) < 1e-12


def test_sampling_with_draft_equal_to_target_accepts_everything():
    model = FixedModel([0.4, 0.3, 0.2, 0.1])
    ids, stats = speculative_generate(model, model, [], 2000, 4, sampler=SamplingConfig(),
                                      seed=2)
    assert stats.acceptance_rate == 1.0
    assert _chi_square_p(ids, [0.4, 0.3, 0.2, 0.1]) > 1e-3
