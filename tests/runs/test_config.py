"""TOML run files: unknown keys and wrong types are refused with the key named."""

from __future__ import annotations

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.runs.config import load_config, parse_config

BASE = {"corpus": "brown", "models": [{"family": "ngram", "order": 3}]}


def test_a_valid_file_resolves_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('corpus = "brown"\nsplits = ["test"]\n[eval]\nblock_len = 64\n'
                    '[[models]]\nlabel = "kn3"\nfamily = "ngram"\norder = 3\n')
    config = load_config(path)
    assert config.splits == ("test",) and config.eval.block_len == 64
    assert config.models[0].label == "kn3" and config.models[0].options == {"order": 3}


@pytest.mark.parametrize("change, message", [
    ({"corpuss": "x"}, "unknown key 'corpuss' (did you mean 'corpus'?)"),
    ({"seed": "1"}, "'seed' must be int"),
    ({"eval": {"block_lenn": 3}}, "[eval]: unknown key 'block_lenn'"),
    ({"eval": {"block_len": 0}}, "eval.block_len must be >= 1"),
    ({"models": [{"family": "ngram", "ordr": 3}]}, "unknown key 'ordr' (did you mean 'order'?)"),
    ({"models": [{"family": "ngram", "order": 2.5}]}, "'order' must be int, got float"),
    ({"models": [{"family": "gpt9"}]}, "unknown model 'gpt9'"),
    ({"models": [{"order": 3}]}, "missing key 'family'"),
    ({"models": []}, "needs at least one [[models]] table"),
    ({"splits": []}, "splits must name at least one of train/valid/test"),
    ({"models": [{"family": "ngram", "label": "a"}, {"family": "ngram", "label": "a"}]},
     "label 'a' is used twice"),
])
def test_bad_configs_name_the_key(change, message):
    with pytest.raises(LmbenchError) as error:
        parse_config({**BASE, **change}, "run.toml")
    assert message in str(error.value) and "run.toml" in str(error.value)


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("corpus = \n")
    with pytest.raises(LmbenchError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(LmbenchError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
