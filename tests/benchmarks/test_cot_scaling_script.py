"""The chain-of-thought benchmark: its training text, its batched evaluation against the task
layer's own evaluator, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lmbench
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.tasks.evaluator import evaluate_task

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cot = _script("cot_scaling")


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; more threads only spin against other processes
    yield
    torch.set_num_threads(threads)


def test_chains_work_the_columns_and_end_with_the_sum():
    question, answer = cot.chain_text(347, 285)
    assert question == "Q: 347+285\nA:"
    assert answer == (" Let's think step by step. 7+5+0=12 4+8+1=13 3+2+1=06. "
                      "The answer is 632.\n")
    assert cot.chain_text(95, 7)[1].endswith("5+7+0=12 9+0+1=10. The answer is 102.\n")
    assert cot.direct_text(12, 30) == ("Q: 12+30\nA:", " 42\n")
    for _ in range(50):  # every chain's last step and carries give the sum
        a, b = cot.draw_operands(random.Random(_), 3)
        assert cot.chain_text(a, b)[1].endswith(f"The answer is {a + b}.\n")


def test_the_mixture_keeps_its_proportions_and_never_shows_an_evaluation_problem():
    settings = replace(cot.Settings(), n_eval=20)
    held = {p for ps in cot.eval_problems(settings).values() for p in ps}
    corpus = "Some corpus text, many times over. " * 2000
    text = cot.mixture_text(settings, corpus, 60_000, seed=3, exclude=held)
    questions = [line[3:] for line in text.splitlines() if line.startswith("Q: ")]
    chains = text.count("Let's think step by step.")
    assert 0.35 < chains / len(questions) < 0.65  # chain_fraction 0.5 of the problems
    corpus_chars = sum(len(p) for p in text.split("\n\n") if "Some corpus" in p)
    assert abs(corpus_chars / len(text) - settings.corpus_fraction) < 0.05
    asked = {tuple(map(int, q.split("+"))) for q in questions}
    assert not asked & held


def test_batched_generation_gives_the_task_evaluators_greedy_answers(tiny_corpus):
    model = lmbench.build_model("gpt", n_layer=1, n_embd=16, n_head=2, block_size=256,
                                tokenizer="char", train={"max_steps": 5, "batch_size": 4,
                                                         "seq_len": 64, "progress": False,
                                                         "eval_every": 100})
    text = "".join("".join(cot.chain_text(a, b)) + "\n" for a, b in [(12, 34), (5, 7)] * 30)
    model.fit(Corpus("t", {"train": _lines_split("train", text)}), valid=False)
    settings = replace(cot.TINY, n_eval=4)
    task = cot.addition_task(settings, 2, [(12, 34), (56, 78), (90, 11), (23, 45)])
    for mode, k in (("direct", 0), ("direct", 1), ("cot", 0), ("cot", 1)):
        config = cot.fitting_config(settings, model, task, mode, k)
        assert config.num_fewshot == k  # short prompts fit
        cell = cot.evaluate_cell(settings, model, task, mode, k)
        reference = evaluate_task(model, task, config)
        assert [e["outputs"][0] for e in cell["examples"]] == [
            e["output"] for e in reference.examples]
        assert cell["exact_match"] == reference.score.metrics["exact_match"]


def test_the_tiny_run_writes_the_report(tmp_path):
    out = tmp_path / "report"
    cells = cot.main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(out)])
    settings = cot.TINY
    assert len(cells) == len(settings.sizes) * 2 * len(cot.MODES) * len(settings.shots)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["gpt-tiny"]["steps"] == settings.max_steps
    sampled = [c for c in report["cells"] if c["mode"] == "self-consistency"]
    assert all(len(e["outputs"]) == settings.n_samples for c in sampled for e in c["examples"])
    assert out.with_suffix(".png").stat().st_size > 0
    md = out.with_suffix(".md").read_text()
    assert "## In distribution" in md and "| gpt-tiny | cot |" in md
    # a second run reuses the trained model and the evaluated cells
    again = cot.main(["--tiny", "--work", str(tmp_path / "work")])
    assert [c["exact_match"] for c in again] == [c["exact_match"] for c in cells]
