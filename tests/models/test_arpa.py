"""ARPA export and import: round trips, KenLM agreement on a real corpus, malformed files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError


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
