"""Task results recorded like other runs: the tasks.json sidecar and its JSONL files, the store
merging it into the record, the leaderboard's tasks section, and compare's paired task
differences (McNemar)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from run_factory import fake_run

import lmbench
from lmbench.core.results import TaskResults
from lmbench.evaluation.significance import compare
from lmbench.evaluation.task_significance import mcnemar_p_value, paired_task_difference
from lmbench.reports.html import render_html
from lmbench.reports.task_tables import tasks_markdown, tasks_table
from lmbench.storage.store import ResultStore
from lmbench.tasks.evaluator import evaluate_task
from lmbench.tasks.prompting import PromptConfig
from lmbench.tasks.records import write_task_results


@pytest.fixture(scope="module")
def evaluations(knowing_ngram, addition_task, tiny_corpus):
    guesser = lmbench.build_model("ngram", order=2, tokenizer="char")
    guesser.tokenizer = knowing_ngram.tokenizer
    guesser.fit(tiny_corpus)
    config = PromptConfig(num_fewshot=2)
    return ([evaluate_task(knowing_ngram, addition_task, config)],
            [evaluate_task(guesser, addition_task, config)])


def test_sidecar_and_examples_are_written_and_merged_into_the_record(tmp_path, evaluations,
                                                                    knowing_ngram,
                                                                    addition_task):
    store = ResultStore(tmp_path)
    store.put(fake_run("run-a", model="knows"))
    path = write_task_results(tmp_path, "run-a", "knows", evaluations[0], family="ngram")
    assert path == tmp_path / "run-a" / "tasks.json"
    results = TaskResults.from_dict(json.loads(path.read_text()), where="")
    (score,) = results.scores
    assert score.key == "addition 2-shot direct" and score.examples_file is not None
    lines = (tmp_path / "run-a" / score.examples_file).read_text().splitlines()
    assert len(lines) == score.n_examples == len(score.correct)
    assert [json.loads(line)["correct"] for line in lines] == list(score.correct)
    (record,) = ResultStore(tmp_path).records()
    assert record.tasks is not None and record.tasks.score(score.key) == score
    assert not store.problems()
    # an evaluation of another mode is added; one of the same key replaces the old one
    cot = evaluate_task(knowing_ngram, replace(addition_task, cot_max_new_tokens=8),
                        PromptConfig(num_fewshot=1, cot=True), limit=2)
    write_task_results(tmp_path, "run-a", "knows", [cot])
    write_task_results(tmp_path, "run-a", "knows", evaluations[1])
    again = TaskResults.from_dict(json.loads(path.read_text()), where="")
    assert sorted(s.key for s in again.scores) == ["addition 1-shot cot",
                                                   "addition 2-shot direct"]
    assert again.score("addition 2-shot direct").correct == evaluations[1][0].score.correct
    assert (tmp_path / "run-a" / "tasks" / "addition-1shot-cot.jsonl").is_file()


def test_task_results_round_trip_and_refuse_bad_fields(evaluations):
    results = TaskResults(run_id="r", model="m", scores=(evaluations[0][0].score,))
    assert TaskResults.from_dict(json.loads(json.dumps(results.to_dict()))) == results
    data = results.to_dict()
    data["scores"][0]["correct"] = [0, 2]
    with pytest.raises(ValueError, match=r"scores\[0\]\.correct is not a list of 0 / 1"):
        TaskResults.from_dict(data)
    data = results.to_dict()
    del data["scores"][0]["metrics"]
    with pytest.raises(ValueError, match=r"scores\[0\]\.metrics is not an object"):
        TaskResults.from_dict(data)


def test_leaderboard_has_a_tasks_section(tmp_path, evaluations):
    store = ResultStore(tmp_path)
    for run_id, model, evaluation in (("run-a", "knows", evaluations[0]),
                                      ("run-b", "guesses", evaluations[1])):
        store.put(fake_run(run_id, model=model))
        write_task_results(tmp_path, run_id, model, evaluation)
    records = ResultStore(tmp_path).records()
    table = tasks_table(records)
    assert list(table["model"]) == ["guesses", "knows"]
    assert "addition 2-shot direct" in table.columns
    text = tasks_markdown(records)
    assert text.startswith("## Tasks") and "n=12" in text
    assert tasks_markdown([fake_run("x")]) == ""


def test_compare_gives_paired_task_differences(tmp_path, evaluations):
    store = ResultStore(tmp_path)
    for run_id, evaluation in (("run-a", evaluations[0]), ("run-b", evaluations[1])):
        store.put(fake_run(run_id, model=run_id))
        write_task_results(tmp_path, run_id, run_id, evaluation)
    result = compare(tmp_path / "run-a", tmp_path / "run-b", n_bootstrap=200)
    (difference,) = result.tasks
    a, b = evaluations[0][0].score, evaluations[1][0].score
    assert difference.key == a.key and difference.n_examples == a.n_examples
    assert difference.delta == pytest.approx(a.metrics["exact_match"] - b.metrics["exact_match"])
    assert difference.delta_ci95[0] <= difference.delta <= difference.delta_ci95[1]
    assert difference.delta > 0 and difference.p_value < 0.05
    assert "tasks (accuracy" in result.to_text() and "addition 2-shot direct" in result.to_text()


def test_mcnemar_exact_values(evaluations):
    assert mcnemar_p_value(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_p_value(0, 0) == 1.0 and mcnemar_p_value(3, 3) == 1.0
    score = evaluations[0][0].score
    same = paired_task_difference(score, score)
    assert same.delta == 0.0 and same.p_value == 1.0 and same.delta_ci95 == (0.0, 0.0)


def test_html_page_has_an_escaped_tasks_section(tmp_path, evaluations):
    ResultStore(tmp_path).put(fake_run("run-a", model="<b>knows</b>"))
    write_task_results(tmp_path, "run-a", "<b>knows</b>", evaluations[0])
    page = render_html(ResultStore(tmp_path).records(), [], [])
    assert "<h2>Tasks</h2>" in page and "addition 2-shot direct" in page
    assert "&lt;b&gt;knows&lt;/b&gt;" in page and "<b>knows</b>" not in page
