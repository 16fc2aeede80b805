"""docs/peft.md: its Python block runs as written and does what its comments say."""

from __future__ import annotations

from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "peft.md"


def test_the_documented_api_runs(tiny_corpus, tmp_path):
    code = DOC.read_text(encoding="utf-8").split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 15
    namespace = {"corpus": tiny_corpus, "folder": tmp_path}
    exec(code, namespace)
    base, adapted, merged, again = (namespace[k] for k in ("base", "adapted", "merged", "again"))
    assert adapted.training_log()["steps"] == 10
    assert 0 < adapted.trainable_fraction() < 0.1
    ids = torch.randint(0, base.tokenizer.vocab_size, (2, 16),
                        generator=torch.Generator().manual_seed(0))
    expected = adapted.token_logprobs(ids, ids)[0]
    assert not torch.allclose(expected, base.token_logprobs(ids, ids)[0], atol=1e-6)
    assert torch.allclose(merged.token_logprobs(ids, ids)[0], expected, atol=1e-5)
    assert torch.equal(again.token_logprobs(ids, ids)[0], expected)
