"""Damaged saved models (empty, truncated, missing or misshapen weights, bad config or tokenizer
JSON) are one-line errors naming the file, from the API and from the CLI (exit status 2)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import lmbench
from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.models import load_model

TRAIN = {"max_steps": 2, "batch_size": 2, "seq_len": 8, "progress": False, "bf16": False}


@pytest.fixture(scope="module")
def saved(tiny_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=16,
                        train=TRAIN).fit(tiny_corpus, valid=False).save(folder / "gpt.npz")
    lmbench.build_model("ngram", order=3).fit(tiny_corpus).save(folder / "ngram.npz")
    return folder


def _rewrite(source, meta_change=None, drop=None, shrink=None) -> bytes:
    with np.load(source, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta_change:
        meta_change(meta)
    if drop:
        arrays = {k: v for k, v in arrays.items() if drop not in k}
    if shrink:
        name = next(k for k in arrays if shrink in k)
        arrays[name] = arrays[name][:1]
    out = io.BytesIO()
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return out.getvalue()


CASES = {
    "empty": ("gpt", lambda p: b"", "not a model"),
    "truncated": ("gpt", lambda p: p.read_bytes()[: p.stat().st_size // 2], "not a model"),
    "missing weights": ("gpt", lambda p: _rewrite(p, drop="param/blocks.0.attn"),
                        "missing weights 'blocks.0.attn"),
    "wrong shape": ("gpt", lambda p: _rewrite(p, shrink="param/token_embedding"),
                    "weights of the wrong shape 'token_embedding.weight'"),
    "bad tokenizer json": ("gpt", lambda p: _rewrite(p, lambda m: m.update(tokenizer="{x")),
                           "the tokenizer is not valid JSON"),
    "no config": ("gpt", lambda p: _rewrite(p, lambda m: m.pop("config")), "no config"),
    "bad train log": ("gpt", lambda p: _rewrite(p, lambda m: m.update(train_log={"x": 1})),
                      "damaged gpt model file"),
    "ngram wrong shape": ("ngram", lambda p: _rewrite(p, shrink="logp1"),
                          "damaged n-gram model file"),
    "ngram bad tokenizer": ("ngram", lambda p: _rewrite(p, lambda m: m.update(tokenizer="[]")),
                            "needs 'name', 'config' and 'state'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_model_files_are_one_line_naming_the_file(saved, tmp_path, case, capsys):
    family, damage, message = CASES[case]
    path = tmp_path / "damaged.npz"
    path.write_bytes(damage(saved / f"{family}.npz"))
    with pytest.raises(LmbenchError) as error:
        load_model(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "\n" not in str(error.value)
    assert main(["generate", str(path), "x", "--max-new-tokens", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmbench: error:")
