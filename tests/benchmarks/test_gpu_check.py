"""``benchmarks/gpu_check.py`` without a GPU: one line and exit 0, and its CPU half end to end
(tiny sizes, a few steps)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check_script"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check_script"]


@pytest.fixture
def corpus_dir(write_corpus_dir):
    return write_corpus_dir("tiny")


def test_without_cuda_it_says_so_in_one_line(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert script.main(["--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_cpu_half_runs_end_to_end(script, corpus_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert script.main(["--corpus", str(corpus_dir), "--out", str(out), "--cpu-only", "--tiny",
                        "--steps", "3", "--score-tokens", "200"]) == 0
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["ok"] and summary["cuda"] is None and summary["failures"] == []
    assert set(summary["models"]) == {"gpt", "lstm"}
    for row in summary["models"].values():
        cpu = row["cpu"]
        assert cpu["device"] == "cpu" and cpu["test_perplexity"] > 1
        assert cpu["valid_nats"] > 0 and cpu["train_tokens_per_s"] > 0
    assert summary["models"]["gpt"]["cpu"]["kv_cache_equals_recomputation"]
    assert json.loads(capsys.readouterr().out) == summary
