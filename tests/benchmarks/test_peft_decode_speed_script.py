"""benchmarks/peft_decode_speed.py runs end to end in quick mode and writes its report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peft_decode_speed.py"


def test_quick_mode_writes_the_report(tmp_path):
    spec = importlib.util.spec_from_file_location("peft_decode_speed_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    sys.modules["peft_decode_speed_script"] = script
    try:
        spec.loader.exec_module(script)
        report = script.main(["--quick", "--out", str(tmp_path / "r")])
    finally:
        del sys.modules["peft_decode_speed_script"]
    assert set(report["tokens_per_s"]) == {"base", "merged", "unmerged"}
    assert report["merged_over_base"] > 0 and 0 < report["trainable_fraction"] < 1
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["new_tokens"] == 24
    assert "| merged |" in (tmp_path / "r.md").read_text()
