"""The n-gram family against a plain-Python reference, hand-computed values, and bad input."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.models.ngram import NGramLM

BOS = "<s>"


def _segments(model, corpus):
    """The training sentences as token-string lists with </s>, as the model counts them."""
    tokens = model.tokenizer.tokens_
    ids = model.tokenizer.encode_split(corpus.train)
    sentences, current = [], []
    for i in ids.tolist():
        current.append(tokens[i])
        if i == model.tokenizer.boundary_id:
            sentences.append(current)
            current = []
    return sentences


class ReferenceNGram:
    """Dictionary-based interpolated smoothing, written straight from Chen & Goodman 1998."""

    def __init__(self, sentences, vocab, order, smoothing, k=1.0):
        self.order, self.vocab, self.smoothing, self.k = order, vocab, smoothing, k
        self.raw = [Counter() for _ in range(order + 1)]
        for sentence in sentences:
            padded = [BOS, *sentence]
            for n in range(1, order + 1):
                for i in range(max(1, n - 1), len(padded)):
                    if i - n + 1 >= 0:
                        self.raw[n][tuple(padded[i - n + 1 : i + 1])] += 1
        kn = smoothing in ("kneser-ney", "modified-kneser-ney")
        self.counts = [Counter() for _ in range(order + 1)]
        for n in range(1, order + 1):
            if kn and n < order:
                for gram in self.raw[n + 1]:
                    self.counts[n][gram[1:]] += 1
                for gram, c in self.raw[n].items():
                    if gram[0] == BOS:
                        self.counts[n][gram] = c
            else:
                self.counts[n] = Counter(self.raw[n])
        self.discounts = {}
        for n in range(1, order + 1):
            coc = Counter(c for g, c in self.counts[n].items() if g != (BOS,))
            if not kn:
                continue
            y = coc[1] / (coc[1] + 2 * coc[2]) if coc[1] else 0.5
            if smoothing == "kneser-ney":
                self.discounts[n] = (y, y, y)
                continue
            if all(coc[j] for j in (1, 2, 3)):  # lmplz: n4 may be 0
                self.discounts[n] = tuple(j - (j + 1) * y * coc[j + 1] / coc[j] for j in (1, 2, 3))
            if not all(0 <= d <= j for j, d in enumerate(self.discounts.get(n, ()), start=1)) or (
                    n not in self.discounts):
                self.discounts[n] = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback
        self.children = [defaultdict(dict) for _ in range(order + 1)]
        for n in range(1, order + 1):
            for gram, c in self.counts[n].items():
                if gram != (BOS,):
                    self.children[n][gram[:-1]][gram[-1]] = c

    def prob(self, word, context):
        context = tuple(context[-(self.order - 1):]) if self.order > 1 else ()
        return self._prob(word, context, len(context) + 1)

    def _prob(self, word, context, n):
        V = len(self.vocab)
        if n == 0:
            return 1.0 / V
        lower = lambda: self._prob(word, context[1:], n - 1)  # noqa: E731
        if self.smoothing == "add-k" and n < self.order:
            return lower()
        children = self.children[n].get(context, {})
        total = sum(children.values())
        if total == 0:
            return lower()
        c = children.get(word, 0)
        if self.smoothing == "mle":
            return c / total
        if self.smoothing == "add-k":
            return (c + self.k) / (total + self.k * V)
        if self.smoothing == "witten-bell":
            distinct = len(children)
            return (c + distinct * lower()) / (total + distinct)
        d = self.discounts[n]
        discount = lambda x: d[min(x, 3) - 1] if x else 0.0  # noqa: E731
        mass = sum(discount(x) for x in children.values())
        return (c - discount(c)) / total + mass / total * lower()


SMOOTHINGS = ["mle", "add-k", "witten-bell", "kneser-ney", "modified-kneser-ney"]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_probabilities_match_the_reference(tiny_corpus, smoothing, order):
    model = lmbench.build_model("ngram", order=order, smoothing=smoothing, k=0.5,
                                tokenizer_options={"unk_max_count": 0}).fit(tiny_corpus)
    vocab = model.tokenizer.tokens_
    reference = ReferenceNGram(_segments(model, tiny_corpus), vocab, order, smoothing, k=0.5)
    test = [s + ("</s>",) for s in tiny_corpus.split("test").sentences]
    for sentence in test[:12]:
        ids = [model.tokenizer.index_.get(w, 0) for w in sentence]
        inputs = torch.tensor([[model.tokenizer.boundary_id, *ids[:-1]]])
        scores, _ = model.token_logprobs(inputs, torch.tensor([ids]))
        for t, word in enumerate(sentence):
            word = word if word in model.tokenizer.index_ else "<unk>"
            context = [BOS] + [w if w in model.tokenizer.index_ else "<unk>" for w in sentence[:t]]
            expected = reference.prob(word, context)
            got = math.exp(float(scores[0, t]))
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-300), (sentence, t)


def test_hand_computed_bigram_mle():
    corpus = lmbench.Corpus("hand", {"train": lmbench.Split("train", "a b\na a\n",
                                                              (("a", "b"), ("a", "a")))})
    model = lmbench.build_model("ngram", order=2, smoothing="mle",
                                tokenizer_options={"unk_max_count": 0}).fit(corpus)
    idx = model.tokenizer.index_
    logp = model.next_token_logprobs([idx["a"]])  # after "<s> a": a b, a a, a </s> -> 1/3 each
    assert math.exp(logp[idx["b"]]) == pytest.approx(1 / 3)
    assert math.exp(logp[idx["a"]]) == pytest.approx(1 / 3)
    assert math.exp(logp[idx["</s>"]]) == pytest.approx(1 / 3)
    assert math.exp(model.next_token_logprobs([])[idx["a"]]) == pytest.approx(1.0)  # <s> -> a


def test_vectorized_counts_match_a_python_count(tiny_corpus):
    model = lmbench.build_model("ngram", order=3, smoothing="mle",
                                tokenizer_options={"unk_max_count": 0}).fit(tiny_corpus)
    reference = ReferenceNGram(_segments(model, tiny_corpus), model.tokenizer.tokens_, 3, "mle")
    assert model.n_grams() == [model.tokenizer.vocab_size + 1,
                               len(reference.raw[2]), len(reference.raw[3])]


def test_modified_kn_discounts_follow_chen_goodman(tiny_corpus):
    model = lmbench.build_model("ngram", order=3, tokenizer_options={"unk_max_count": 0})
    model.fit(tiny_corpus)
    reference = ReferenceNGram(_segments(model, tiny_corpus), model.tokenizer.tokens_, 3,
                               "modified-kneser-ney")
    for n in (1, 2, 3):
        assert model.discounts_[str(n)] == pytest.approx(reference.discounts[n])


def test_interpolated_kneser_ney_matches_kenlm_on_real_text(data_dir):
    """KN-5 on Brown: the figure KenLM's lmplz gives on the same stream (about 146.7)."""
    corpus = lmbench.load_corpus("brown", data_dir)
    model = lmbench.build_model("ngram", order=5).fit(corpus)
    result = lmbench.evaluate(model, corpus, "test", lmbench.EvalConfig(progress=False))
    assert result.perplexity == pytest.approx(146.7, rel=0.01)
    assert 0.08 < result.unk_rate < 0.09


