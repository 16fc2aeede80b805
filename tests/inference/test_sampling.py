"""Logits processors, samplers, generate, beam search and best-of-N.

Distribution tests use mock models with fixed logits (nanochat's ``MockModel`` idea), so they
test the sampler and not a model; equivalence tests use a tiny fitted n-gram model.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Capabilities, LanguageModel, SelectsStateRows
from lmbench.core.tokenizers import ByteTokenizer
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.inference.decoding import (
    _best_first,
    beam_search,
    beam_search_batch,
    beam_search_sequences,
    best_of_n,
    best_of_n_batch,
    continuation_logprobs,
    judge_perplexity,
    mean_logprob,
    sample_sequences,
    sequence_logprob,
    text_scorer,
)
from lmbench.inference.sampling import (
    BadWords,
    MinP,
    NoRepeatNGram,
    RepetitionPenalty,
    Sampler,
    SamplingConfig,
    Temperature,
    TopK,
    TopP,
    bad_words_ids,
    build_sampler,
    generate,
    sample,
    sample_batch,
)

FIXED = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=torch.float64)  # V = 6


class MockModel(LanguageModel):
    """Next-token logits that depend only on the last ``window`` ids read (all of them when
    ``window`` is None), or are ``fixed``. The state is every id read so far; a call longer than
    ``max_window`` raises, as a Transformer's would."""

    name = "mock"

    def __init__(self, vocab_size=6, fixed=None, window=None, max_window=None):
        self.fixed, self.window = fixed, window
        self.tokenizer = SimpleNamespace(boundary_id=0, vocab_size=vocab_size,
                                         decode=lambda ids: " ".join(map(str, ids)))
        self.capabilities = Capabilities(max_context=window, max_window=max_window)
        self.fed: list[int] = []  # T of every call

    def _scores(self, context: tuple) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed
        seed = hash(context[-self.window:] if self.window else context) % 2**31
        generator = torch.Generator().manual_seed(seed)
        return 2 * torch.randn(self.tokenizer.vocab_size, generator=generator, dtype=torch.float64)

    def logits(self, input_ids, state=None):
        B, T = input_ids.shape
        if self.capabilities.max_window and T > self.capabilities.max_window:
            raise LmbenchError("call longer than max_window")
        self.fed.append(T)
        histories = [(state[b] if state else []) + row for b, row in enumerate(input_ids.tolist())]
        out = torch.stack([torch.stack([self._scores(tuple(h[: len(h) - T + t + 1]))
                                        for t in range(T)]) for h in histories])  # (B, T, V)
        return out, histories

    def token_logprobs(self, input_ids, target_ids, state=None):
        logits, state = self.logits(input_ids, state)
        logprobs = torch.log_softmax(logits, -1)
        picked = logprobs.gather(-1, target_ids.clamp(min=0)[..., None])[..., 0]
        return torch.where(target_ids >= 0, picked, 0.0), state

    def fit(self, corpus, **options):
        return self

    def n_params(self):
        return 0

    def config(self):
        return {}

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


@pytest.fixture(scope="module")
def ngram(tiny_corpus):
    return lmbench.build_model("ngram", order=3, tokenizer="char").fit(tiny_corpus)


def _prompt(model):
    return model.tokenizer.encode("the c")


def _draws(sampler, logits, n, seed=0):
    """n independent draws from one (V,) distribution, in one batched sampler call."""
    ids = torch.zeros((n, 1), dtype=torch.long)
    return sampler(ids, logits.expand(n, -1), torch.Generator().manual_seed(seed))


def _chi_square(draws, logits):
    observed = torch.bincount(draws, minlength=len(logits)).double()
    expected = torch.softmax(logits.double(), -1) * len(draws)
    return float(((observed - expected) ** 2 / expected).sum())


