"""The interpolation family: EM weights, the mixture's probabilities, save/load."""

import numpy as np
import pytest
import torch

import lmbench
from lmbench.combinators.interpolation import InterpolatedLM, em_weights, perplexity_of_mixture
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import SelectsStateRows
from tests.model_factory import Unselecting


def test_em_finds_the_weights_of_maximum_held_out_likelihood():
    rng = np.random.default_rng(0)
    nll = -np.log(rng.uniform(0.01, 1.0, size=(2, 500)))
    weights = em_weights(nll, iterations=500, tolerance=1e-12)
    grid = np.linspace(0.001, 0.999, 999)
    best = grid[np.argmin([perplexity_of_mixture(nll, np.array([g, 1 - g])) for g in grid])]
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] == pytest.approx(best, abs=2e-3)


def test_em_gives_all_weight_to_a_model_that_is_always_better():
    nll = np.array([[1.0] * 100, [3.0] * 100])
    assert em_weights(nll, iterations=2000, tolerance=1e-12)[0] > 0.99


@pytest.fixture(scope="module")
def parts(tiny_corpus):
    bigram = lmbench.build_model("ngram", order=2).fit(tiny_corpus)
    trigram = lmbench.build_model("ngram", order=3, smoothing="witten-bell").fit(tiny_corpus)
    return bigram, trigram


def test_mixture_is_the_weighted_sum_of_the_components(parts, tiny_corpus):
    mixture = InterpolatedLM.of(list(parts), [0.25, 0.75])
    ids = mixture.tokenizer.encode_split(tiny_corpus.split("test"))[:30]
    inputs = torch.from_numpy(np.concatenate(([mixture.tokenizer.boundary_id], ids[:-1])))[None]
    targets = torch.from_numpy(ids)[None]
    mixed, _ = mixture.token_logprobs(inputs, targets)
    a, _ = parts[0].token_logprobs(inputs, targets)
    b, _ = parts[1].token_logprobs(inputs, targets)
    assert torch.allclose(mixed.exp(), 0.25 * a.exp() + 0.75 * b.exp(), atol=1e-12)
    assert mixture.n_params() == parts[0].n_params() + parts[1].n_params()


def test_fit_estimates_weights_on_valid_and_beats_both_parts(parts, tiny_corpus):
    mixture = InterpolatedLM.of(list(parts)).fit(tiny_corpus)
    assert mixture.config()["weights"] and sum(mixture.config()["weights"]) == pytest.approx(1)
    valid = lmbench.evaluate(mixture, tiny_corpus, "valid").perplexity
    assert valid <= min(lmbench.evaluate(p, tiny_corpus, "valid").perplexity for p in parts) + 1e-9


def test_save_and_load_round_trip(parts, tiny_corpus, tmp_path):
    mixture = InterpolatedLM.of(list(parts), [0.4, 0.6])
    mixture.save(tmp_path / "mix.npz")
    loaded = lmbench.models.load_model(tmp_path / "mix.npz")
    before = lmbench.evaluate(mixture, tiny_corpus, "test").nll_nats
    after = lmbench.evaluate(loaded, tiny_corpus, "test").nll_nats
    assert after == pytest.approx(before, rel=1e-12)


def test_components_must_share_a_tokenizer(parts, tiny_corpus):
    chars = lmbench.build_model("ngram", order=2, tokenizer="char").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="share one tokenizer"):
        InterpolatedLM.of([parts[0], chars])


def test_components_must_select_rows_of_their_state(parts):
    assert isinstance(InterpolatedLM.of(list(parts)), SelectsStateRows)
    with pytest.raises(LmbenchError, match="unselecting does not"):
        InterpolatedLM.of([parts[0], Unselecting(parts[1])])


@pytest.mark.parametrize("options,message", [
    ({"components": ["a.npz"]}, "at least 2"),
    ({"components": ["a.npz", "b.npz"], "weights": [0.5]}, "weights has 1"),
    ({"components": ["a.npz", "b.npz"], "weights": [0.5, 0.6]}, "sum to 1"),
    ({"components": ["a.npz", {"order": 2}]}, "family"),
])
def test_bad_configs_are_rejected(options, message):
    with pytest.raises(LmbenchError, match=message):
        lmbench.build_model("interpolation", **options)


def test_missing_component_file_is_named(tiny_corpus, tmp_path):
    model = lmbench.build_model("interpolation", components=[str(tmp_path / "nope.npz"),
                                                             str(tmp_path / "b.npz")])
    with pytest.raises(LmbenchError, match="nope.npz"):
        model.fit(tiny_corpus)
