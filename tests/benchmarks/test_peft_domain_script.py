"""benchmarks/peft_domain.py end to end at a tiny scale on real data (Brown and State of the
Union, a few hundred sentences each, tiny bases, 2 steps per row)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_benchmark_runs_every_row_kind_and_writes_its_report(data_dir, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "peft_domain", REPO / "benchmarks" / "peft_domain.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up there
    spec.loader.exec_module(script)
    out = tmp_path / "report"
    assert script.main(["--tiny", "--data-dir", str(data_dir), "--work", str(tmp_path / "w"),
                        "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    kinds = {(row["base"], row["kind"]) for row in payload["rows"]}
    for base in ("gpt-base", "lstm-base"):
        assert {(base, "zero-shot"), (base, "full"), (base, "peft")} <= kinds
    assert {kind for base, kind in kinds if base == "kn3-brown"} == {
        "ngram-zero-shot", "ngram-domain", "ngram-interp", "ngram-merge"}
    methods = {(row["base"], row["peft"]["method"]) for row in payload["rows"] if row["peft"]}
    assert {("gpt-base", "prompt"), ("gpt-base", "prefix"), ("lstm-base", "prompt")} <= methods
    assert ("lstm-base", "prefix") not in methods  # no attention: not supported
    for row in payload["rows"]:
        assert row["test_ppl"] > 1 and row["brown_ppl"] > 1
        if row["kind"] == "full" and row["data_share"] == 1.0:
            assert row["recovered_gain"] == pytest.approx(1.0)
        if row["kind"] == "peft":
            assert 0 < row["n_trainable"] < row["n_base_params"] and row["adapter_bytes"] > 0
    markdown = out.with_suffix(".md").read_text()
    assert "| gpt-base | zero-shot |" in markdown and "count merging" in markdown
    assert out.with_suffix(".svg").is_file()
    # a second run reads every row from the cache
    rows = sorted((tmp_path / "w" / "rows").glob("*.json"))
    assert script.main(["--tiny", "--data-dir", str(data_dir), "--work", str(tmp_path / "w"),
                        "--out", str(out)]) == 0
    assert sorted((tmp_path / "w" / "rows").glob("*.json")) == rows