def _critical_value(df, alpha=1e-3):
    try:
        from scipy.stats import chi2
    except ImportError:  # the 0.999 quantiles of chi-square, from tables
        return {5: 20.515}[df]
    return float(chi2.ppf(1 - alpha, df))


# ---------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("sampler", [
    Sampler(), build_sampler(SamplingConfig(temperature=1.0, top_p=1.0)),
    Sampler((Temperature(1.0), TopP(1.0), MinP(0.0))),
], ids=["bare", "config", "identity-processors"])
def test_temperature_one_and_top_p_one_sample_the_model_distribution(sampler):
    draws = _draws(sampler, FIXED, 40_000)
    assert _chi_square(draws, FIXED) < _critical_value(df=5)


def test_the_chi_square_check_detects_a_changed_distribution():
    draws = _draws(Sampler((Temperature(1.3),)), FIXED, 40_000)
    assert _chi_square(draws, FIXED) > 10 * _critical_value(df=5)


def test_generate_samples_the_model_distribution():
    model = MockModel(fixed=FIXED)
    ids = generate(model, [], 3000, seed=1)
    assert _chi_square(torch.tensor(ids), FIXED) < _critical_value(df=5)


def test_low_temperature_approaches_greedy():
    shares = [float((_draws(Sampler((Temperature(t),)), FIXED, 5000) == 0).double().mean())
              for t in (1.0, 0.5, 0.2, 0.02)]
    assert shares == sorted(shares) and shares[-1] == 1.0


def test_top_k_one_is_greedy_on_random_logits():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros((64, 3), dtype=torch.long)
    drawn = Sampler((TopK(1),))(ids, logits, torch.Generator().manual_seed(1))
    assert torch.equal(drawn, logits.argmax(-1))
    assert torch.equal(Sampler(greedy=True)(ids, logits), logits.argmax(-1))


def test_top_k_one_generation_equals_greedy_generation(ngram):
    greedy = generate(ngram, _prompt(ngram), 30, sampler=SamplingConfig(temperature=0))
    for seed in range(3):
        assert generate(ngram, _prompt(ngram), 30, seed=seed, sampler=Sampler((TopK(1),))) == greedy


# ------------------------------------------------------------------------------- processors

PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64)
IDS = torch.tensor([[1, 2, 3, 1]])
LOG_PROBS = PROBS.log()


def _kept(processor, logits=LOG_PROBS, ids=IDS):
    return torch.isfinite(processor(ids, logits))[0].nonzero().flatten().tolist()


@pytest.mark.parametrize("processor, kept", [
    (TopK(2), [0, 1]), (TopK(9), [0, 1, 2, 3]), (TopK(1, min_tokens_to_keep=3), [0, 1, 2]),
    (TopP(0.75), [0, 1]), (TopP(0.85), [0, 1, 2]), (TopP(0.4), [0]),
    (TopP(0.1, min_tokens_to_keep=3), [0, 1, 2]), (TopP(1.0), [0, 1, 2, 3]),
    (MinP(0.2), [0, 1, 2]), (MinP(0.9), [0]), (MinP(0.9, min_tokens_to_keep=2), [0, 1]),
    (NoRepeatNGram(2), [0, 1, 3]), (NoRepeatNGram(1), [0]), (NoRepeatNGram(5), [0, 1, 2, 3]),
])
def test_filters_keep_the_documented_tokens(processor, kept):
    assert _kept(processor) == kept


def test_ties_in_top_k_go_to_the_lower_id():
    assert _kept(TopK(2), torch.tensor([[1.0, 3.0, 1.0, 1.0]])) == [0, 1]


def test_temperature_and_repetition_penalty_values():
    logits = torch.tensor([[2.0, -1.0, 0.5, 4.0]])
    assert torch.equal(Temperature(2.0)(IDS, logits), logits / 2)
    penalised = RepetitionPenalty(2.0)(torch.tensor([[0, 1, 1]]), logits)
    assert torch.equal(penalised, torch.tensor([[1.0, -2.0, 0.5, 4.0]]))


