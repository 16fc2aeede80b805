"""The speedups benchmark script runs end to end in quick mode and reports identical outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speedups.py"


def test_quick_mode_runs_end_to_end(tiny_corpus, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, split in tiny_corpus.splits.items():
        (folder / f"{name}.txt").write_text(split.text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("speedups_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    sys.modules["speedups_script"] = script  # its dataclasses look their module up
    try:
        spec.loader.exec_module(script)
        started = time.perf_counter()
        report = script.main(["--quick", "--corpus", str(folder), "--out", str(tmp_path / "r")])
    finally:
        del sys.modules["speedups_script"]
    assert time.perf_counter() - started < 30
    assert report["kv_cache"]["identical"]
    assert all(row["identical"] for row in report["speculative"]["rows"])
    assert set(report["quantization"]) == {"fp32", "int8-dynamic", "bf16"}
    assert {"scratch", "distilled"} <= set(report["distillation"])
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["new_tokens"] == 24
    assert "## Speculative greedy decoding" in (tmp_path / "r.md").read_text()
