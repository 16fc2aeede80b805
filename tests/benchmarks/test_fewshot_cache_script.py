"""The few-shot cache benchmark runs end to end in quick mode: identical outputs, fewer prefill
tokens with the cached preamble, and its two report files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fewshot_cache.py"


def test_quick_mode_runs_end_to_end(tmp_path):
    spec = importlib.util.spec_from_file_location("fewshot_cache_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    sys.modules["fewshot_cache_script"] = script
    try:
        spec.loader.exec_module(script)
        record = script.main(["--quick", "--out", str(tmp_path / "r")])
    finally:
        del sys.modules["fewshot_cache_script"]
    assert record["identical"] and record["shots"] == 8 and record["questions"] == 3
    assert record["cached"]["prefill_tokens"] < record["uncached"]["prefill_tokens"]
    assert json.loads((tmp_path / "r.json").read_text())["token_ratio"] == record["token_ratio"]
    assert "| preamble cached |" in (tmp_path / "r.md").read_text()