ALL_PROCESSORS = [Temperature(0.7), TopK(2), TopP(0.8), MinP(0.1), RepetitionPenalty(1.3),
                  NoRepeatNGram(2), TopP(0.5, min_tokens_to_keep=2),
                  MinP(0.5, min_tokens_to_keep=3), BadWords(((4,), (1, 2), (3, 3, 6)))]


@pytest.mark.parametrize("processor", ALL_PROCESSORS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_processors_never_modify_their_inputs(processor, dtype):
    logits = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    ids = torch.tensor([[1, 2, 1, 2], [3, 3, 3, 3], [0, 5, 7, 0]])
    logits_before, ids_before = logits.clone(), ids.clone()
    out = processor(ids, logits)
    assert torch.equal(logits, logits_before) and torch.equal(ids, ids_before)
    assert out.shape == logits.shape and out.dtype == dtype


def test_build_sampler_fixes_the_order():
    config = SamplingConfig(temperature=0.5, top_k=3, top_p=0.9, min_p=0.05,
                            repetition_penalty=1.2, no_repeat_ngram_size=3)
    kinds = [type(p) for p in build_sampler(config).processors]
    assert kinds == [RepetitionPenalty, NoRepeatNGram, Temperature, TopK, TopP, MinP]
    assert build_sampler(SamplingConfig()) == Sampler()
    greedy = build_sampler(SamplingConfig(temperature=0, top_k=5, repetition_penalty=1.5))
    assert greedy.greedy and [type(p) for p in greedy.processors] == [RepetitionPenalty]


@pytest.mark.parametrize("make, words", [
    (lambda: TopP(0), "top_p"), (lambda: TopP(1.5), "top_p"), (lambda: TopP(-0.1), "top_p"),
    (lambda: TopK(0), "top_k"), (lambda: TopK(-2), "top_k"), (lambda: TopK(2.5), "top_k"),
    (lambda: Temperature(0), "greedy"), (lambda: Temperature(-1), "Temperature"),
    (lambda: SamplingConfig(temperature=-0.5), "temperature"),
    (lambda: SamplingConfig(top_p=0.0), "top_p"), (lambda: SamplingConfig(top_k=0), "top_k"),
    (lambda: SamplingConfig(min_p=2.0), "min_p"),
    (lambda: SamplingConfig(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (lambda: SamplingConfig(min_tokens_to_keep=0), "min_tokens_to_keep"),
    (lambda: TopK(3, min_tokens_to_keep=0), "min_tokens_to_keep"),
    (lambda: RepetitionPenalty(0), "repetition_penalty"),
    (lambda: NoRepeatNGram(0), "no_repeat_ngram_size"),
    (lambda: generate(MockModel(fixed=FIXED), [], -1), "max_new_tokens"),
    (lambda: beam_search(MockModel(fixed=FIXED), [], 3, 0), "beam_width"),
    (lambda: best_of_n(MockModel(fixed=FIXED), [], 0, max_new_tokens=3), "n >= 1"),
])
def test_validation_errors_are_one_line(make, words):
    with pytest.raises(LmbenchError, match=words) as error:
        make()
    assert "\n" not in str(error.value)


def test_temperature_zero_is_greedy_not_an_error():
    assert SamplingConfig(temperature=0)
    assert build_sampler(SamplingConfig(temperature=0)).greedy


def test_filtering_out_every_token_is_an_error():
    with pytest.raises(LmbenchError, match="filtered out"):
        generate(MockModel(fixed=FIXED), [], 10, sampler=Sampler((NoRepeatNGram(1),)))


# ------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("config", [None, SamplingConfig(temperature=0.8, top_k=10, top_p=0.95),
                                    SamplingConfig(repetition_penalty=1.3, no_repeat_ngram_size=4),
                                    SamplingConfig(temperature=0)])
def test_generation_with_the_cache_equals_generation_without_it(ngram, config):
    for seed in range(2):
        cached = generate(ngram, _prompt(ngram), 40, seed=seed, sampler=config)
        assert cached == generate(ngram, _prompt(ngram), 40, seed=seed, sampler=config,
                                  use_cache=False)


def test_a_windowed_model_is_cropped_to_its_window_and_cache_equals_no_cache():
    model = MockModel(vocab_size=9, window=4, max_window=4)
    prompt = [3, 1, 4, 1, 5, 2, 6]  # longer than the window, boundary included
    cached = generate(model, prompt, 25, seed=2)
    assert model.fed[0] == 4 and set(model.fed[1:]) == {1}  # one prefill call, then one per token
    model.fed.clear()
    assert generate(model, prompt, 25, seed=2, use_cache=False) == cached
    assert len(model.fed) == 25 and max(model.fed) == 4


def test_stop_ids_end_generation():
    ids = generate(MockModel(fixed=FIXED), [], 50, sampler=SamplingConfig(temperature=0),
                   stop_ids=[0])
    assert ids == [0]


def test_sample_logprobs_are_the_models_scores(ngram):
    drawn = sample(ngram, _prompt(ngram), 20, seed=4, sampler=SamplingConfig(top_k=5))
    assert drawn.logprobs == pytest.approx(continuation_logprobs(ngram, _prompt(ngram), drawn.ids),
                                           abs=1e-9)


# ------------------------------------------------------------------------------ beam search


def test_beam_width_one_equals_greedy(ngram):
    greedy = generate(ngram, _prompt(ngram), 30, sampler=SamplingConfig(temperature=0))
    found = beam_search(ngram, _prompt(ngram), 30, beam_width=1)
    assert found.ids == greedy
    assert found.text == ngram.tokenizer.decode(greedy)
    assert found.logprobs == pytest.approx(continuation_logprobs(ngram, _prompt(ngram), greedy),
                                           abs=1e-9)


def test_beam_search_with_the_cache_equals_without_it(ngram):
    with_cache = beam_search(ngram, _prompt(ngram), 15, beam_width=3)
    without = beam_search(ngram, _prompt(ngram), 15, beam_width=3, use_cache=False)
    assert with_cache == without


def test_a_wider_beam_escapes_the_greedy_trap():
    # Step 1 favours token 1 (0.6 vs 0.4), but after 1 the mass is split and after 2 it is not:
    # greedy ends with p = 0.6 * 0.5 = 0.3, width 2 finds 2 -> 3 with p = 0.4 * 0.97.
    class Trap(MockModel):
        def _scores(self, context):
            probs = {0: [0.0, 0.6, 0.4, 0.0, 0.0], 1: [0.0, 0.0, 0.0, 0.5, 0.5],
                     2: [0.0, 0.0, 0.0, 0.97, 0.03]}.get(context[-1], [0.2] * 5)
            return torch.tensor(probs, dtype=torch.float64).clamp(min=1e-12).log()

    model = Trap(vocab_size=5)
    greedy = beam_search(model, [], 2, beam_width=1, length_penalty=0.0)
    wide = beam_search(model, [], 2, beam_width=2, length_penalty=0.0)
    assert greedy.ids == [1, 3] and wide.ids == [2, 3]
    assert greedy.score == pytest.approx(math.log(0.3))
    assert wide.score == pytest.approx(math.log(0.4 * 0.97))


# --------------------------------------------------------------------------------- best-of-N


def test_best_of_n_by_log_probability_returns_the_most_likely_sample(ngram):
    prompt, n = _prompt(ngram), 6
    samples = [sample(ngram, prompt, 15, seed=3 + i) for i in range(n)]
    totals = [sum(continuation_logprobs(ngram, prompt, s.ids)) for s in samples]
    best = best_of_n(ngram, prompt, n, sequence_logprob, max_new_tokens=15, seed=3)
    assert best.ids == samples[totals.index(max(totals))].ids
    assert best.score == pytest.approx(max(totals), abs=1e-9)


def test_best_of_n_with_other_scorers(ngram):
    prompt = _prompt(ngram)
    by_mean = best_of_n(ngram, prompt, 4, mean_logprob, max_new_tokens=10, seed=0)
    by_judge = best_of_n(ngram, prompt, 4, judge_perplexity(ngram), max_new_tokens=10, seed=0)
    assert by_judge.ids == by_mean.ids  # the model judging itself ranks by its mean log-prob
    by_text = best_of_n(ngram, prompt, 4, text_scorer(lambda text: text.count(" ")),
                        max_new_tokens=10, seed=0)
    counts = [ngram.tokenizer.decode(generate(ngram, prompt, 10, seed=i)).count(" ")
              for i in range(4)]
    assert by_text.text.count(" ") == max(counts) == by_text.score


def test_a_judge_with_another_vocabulary_is_an_error(ngram):
    judge = MockModel(vocab_size=3, fixed=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(LmbenchError, match="share the tokenizer"):
        best_of_n(ngram, _prompt(ngram), 2, judge_perplexity(judge), max_new_tokens=5)


# -------------------------------------------------------------------------- batched decoding


class SelectingMock(MockModel, SelectsStateRows):
    """``MockModel`` whose state rows can be selected, so beam search batches its beams."""

    def select_state(self, state, rows):
        return None if state is None else [list(state[r]) for r in rows.tolist()]


def _equal_prompts(model):
    prompts = [model.tokenizer.encode(text) for text in ("the c", "a cat", "sat o")]
    assert len({len(p) for p in prompts}) == 1
    return prompts


@pytest.mark.parametrize("processor", ALL_PROCESSORS, ids=repr)
def test_processors_act_row_by_row(processor):
    logits = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)).double()
    ids = torch.tensor([[1, 2, 1, 2], [3, 3, 3, 3], [0, 5, 7, 0]])
    rows = [processor(ids[b : b + 1], logits[b : b + 1]) for b in range(3)]
    assert torch.equal(processor(ids, logits), torch.cat(rows))