@pytest.mark.parametrize("options, message", [
    ({"order": 0}, "order must be an integer >= 1"),
    ({"smoothing": "kneser-nay"}, "did you mean 'kneser-ney'"),
    ({"ordr": 3}, "unknown key 'ordr' (did you mean 'order'?)"),
    ({"order": "3"}, "'order' must be int"),
    ({"k": 0}, "k must be > 0"),
])
def test_bad_options_raise_one_line_errors(options, message):
    with pytest.raises(LmbenchError, match=None) as error:
        lmbench.build_model("ngram", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_family_suggests_the_closest():
    with pytest.raises(LmbenchError, match="did you mean 'ngram'"):
        lmbench.build_model("ngrm")


def test_empty_training_text_is_refused():
    empty = lmbench.Corpus("empty", {"train": lmbench.Split("train", "", ())})
    with pytest.raises(LmbenchError, match="no words"):
        lmbench.build_model("ngram").fit(empty)
    with pytest.raises(LmbenchError, match="empty token stream"):
        NGramLM(order=2, tokenizer="byte").fit_ids(np.array([], dtype=np.int64))


def test_unfitted_model_says_so():
    with pytest.raises(LmbenchError, match="not fitted"):
        lmbench.build_model("ngram").token_logprobs(torch.zeros(1, 2, dtype=torch.long),
                                                    torch.zeros(1, 2, dtype=torch.long))
