"""``lmbench tasks`` and ``lmbench eval-tasks``: results beside the run, flags, and bad input
ending in one error line, exit status 2 and nothing written."""

from __future__ import annotations

import json

import pytest
from run_factory import fake_run

from lmbench.cli.main import main
from lmbench.storage.store import ResultStore


def test_tasks_lists_the_shipped_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("addition", "addition-scratchpad", "last-letter", "coin-flip", "multistep",
                 "cloze", "next-sentence", "PATH.toml"):
        assert f"  {name} " in out


@pytest.fixture
def run_dir(tmp_path, knowing_ngram):
    ResultStore(tmp_path / "runs").put(fake_run("run-a", model="knows"))
    folder = tmp_path / "runs" / "run-a"
    knowing_ngram.save(folder / "model.npz")
    return folder


def test_eval_tasks_writes_beside_the_run(run_dir, capsys):
    args = ["eval-tasks", str(run_dir), "--tasks", "addition,multistep", "--num-fewshot", "2",
            "--limit", "3", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "addition 2-shot direct" in out and "without the cached preamble" in out
    data = json.loads((run_dir / "tasks.json").read_text())
    assert data["run_id"] == "run-a" and data["model"] == "knows"
    assert [s["task"] for s in data["scores"]] == ["addition", "multistep"]
    assert (run_dir / "tasks" / "addition-2shot-direct.jsonl").is_file()
    assert main([*args[:4], "--num-fewshot", "0", "--cot", "--limit", "1", "--tasks",
                 "addition"]) == 0
    (record,) = ResultStore(run_dir.parent).records()
    assert sorted(s.key for s in record.tasks.scores) == [
        "addition 0-shot cot", "addition 2-shot direct", "multistep 2-shot direct"]
    capsys.readouterr()
    assert main(["eval-tasks", str(run_dir), "--tasks", "addition", "--num-fewshot", "1",
                 "--self-consistency", "2", "--limit", "1", "--no-prefix-cache", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.split("written to")[0])
    assert scores[0]["mode"] == "self-consistency"
    assert scores[0]["prefill_tokens"] == scores[0]["prefill_tokens_uncached"]
    assert main(["eval-tasks", str(run_dir), "--tasks", "addition", "--num-fewshot", "2",
                 "--limit", "3", "--batch-size", "3", "--json"]) == 0
    batched = json.loads(capsys.readouterr().out.split("written to")[0])
    first = [s for s in data["scores"] if s["task"] == "addition"][0]
    assert batched[0]["correct"] == first["correct"]  # the 2-shot answers of one at a time


@pytest.mark.parametrize("tasks, extra, message", [
    ("bad.toml", [], "bad.toml: field 'stop' has an empty stop string"),
    ("addition", ["--num-fewshot", "999"], "num_fewshot is 999, more than the 200 documents"),
    ("adition", [], "unknown task 'adition'"),
    ("addition,,cloze", [], "--tasks 'addition,,cloze': give task names separated by commas"),
    ("addition", ["--self-consistency", "0"], "self_consistency must be a whole number >= 1"),
    ("addition", ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, run_dir, capsys, tasks,
                                                          extra, message):
    (tmp_path / "test.jsonl").write_text('{"q": "x", "a": "y"}\n')
    (tmp_path / "bad.toml").write_text('name = "bad"\ntest = "test.jsonl"\ntemplate = "{q}"\n'
                                       'target = "a"\nmetric = "exact_match"\nstop = [""]\n')
    out = tmp_path / "out"
    names = ",".join(str(tmp_path / t) if t.endswith(".toml") else t for t in tasks.split(","))
    code = main(["eval-tasks", str(run_dir), "--tasks", names, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lmbench: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists() and not (run_dir / "tasks.json").exists()


def test_leaderboard_prints_the_tasks_section(run_dir, capsys):
    assert main(["eval-tasks", str(run_dir), "--tasks", "addition", "--limit", "2"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(run_dir.parent), "--no-published"]) == 0
    out = capsys.readouterr().out
    assert "## Tasks" in out and "addition 0-shot direct" in out and "n=2" in out