@pytest.mark.parametrize("config", [None, SamplingConfig(temperature=0.8, top_k=10, top_p=0.95),
                                    SamplingConfig(repetition_penalty=1.3, no_repeat_ngram_size=4),
                                    SamplingConfig(min_p=0.05), SamplingConfig(temperature=0)])
def test_batched_sampling_with_seeds_per_row_equals_one_prompt_at_a_time(ngram, config):
    prompts, seeds = _equal_prompts(ngram), [3, 1000, 3]
    batched = sample_batch(ngram, prompts, 30, sampler=config, seeds=seeds)
    alone = [sample(ngram, p, 30, sampler=config, seed=s) for p, s in zip(prompts, seeds)]
    assert batched == alone  # ids and logprobs, exactly
    uncached = sample_batch(ngram, prompts, 30, sampler=config, seeds=seeds, use_cache=False)
    assert uncached == alone


def test_batched_sampling_with_stop_ids_stops_each_row_on_its_own(ngram):
    prompts, seeds = _equal_prompts(ngram), [0, 1, 2]
    stop = ngram.tokenizer.encode(" ")
    batched = sample_batch(ngram, prompts, 40, seeds=seeds, stop_ids=stop)
    assert batched == [sample(ngram, p, 40, seed=s, stop_ids=stop)
                       for p, s in zip(prompts, seeds)]
    assert any(row.ids[-1] in stop and len(row.ids) < 40 for row in batched)


