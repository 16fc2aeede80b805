"""Corpora: the documented real splits, user corpora, and one-line errors for bad data."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.core.errors import LmbenchError


def test_brown_follows_the_documented_bengio_split(data_dir):
    corpus = lmbench.load_corpus("brown", data_dir)
    words = {s: sum(len(x) for x in corpus.split(s).sentences) for s in ("train", "valid", "test")}
    sentences = {s: len(corpus.split(s).sentences) for s in ("train", "valid", "test")}
    assert words == {"train": 800_001, "valid": 200_021, "test": 161_170}
    assert sentences == {"train": 35_523, "valid": 11_690, "test": 10_127}
    assert corpus.train.sentences[0][:3] == ("The", "Fulton", "County")  # case kept


def test_tinyshakespeare_is_split_like_nanogpt(data_dir):
    corpus = lmbench.load_corpus("tinyshakespeare", data_dir)
    text = (data_dir / "data/tinyshakespeare/input.txt").read_text()
    n = int(len(text) * 0.9)
    assert corpus.train.text == text[:n] and corpus.split("valid").text == text[n:]
    assert corpus.split("test").text == corpus.split("valid").text
    assert len(text) == 1_115_394


def test_treebank_and_wikitext(data_dir):
    treebank = lmbench.load_corpus("treebank", data_dir)
    sizes = [len(treebank.split(s).sentences) for s in ("train", "valid", "test")]
    assert sizes == [3131, 391, 392]
    words = [w for sentence in treebank.train.sentences for w in sentence]
    assert not any(w.startswith("*") and w.endswith("*") for w in words)
    wikitext = lmbench.load_corpus("wikitext2", data_dir)
    assert set(wikitext.splits) == {"valid", "test"}
    with pytest.raises(LmbenchError, match="has no 'train' split"):
        _ = wikitext.train


def test_user_directory_and_single_file(tmp_path):
    (tmp_path / "c").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "c" / f"{split}.txt").write_text(f"{split} text here .\nmore {split} .\n")
    corpus = lmbench.load_corpus(tmp_path / "c")
    assert corpus.split("valid").sentences[0] == ("valid", "text", "here", ".")
    lines = "".join(f"line {i} of text .\n" for i in range(20))
    (tmp_path / "one.txt").write_text(lines)
    single = lmbench.load_corpus(str(tmp_path / "one.txt"))
    assert [len(single.split(s).sentences) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert "".join(single.split(s).text for s in ("train", "valid", "test")) == lines


def test_bad_data_gives_one_line_errors(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"ok\n\xff\xfe bad\n" * 3)
    (tmp_path / "empty.txt").write_text("  \n")
    cases = [
        (tmp_path / "binary.txt", "not UTF-8 text (invalid byte at offset 3)"),
        (tmp_path / "empty.txt", "the file is empty"),
        (tmp_path / "missing" / "x.txt", "does not exist"),
        ("browm", "unknown corpus 'browm' (did you mean 'brown'?)"),
    ]
    for name, message in cases:
        with pytest.raises(LmbenchError) as error:
            lmbench.load_corpus(name)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(LmbenchError) as error:
        lmbench.load_corpus("tinyshakespeare", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "data") in message and "lmbench data fetch tinyshakespeare" in message


def test_domain_corpora_follow_their_documented_splits(data_dir):
    expected = {"state_union": ([14_662, 1_832, 1_834], [321_715, 36_487, 33_287]),
                "inaugural": ([4_197, 524, 526], [129_954, 10_816, 11_135]),
                "webtext": ([31_726, 3_964, 3_970], [303_873, 38_739, 38_039])}
    for name, (sentences, words) in expected.items():
        corpus = lmbench.load_corpus(name, data_dir)
        splits = [corpus.split(s) for s in ("train", "valid", "test")]
        assert [len(s.sentences) for s in splits] == sentences, name
        assert [sum(len(x) for x in s.sentences) for s in splits] == words, name
    state_union = lmbench.load_corpus("state_union", data_dir)
    assert state_union.train.sentences[0][:3] == ("PRESIDENT", "HARRY", "S.")
    assert "HARRY S. TRUMAN" in state_union.train.text and "HARRY" not in state_union.test.text


def test_brown_words_spell_text_as_the_brown_corpus_does():
    from lmbench.data.corpora import brown_sentences, brown_words

    assert brown_words('He said "Mr. J. Smith didn\'t pay $1,000 -- long-term."') == (
        "He", "said", "``", "Mr.", "J.", "Smith", "didn't", "pay", "$", "1,000", "--",
        "long-term", ".", "''")
    assert brown_sentences("The U.S. left. Why? (Applause.) Now\nnext line") == [
        ("The", "U.S.", "left", "."), ("Why", "?"), ("(", "Applause", ".", ")"), ("Now",),
        ("next", "line")]
