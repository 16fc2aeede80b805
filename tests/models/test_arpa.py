"""ARPA export and import: round trips, KenLM agreement on a real corpus, malformed files."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError, LmbenchWarning


def _sentence_scores(model, sentences):
    ids = model.tokenizer.encode_sentences(sentences)
    inputs = np.concatenate(([model.tokenizer.boundary_id], ids[:-1]))
    scores, _ = model.token_logprobs(torch.from_numpy(inputs)[None], torch.from_numpy(ids)[None])
    return scores[0].numpy()


@pytest.mark.parametrize("smoothing", ["modified-kneser-ney", "witten-bell", "mle", "add-k"])
def test_arpa_round_trip_keeps_every_score(tiny_corpus, tmp_path, smoothing):
    model = lmbench.build_model("ngram", order=3, smoothing=smoothing,
                                tokenizer_options={"unk_max_count": 0}).fit(tiny_corpus)
    model.save_arpa(tmp_path / "m.arpa")
    loaded = lmbench.load_arpa(tmp_path / "m.arpa")
    sentences = tiny_corpus.split("test").sentences
    np.testing.assert_allclose(_sentence_scores(loaded, sentences),
                               _sentence_scores(model, sentences), rtol=1e-7, atol=1e-7)
    assert loaded.n_grams() == model.n_grams()


def test_kenlm_reads_our_modified_kn_arpa_with_equal_scores(data_dir, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    corpus = lmbench.load_corpus("treebank", data_dir)
    model = lmbench.build_model("ngram", order=5).fit(corpus)
    path = tmp_path / "treebank5.arpa"
    model.save_arpa(path)
    reference = kenlm.Model(str(path))
    sentences = corpus.split("test").sentences
    ours = _sentence_scores(model, sentences) / math.log(10)
    theirs = np.array([score for s in sentences
                       for score, _, _ in reference.full_scores(" ".join(s), bos=True, eos=True)])
    assert len(theirs) == len(ours) == sum(len(s) + 1 for s in sentences)
    assert np.max(np.abs(ours - theirs)) < 1e-4


def _write(tmp_path, text):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    return path


GOOD = ("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t-0.3\n"
        "-0.5\ta\t-0.2\n-0.6\t</s>\n\n\\2-grams:\n-0.1\t<s> a\n-0.2\ta </s>\n\n\\end\\\n")


@pytest.mark.filterwarnings("ignore::lmbench.core.errors.LmbenchWarning")  # GOOD sums to 0.67
def test_a_small_hand_written_arpa_loads_and_scores(tmp_path):
    model = lmbench.load_arpa(_write(tmp_path, GOOD))
    scores = _sentence_scores(model, [("a",)]) / math.log(10)
    np.testing.assert_allclose(scores, [-0.1, -0.2])
    # an unseen bigram backs off: p(a | a) = b(a) p(a)
    scores = _sentence_scores(model, [("a", "a")]) / math.log(10)
    np.testing.assert_allclose(scores, [-0.1, -0.2 - 0.5, -0.2])


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("\\end\\\n", ""), "missing \\end\\"),
    (GOOD[: GOOD.index("\\2-grams")], "file ends before the \\2-grams: section"),
    (GOOD.replace("-0.1\t<s> a\n", ""), "declares 2 2-grams, the section has 1"),
    (GOOD.replace("-0.5\ta", "x.5\ta"), "not a number"),
    (GOOD.replace("<s> a\n", "b a\n"), "no entry for its context 'b'"),
    ("hello\n", "no \\data\\ header"),
])
def test_malformed_arpa_files_name_the_line(tmp_path, text, message):
    with pytest.raises(LmbenchError) as error:
        lmbench.load_arpa(_write(tmp_path, text))
    assert message in str(error.value) and "bad.arpa" in str(error.value)


def test_cli_evaluates_an_arpa_file(tiny_corpus, tmp_path, capsys):
    from lmbench.cli.main import main

    (tmp_path / "corpus").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "corpus" / f"{split}.txt").write_text(tiny_corpus.split(split).text)
    corpus = lmbench.load_corpus(tmp_path / "corpus")
    model = lmbench.build_model("ngram", order=3).fit(corpus)
    model.save_arpa(tmp_path / "m.arpa")
    assert main(["evaluate", str(tmp_path / "m.arpa"), "--corpus", str(tmp_path / "corpus")]) == 0
    expected = lmbench.evaluate(model, corpus, "test").perplexity
    assert f"perplexity {expected:.2f}" in capsys.readouterr().out


@pytest.mark.parametrize("text, line, message", [
    (GOOD.replace("-0.5\ta\t-0.2", "0.5\ta\t-0.2"), 8, "log10 p = 0.5 is not a log-probability"),
    (GOOD.replace("-0.5\ta\t-0.2", "inf\ta\t-0.2"), 8, "log10 p = inf is not"),
    (GOOD.replace("-0.5\ta\t-0.2", "-inf\ta\t-0.2"), 8, "log10 p = -inf is not"),
    (GOOD.replace("-0.5\ta\t-0.2", "nan\ta\t-0.2"), 8, "log10 p = nan is not"),
    (GOOD.replace("-0.5\ta\t-0.2", "-0.5\ta\tnan"), 8, "log10 backoff = nan is not finite"),
    (GOOD.replace("-0.2\ta </s>\n", "-0.3\t<s> a\n").replace("ngram 2=2", "ngram 2=2"), 13,
     "duplicate 2-gram '<s> a' (also at line 12, with different values)"),
    (GOOD.replace("-0.2\ta </s>\n", "-0.1\t<s> a\n"), 13,
     "duplicate 2-gram '<s> a' (also at line 12, with the same values)"),
    (GOOD.replace("-0.6\t</s>\n", "-0.7\ta\n"), 9,
     "duplicate 1-gram 'a' (also at line 8, with different values)"),
])
def test_impossible_arpa_values_name_the_line(tmp_path, text, line, message):
    with pytest.raises(LmbenchError) as error:
        lmbench.load_arpa(_write(tmp_path, text))
    assert f"bad.arpa:{line}: " in str(error.value) and message in str(error.value)


@pytest.mark.filterwarnings("ignore::lmbench.core.errors.LmbenchWarning")
def test_log10_zero_is_allowed(tmp_path):
    model = lmbench.load_arpa(_write(tmp_path, GOOD.replace("-1.0\t<unk>\t0", "-99\t<unk>\t-99")))
    assert model.tables_[0].log_prob[model.tokenizer.unk_id] == -np.inf


NORMALISED = ("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-99\t<unk>\t0\n-99\t<s>\t0\n"
              f"{math.log10(0.5)}\ta\t0\n{math.log10(0.5)}\t</s>\n\n\\2-grams:\n"
              f"{math.log10(0.5)}\t<s> a\n{math.log10(0.5)}\ta </s>\n\n\\end\\\n")


def test_distributions_that_do_not_sum_to_one_are_warned_about(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normalised file: no warning
        lmbench.load_arpa(_write(tmp_path, NORMALISED))
    # p(. | <s>) = 0.5 for 'a' + backoff 1 x (p(<unk>) + p(</s>)) = 0.5 + 0.5: fine; raising
    # the backoff of <s> to 10**0.3 gives 0.5 + 2 x 0.5 = 1.5
    with pytest.warns(LmbenchWarning) as caught:
        lmbench.load_arpa(_write(tmp_path, NORMALISED.replace("-99\t<s>\t0", "-99\t<s>\t0.3")))
    [warning] = caught
    message = str(warning.message)
    assert "bad.arpa" in message and "after '<s>'" in message and "\n" not in message
    with pytest.warns(LmbenchWarning, match="the unigram probabilities sum to 0.667"):
        lmbench.load_arpa(_write(tmp_path, GOOD))


@pytest.mark.parametrize("smoothing", ["modified-kneser-ney", "witten-bell", "mle", "add-k"])
def test_our_own_arpa_files_sum_to_one(tiny_corpus, tmp_path, smoothing):
    model = lmbench.build_model("ngram", order=4, smoothing=smoothing).fit(tiny_corpus)
    model.save_arpa(tmp_path / "m.arpa")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lmbench.load_arpa(tmp_path / "m.arpa")