def test_a_batch_needs_prompts_of_one_length_and_a_seed_each(ngram):
    prompts = [ngram.tokenizer.encode("the c"), ngram.tokenizer.encode("a")]
    for decode in (lambda: sample_batch(ngram, prompts, 5, seeds=[0, 1]),
                   lambda: beam_search_batch(ngram, prompts, 5, 2),
                   lambda: best_of_n_batch(ngram, prompts, 2, max_new_tokens=5, seeds=[0, 1])):
        with pytest.raises(LmbenchError, match="prompts of one batch must have one length"):
            decode()
    with pytest.raises(LmbenchError, match="seeds"):
        sample_batch(ngram, _equal_prompts(ngram), 5, seeds=[0])
    assert sample_batch(ngram, [], 5, seeds=[]) == []


def test_best_of_n_batch_equals_best_of_n_per_prompt(ngram):
    prompts, seeds = _equal_prompts(ngram), [0, 1000, 2000]
    batched = best_of_n_batch(ngram, prompts, 3, mean_logprob, max_new_tokens=12,
                              sampler=SamplingConfig(top_p=0.9), seeds=seeds)
    assert batched == [best_of_n(ngram, p, 3, mean_logprob, max_new_tokens=12,
                                 sampler=SamplingConfig(top_p=0.9), seed=s)
                       for p, s in zip(prompts, seeds)]


