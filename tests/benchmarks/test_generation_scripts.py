"""The generation benchmark scripts run end to end in quick mode (smoke tests)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from text_factory import _tiny_text

import lmbench
from lmbench.reports.tables import leaderboard_table
from lmbench.storage.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; more threads only spin against other processes
    yield
    torch.set_num_threads(threads)


def test_generation_report_quick_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("mauve")
    text = tmp_path / "tiny.txt"  # one file: lines split 80/10/10 into train/valid/test
    text.write_text(_tiny_text(600, seed=3))
    corpus = lmbench.load_corpus(str(text))
    store = tmp_path / "runs"  # the model is saved in its run folder, beside its record
    model = lmbench.build_model("ngram", order=3).fit(corpus)
    run = lmbench.record_run(model, corpus, store, label="kn3",
                             eval_config=lmbench.EvalConfig(block_len=64, progress=False))
    model_file = store / run.run_id / "model.npz"
    model.save(model_file)
    record_bytes = (store / run.run_id / "result.json").read_bytes()
    lmbench.build_model("ngram", order=2).fit(corpus).save(tmp_path / "judge.npz")
    out = tmp_path / "reports" / "generation_tiny"
    status = _script("generation_report").main([
        "--corpus", str(text), "--model-file", str(model_file),
        "--judge-file", str(tmp_path / "judge.npz"), "--out", str(out), "--quick",
        "--attach-to-runs"])
    assert status == 0
    markdown = (tmp_path / "reports" / "generation_tiny.md").read_text()
    assert f"## {run.run_id}" in markdown and "judge: ngram" in markdown
    assert "| best-of-N |" in markdown and "generation_report.py --corpus" in markdown
    record = json.loads((tmp_path / "reports" / "generation_tiny.json").read_text())
    rows = record["models"][0]["rows"]
    assert [r["label"] for r in rows][:2] == ["human", "greedy"] and len(rows) == 8
    assert record["config"]["continuation_len"] == 24 and record["models"][0]["n_prompts"] >= 10
    samples = (tmp_path / "reports" / "generation_tiny.samples.jsonl").read_text().splitlines()
    assert len(samples) == record["models"][0]["n_prompts"]
    assert {"prompt", "human", "greedy", "top-p 0.95"} <= json.loads(samples[0]).keys()
    captured = capsys.readouterr()
    assert markdown.strip() in captured.out and "generation.json" in captured.err

    # the run's record is untouched; its generation results sit beside it, merged on reading
    assert (store / run.run_id / "result.json").read_bytes() == record_bytes
    merged = ResultStore(store).get(run.run_id)
    assert merged.generation.strategy == "top-p 0.95"
    assert merged.generation.judge_file == str(tmp_path / "judge.npz")
    top_p = rows[[r["label"] for r in rows].index("top-p 0.95")]
    assert merged.generation.metrics["distinct_2"] == top_p["metrics"]["distinct_2"]["value"]
    assert 0 <= merged.generation.metrics["mauve"] <= 1
    assert merged.generation.metrics["decode_tokens_per_s"] > 0
    assert len(merged.generation.rows) == 8 and len(merged.generation.samples) == 2
    assert {"prompt", "human", "top-p 0.95"} <= merged.generation.samples[0].keys()
    table = leaderboard_table([merged])
    assert table.loc[0, "gen MAUVE"] == merged.generation.metrics["mauve"]

    # attaching a saved report again: no benchmark; files outside run folders are named
    sidecar = store / run.run_id / "generation.json"
    sidecar.unlink()
    status = _script("generation_report").main([
        "--corpus", str(text), "--model-file", str(model_file), "--model-file",
        str(tmp_path / "judge.npz"), "--from-report", f"{out}.json"])
    assert status == 0 and sidecar.is_file()
    err = capsys.readouterr().err
    assert "judge.npz: not <store>/<run_id>/model.npz" in err
    assert f"[{run.run_id}]" not in err  # no decoding: the benchmark did not run
    assert ResultStore(store).get(run.run_id).generation == merged.generation


def test_generation_report_errors_are_one_line(tmp_path, capsys):
    status = _script("generation_report").main(["--corpus", "brown", "--model-file",
                                                str(tmp_path / "missing.npz"), "--quick"])
    assert status == 2
    assert capsys.readouterr().err.strip().startswith("generation_report: error:")


def test_kv_decode_speed_quick_prints_the_ratio(capsys):
    assert _script("kv_decode_speed").main(["--quick"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "speed-up" in out[-2]
    record = json.loads(out[-1])
    assert record["speedup"] > 0 and record["same_tokens"] and record["new_tokens"] == 24
