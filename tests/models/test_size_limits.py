"""Absurd model sizes are refused from the config, before any weight is allocated: the estimate
is exact, the limit is documented and raised with $LMBENCH_MAX_PARAMS."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.core.limits import DEFAULT_MAX_PARAMS, max_params, physical_memory_bytes
from lmbench.runs.config import parse_config

TRAIN = {"max_steps": 1, "batch_size": 2, "seq_len": 8, "progress": False, "bf16": False}
TINY = {
    "nplm": {"context": 2, "embed_dim": 8, "hidden_dim": 8},
    "rnn": {"hidden_dim": 8, "n_layer": 1},
    "lstm": {"hidden_dim": 8, "n_layer": 1},
    "gru": {"hidden_dim": 8, "n_layer": 1},
    "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    "moe": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    "bert": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    "seq2seq": {"n_layer": 1, "n_head": 2, "n_embd": 16, "segment_len": 8},
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_the_estimate_is_the_parameter_count(tiny_corpus, family):
    model = lmbench.build_model(family, **TINY[family], train=TRAIN)
    model.fit(tiny_corpus, valid=False)
    assert model.estimated_n_params() == model.n_params()


def test_absurd_widths_are_refused_before_building(tiny_corpus):
    model = lmbench.build_model("gpt", n_embd=1_000_000, n_head=1)
    with pytest.raises(LmbenchError, match="LMBENCH_MAX_PARAMS") as error:
        model.fit(tiny_corpus)
    assert "model 'gpt': about 4.8e+13 parameters" in str(error.value)
    assert model.net is None  # nothing was built
    with pytest.raises(LmbenchError, match=r"run.toml \[\[models\]\] 'wide'.*about 4.8e\+13"):
        parse_config({"corpus": "tiny", "models": [
            {"label": "wide", "family": "lstm", "hidden_dim": 2_000_000}]}, "run.toml")


def test_the_limit_is_documented_and_can_be_raised(tiny_corpus, monkeypatch):
    memory = physical_memory_bytes()
    assert max_params() == (DEFAULT_MAX_PARAMS if memory is None
                            else min(DEFAULT_MAX_PARAMS, memory / 16))
    monkeypatch.setenv("LMBENCH_MAX_PARAMS", "1000")
    small = {"family": "gpt", **TINY["gpt"], "train": TRAIN}
    with pytest.raises(LmbenchError, match="above the limit of 1e\\+03"):
        parse_config({"corpus": "tiny", "models": [small]})
    monkeypatch.setenv("LMBENCH_MAX_PARAMS", "1e7")
    parse_config({"corpus": "tiny", "models": [small]})
    monkeypatch.setenv("LMBENCH_MAX_PARAMS", "lots")
    with pytest.raises(LmbenchError, match="LMBENCH_MAX_PARAMS must be a number"):
        max_params()


def test_the_cli_refuses_an_absurd_run_file_with_exit_2(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('corpus = "brown"\n[[models]]\nlabel = "huge"\nfamily = "gpt"\n'
                    "n_embd = 1000000\nn_head = 1\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "'huge'" in lines[0] and "LMBENCH_MAX_PARAMS" in lines[0]
    assert not (tmp_path / "out").exists()