@pytest.mark.parametrize("stop_text", ["", " "])
def test_beam_search_batch_equals_beam_search_per_prompt(ngram, stop_text):
    prompts, stop = _equal_prompts(ngram), ngram.tokenizer.encode(stop_text)
    batched = beam_search_batch(ngram, prompts, 12, 3, stop_ids=stop,
                                processors=(NoRepeatNGram(3),))
    assert batched == [beam_search(ngram, p, 12, 3, stop_ids=stop,
                                   processors=(NoRepeatNGram(3),)) for p in prompts]


@pytest.mark.parametrize("stop_ids", [(), (2,)])
def test_batched_beams_equal_beams_extended_one_at_a_time(stop_ids):
    prompts = [[1, 4], [3, 3], [5, 1]]
    one_at_a_time, batched = MockModel(vocab_size=7), SelectingMock(vocab_size=7)
    kwargs = dict(stop_ids=stop_ids, processors=(RepetitionPenalty(1.5),), length_penalty=0.5)
    expected = beam_search_batch(one_at_a_time, prompts, 6, 3, **kwargs)
    assert beam_search_batch(batched, prompts, 6, 3, **kwargs) == expected
    assert len(batched.fed) <= 6 < len(one_at_a_time.fed)  # a call per step, not per beam
    assert [beam_search(batched, p, 6, 3, **kwargs) for p in prompts] == expected


def test_beam_ranking_is_a_stable_descending_sort():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):  # many ties and -inf, as filtered extensions give
        scores = torch.randint(-3, 3, (30,), generator=generator).double()
        scores[torch.rand(30, generator=generator) < 0.3] = float("-inf")
        for k in (1, 4, 10, 40):
            expected = torch.sort(scores, descending=True, stable=True).indices[:k].tolist()
            assert _best_first(scores, k) == expected


# ------------------------------------------------------- bans, stop strings, several sequences


@pytest.fixture(scope="module")
def rare_words():
    """A word model whose greedy continuation of "the" is ``<unk>``: most nouns are seen once."""
    text = "".join(f"the w{i} sat on a mat .\n" for i in range(40))
    text += ("the cat sat on a rug .\n"
             "the dog ran to a rug .\n") * 5
    split = _lines_split("train", text)
    corpus = Corpus("rare", {"train": split, "valid": split, "test": split})
    return lmbench.build_model("ngram", order=3, tokenizer="word").fit(corpus)


def test_bad_words_ban_single_ids_always_and_sequences_after_their_prefix():
    logits = torch.zeros(3, 8)
    ids = torch.tensor([[5, 1, 2], [0, 3, 3], [2, 1, 7]])
    sequences = [[4], [1, 2, 6], [3, 5]]
    out = BadWords(sequences)(ids, logits)
    banned = [torch.isneginf(row).nonzero().flatten().tolist() for row in out]
    assert banned == [[4, 6], [4, 5], [4]]  # row 2 ends 1, 7: not the prefix 1, 2
    assert sequences == [[4], [1, 2, 6], [3, 5]]  # the input list is copied, not kept
    assert BadWords(sequences).sequences == ((4,), (1, 2, 6), (3, 5))


