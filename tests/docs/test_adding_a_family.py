"""The worked example of docs/adding_a_family.md runs as written: the family fits, scores and
round-trips through save/load without any change outside its own file."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import lmbench
from lmbench.core.interface import Trainable
from lmbench.core.options import build_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding_a_family.md"


def _family_module(tmp_path: Path):
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    path = tmp_path / "bilinear.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("doc_bilinear", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_documented_family_fits_scores_and_round_trips(tmp_path, tiny_corpus):
    module = _family_module(tmp_path)
    config = build_config(module.BilinearConfig, {
        "embed_dim": 8, "tokenizer": "char",
        "train": {"max_steps": 30, "batch_size": 8, "seq_len": 16, "warmup_steps": 3,
                  "learning_rate": 1e-2, "progress": False}}, "doc example")
    model = module.BilinearLM(config).fit(tiny_corpus, valid=False)
    assert isinstance(model, Trainable)
    result = lmbench.evaluate(model, tiny_corpus, split="test")
    assert result.perplexity < model.tokenizer.vocab_size  # better than uniform
    model.save(tmp_path / "m.npz")
    again = module.BilinearLM.load(tmp_path / "m.npz")
    assert math.isclose(lmbench.evaluate(again, tiny_corpus, split="test").perplexity,
                        result.perplexity, rel_tol=1e-9)
