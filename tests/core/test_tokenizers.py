"""Tokenizers: the closed word vocabulary, lossless char/byte/BPE, and state round trips."""

from __future__ import annotations

import numpy as np
import pytest

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.tokenizers import build_tokenizer, tokenizer_from_json, tokenizer_to_json
from lmbench.data.corpora import Split, _lines_split

TEXT = "the cat sat .\nthe cat ran .\nthe dog sat !\nthe the cat . é ✓\n"


def test_word_vocabulary_drops_words_seen_at_most_three_times():
    split = _lines_split("train", TEXT)
    tokenizer = build_tokenizer("word").fit(split)
    assert tokenizer.tokens_ == ["<unk>", "</s>", "the"]  # "the" x5 stays; "." x3 does not
    ids = tokenizer.encode_split(split)
    assert ids[:5].tolist() == [2, 0, 0, 0, 1]  # the <unk> <unk> <unk> </s>
    assert (ids == tokenizer.boundary_id).sum() == len(split.sentences)


@pytest.mark.parametrize("name, options", [("char", {}), ("byte", {}),
                                           ("bpe", {"vocab_size": 300})])
def test_open_vocabulary_tokenizers_are_lossless_on_train_text(name, options):
    split = _lines_split("train", TEXT * 5)
    tokenizer = build_tokenizer(name, **options).fit(split)
    ids = tokenizer.encode_split(split)
    assert tokenizer.decode(ids) == split.text
    assert tokenizer.boundary_id not in ids.tolist()


def test_byte_and_bpe_are_lossless_on_unseen_text():
    split = _lines_split("train", TEXT * 5)
    unseen = "Zebras ∑ ünïcode\n\n  spaces\ttabs"
    for name, options in (("byte", {}), ("bpe", {"vocab_size": 300})):
        tokenizer = build_tokenizer(name, **options).fit(split)
        assert tokenizer.decode(tokenizer.encode(unseen)) == unseen
        assert tokenizer.is_lossless


def test_char_maps_unseen_characters_to_unk():
    tokenizer = build_tokenizer("char").fit(Split("train", "abc", ()))
    assert tokenizer.encode("abz") == [2, 3, tokenizer.unk_id]


@pytest.mark.parametrize("name, options", [("word", {"unk_max_count": 0}), ("char", {}),
                                           ("byte", {}), ("bpe", {"vocab_size": 300})])
def test_state_round_trips_through_json(name, options):
    split = _lines_split("train", TEXT * 5)
    tokenizer = build_tokenizer(name, **options).fit(split)
    same = tokenizer_from_json(tokenizer_to_json(tokenizer))
    np.testing.assert_array_equal(same.encode_split(split), tokenizer.encode_split(split))
    assert same.vocab_size == tokenizer.vocab_size
    strings = same.token_strings()
    assert len(set(strings)) == len(strings) and not any(any(c.isspace() for c in s)
                                                         for s in strings)


@pytest.mark.parametrize("name, options", [("word", {}), ("char", {}),
                                           ("bpe", {"vocab_size": 300})])
def test_is_fitted_says_whether_the_vocabulary_is_learned(name, options):
    tokenizer = build_tokenizer(name, **options)
    assert not tokenizer.is_fitted
    tokenizer.fit(_lines_split("train", TEXT))
    assert tokenizer.is_fitted
    assert tokenizer_from_json(tokenizer_to_json(tokenizer)).is_fitted
    assert build_tokenizer("byte").is_fitted  # a fixed vocabulary: nothing to learn


def test_misspelled_tokenizer_options_are_refused_with_a_did_you_mean():
    with pytest.raises(LmbenchError, match=r"unknown key 'unk_max_cont' \(did you mean "
                                           r"'unk_max_count'\?\)"):
        build_tokenizer("word", unk_max_cont=2)
    with pytest.raises(LmbenchError, match="'unk_max_count' must be int, got str"):
        build_tokenizer("word", unk_max_count="2")
    with pytest.raises(LmbenchError, match="unknown key 'x' \\(it takes no options\\)"):
        build_tokenizer("char", x=1)
    with pytest.raises(LmbenchError, match="unknown key 'vocab_sise'"):
        lmbench.build_model("gpt", tokenizer="bpe", tokenizer_options={"vocab_sise": 500})


@pytest.mark.parametrize("text, message", [
    ("{not json", "the tokenizer is not valid JSON"),
    ("[]", "needs 'name', 'config' and 'state'"),
    ('{"name": "char", "config": {}}', "needs 'name', 'config' and 'state'"),
    ('{"name": "chr", "config": {}, "state": {}}', "unknown tokenizer 'chr'"),
    ('{"name": "char", "config": {}, "state": {"tokens": 5}}', "damaged 'char' tokenizer state"),
    ('{"name": "word", "config": {}, "state": {"tokens": ["a", "a"]}}', "damaged 'word'"),
    ('{"name": "word", "config": {"unk_max_cont": 1}, "state": {}}', "unknown key"),
    ('{"name": "bpe", "config": {}, "state": {"hf_json": "{"}}', "damaged 'bpe'"),
])
def test_damaged_tokenizer_json_is_one_line_naming_the_file(text, message):
    with pytest.raises(LmbenchError) as error:
        tokenizer_from_json(text, "model.npz")
    assert str(error.value).startswith("model.npz: ") and message in str(error.value)
    assert "\n" not in str(error.value)