@pytest.mark.parametrize("sequences, words", [
    ([[]], "empty sequence"), ([[1, -2]], "ids >= 0"), (["ab"], "ids >= 0"),
    ("ab", "sequence of id sequences"), ([[1.5]], "ids >= 0"),
])
def test_bad_words_validation_is_one_line(sequences, words):
    for make in (lambda: BadWords(sequences), lambda: SamplingConfig(bad_words_ids=sequences)):
        with pytest.raises(LmbenchError, match=words) as error:
            make()
        assert "\n" not in str(error.value)


def test_bans_come_first_and_apply_to_greedy_decoding():
    config = SamplingConfig(temperature=0, repetition_penalty=1.2, bad_words_ids=[[3]])
    assert [type(p) for p in build_sampler(config).processors] == [BadWords, RepetitionPenalty]
    assert config.bad_words_ids == ((3,),)


def test_banning_unk_keeps_it_out_of_greedy_and_beam_output(rare_words):
    prompt = rare_words.tokenizer.encode("the")[:-1]  # without the closing </s>
    unk = rare_words.tokenizer.unk_id
    greedy = generate(rare_words, prompt, 12, sampler=SamplingConfig(temperature=0))
    assert unk in greedy  # the model's favourite word after "the"
    ban = bad_words_ids(rare_words.tokenizer, ban_unk=True)
    assert ban == ((unk,),)
    banned = generate(rare_words, prompt, 12, sampler=SamplingConfig(temperature=0,
                                                                    bad_words_ids=ban))
    assert len(banned) == 12 and unk not in banned
    beams = beam_search(rare_words, prompt, 12, 3, processors=(BadWords(ban),))
    assert unk not in beams.ids and "<unk>" not in beams.text
    for seed in range(5):
        drawn = generate(rare_words, prompt, 20, seed=seed,
                         sampler=SamplingConfig(bad_words_ids=ban))
        assert unk not in drawn


def test_a_banned_sequence_never_appears_but_its_parts_do():
    model = MockModel(fixed=FIXED)  # argmax is always id 0
    greedy = SamplingConfig(temperature=0, bad_words_ids=[[0, 0]])
    ids = generate(model, [2], 10, sampler=greedy)
    assert ids == [0, 1] * 5  # after a 0, the 0 that would complete (0, 0) is banned
    three = generate(model, [2], 9, sampler=SamplingConfig(temperature=0,
                                                           bad_words_ids=[[0, 0, 0]]))
    assert three == [0, 0, 1] * 3


def test_bad_words_ids_from_words(rare_words):
    tokenizer = rare_words.tokenizer
    assert bad_words_ids(tokenizer, ["sat", "a mat", "</s>"]) == (
        tuple(tokenizer.encode("sat")[:-1]), tuple(tokenizer.encode("a mat")[:-1]),
        (tokenizer.boundary_id,))
    assert len(bad_words_ids(tokenizer, ["a mat"])[0]) == 2
    with pytest.raises(LmbenchError, match="not in the model's vocabulary"):
        bad_words_ids(tokenizer, ["zebra"])
    with pytest.raises(LmbenchError, match="no <unk>"):
        bad_words_ids(ByteTokenizer(), ban_unk=True)


