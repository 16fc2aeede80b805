"""The lm-eval cross-check script runs end to end in quick mode and its figures agree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; more threads only spin against other processes
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_crosscheck_agrees(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    pytest.importorskip("transformers")
    monkeypatch.setattr("lm_eval.evaluator.add_env_info", lambda results: None)  # pip, nvidia-smi
    spec = importlib.util.spec_from_file_location(
        "lm_eval_crosscheck", REPO / "benchmarks" / "lm_eval_crosscheck.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["lm_eval_crosscheck"] = module
    spec.loader.exec_module(module)
    out = tmp_path / "crosscheck"
    report = module.main(["--quick", "--out", str(out)])
    adapter, hf = report["lmbench_adapter"], report["huggingface"]
    assert adapter["bits_per_byte"]["relative_difference"] < 1e-9
    assert adapter["word_perplexity"]["relative_difference_recounted"] < 1e-9
    assert adapter["n_words_lm_eval"] != adapter["n_words_lmbench"]  # the explained difference
    assert hf["one_window"]["bits_per_byte"]["relative_difference"] < 1e-4
    assert hf["windowed"]["bits_per_byte"]["relative_difference"] > 1e-4  # windowing shows
    assert hf["windowed"]["lm_eval_windows_in_lmbench_relative_difference"] < 1e-4
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["huggingface"]["windowed"]["model"]["n_positions"] == 64
    assert "windowing alone" in out.with_suffix(".md").read_text()