def test_stop_strings_end_generation_and_cut_the_text(ngram):
    prompt = _prompt(ngram)
    config = SamplingConfig(temperature=0)
    free = sample(ngram, prompt, 60, sampler=config)
    assert " " in free.text.strip()
    stopped = sample(ngram, prompt, 60, sampler=config, stop_strings=[" "])
    assert len(stopped.ids) < 60  # stopped early
    assert stopped.ids == free.ids[: len(stopped.ids)]
    assert stopped.text == free.text[: free.text.index(" ")] and " " not in stopped.text
    assert " " in ngram.tokenizer.decode(stopped.ids)  # the last id completed the stop string
    assert " " not in ngram.tokenizer.decode(stopped.ids[:-1])
    assert generate(ngram, prompt, 60, sampler=config, stop_strings=[" "]) == stopped.ids
    two = sample(ngram, prompt, 60, sampler=config, stop_strings=["zzz", free.text[:3]])
    assert two.text == "" and len(two.ids) <= 3
    beam = beam_search(ngram, prompt, 60, 3, stop_strings=[" "])
    assert " " not in beam.text and len(beam.ids) < 60
    best = best_of_n(ngram, prompt, 3, max_new_tokens=60, stop_strings=[" "])
    assert " " not in best.text and len(best.ids) < 60


@pytest.mark.parametrize("stop_strings, words", [("ab", "sequence of strings"),
                                                  ([""], "non-empty strings")])
def test_bad_stop_strings_are_one_line_errors(ngram, stop_strings, words):
    with pytest.raises(LmbenchError, match=words):
        generate(ngram, _prompt(ngram), 5, stop_strings=stop_strings)


def test_num_return_sequences_draws_seeds_seed_to_seed_plus_n(ngram):
    prompt, config = _prompt(ngram), SamplingConfig(top_p=0.95)
    drawn = sample_sequences(ngram, prompt, 4, max_new_tokens=30, sampler=config, seed=7)
    assert [c.ids for c in drawn] == [generate(ngram, prompt, 30, sampler=config, seed=7 + i)
                                      for i in range(4)]
    assert len({c.text for c in drawn}) == 4  # distinct seeds, distinct samples
    assert sample_sequences(ngram, prompt, 4, max_new_tokens=30, sampler=config,
                            seed=7) == drawn  # reproducible
    assert [c.score for c in drawn] == pytest.approx([sum(c.logprobs) for c in drawn])
    with pytest.raises(LmbenchError, match="num_return_sequences"):
        sample_sequences(ngram, prompt, 0, max_new_tokens=5)


def test_num_return_sequences_of_a_beam_search_are_its_best_beams(ngram):
    prompt = _prompt(ngram)
    top = beam_search_sequences(ngram, prompt, 20, 5, 3)
    assert len(top) == 3 and top[0] == beam_search(ngram, prompt, 20, 5)
    assert len({tuple(c.ids) for c in top}) == 3
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)
    with pytest.raises(LmbenchError, match="num_return_sequences"):
        beam_search_sequences(ngram, prompt, 20, 2, 3)


@pytest.mark.parametrize("config", [None, SamplingConfig(temperature=0.8, top_k=10)])
def test_rows_per_prompt_reads_each_prompt_once_and_equals_repeated_prompts(ngram, config):
    prompts, seeds = _equal_prompts(ngram), [3, 4, 1000, 1001, 7, 8]
    rows = sample_batch(ngram, prompts, 20, sampler=config, seeds=seeds, rows_per_prompt=2)
    repeated = [p for p in prompts for _ in range(2)]
    assert rows == sample_batch(ngram, repeated, 20, sampler=config, seeds=seeds)
    assert rows == sample_batch(ngram, prompts, 20, sampler=config, seeds=seeds,
                                rows_per_prompt=2, use_cache=False)
    if config is not None:
        assert rows[0] != rows[1]  # two samples of one prompt, drawn with their own seeds
    with pytest.raises(LmbenchError, match="per prompt and row: 3 seeds for 3 prompts x 2"):
        sample_batch(ngram, prompts, 5, seeds=[0, 1, 2], rows_per_prompt=2)
    with pytest.raises(LmbenchError, match="rows_per_prompt must be >= 1, got 0"):
        sample_batch(ngram, prompts, 5, seeds=[], rows_per_prompt=0)
