"""The task evaluator: grading, the cached preamble (same answers, fewer prefill tokens),
multiple choice, rolling log-likelihood, self-consistency, and the intervals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lmbench.core.errors import LmbenchError
from lmbench.evaluation.scoring import score_stream
from lmbench.inference.prefix_cache import cache_prefix, extend_cache, sample_after
from lmbench.inference.sampling import SamplingConfig, sample
from lmbench.tasks.evaluator import evaluate_task, wilson_interval
from lmbench.tasks.prompting import PromptConfig
from lmbench.tasks.task import STRICT_REGEX, Task, compile_regex, extract


def test_a_model_that_knows_the_answers_gets_them_right(knowing_ngram, chain_ngram,
                                                        addition_task):
    result = evaluate_task(knowing_ngram, addition_task, PromptConfig(num_fewshot=2))
    assert result.score.metrics["exact_match"] >= 0.9
    assert result.score.metrics["exact_match_flexible"] >= 0.9
    low, high = result.score.ci95["exact_match"]
    assert low < result.score.metrics["exact_match"] <= high
    example = result.examples[0]
    assert set(example) >= {"prompt", "output", "extracted", "extracted_flexible", "correct"}
    assert example["prompt"].endswith(f"Q: {addition_task.splits['test'][0]['question']}\nA:")
    assert example["correct"] == (example["extracted"] == example["target"])
    assert result.score.correct == tuple(e["correct"] for e in result.examples)
    # a 16-gram's window cannot see the question from the chain's end, so only the mechanics
    # are checked: the chain is written, its "The answer is" read, and graded
    cot = evaluate_task(chain_ngram, addition_task, PromptConfig(num_fewshot=2, cot=True))
    for example in cot.examples:
        assert "carry" in example["output"] and "The answer is" in example["output"]
        assert example["extracted"] == example["output"].split("The answer is")[-1].strip(" .")
        assert example["correct"] == (example["extracted"] == example["target"])


@pytest.mark.parametrize("model_name", ["knowing_ngram", "tiny_task_gpt"])
@pytest.mark.parametrize("config", [PromptConfig(num_fewshot=3), PromptConfig(cot=True),
                                    PromptConfig(num_fewshot=1, self_consistency=3)])
def test_cached_preamble_gives_the_same_answers_with_fewer_prefill_tokens(
        request, model_name, config, addition_task):
    model = request.getfixturevalue(model_name)
    task = replace(addition_task, max_new_tokens=6, cot_max_new_tokens=16)  # CPU time is short
    cached = evaluate_task(model, task, config, limit=3)
    whole = evaluate_task(model, task, config, limit=3, use_prefix_cache=False)
    assert [e["output"] for e in cached.examples] == [e["output"] for e in whole.examples]
    assert cached.score.fingerprint == whole.score.fingerprint
    assert whole.score.prefill_tokens == whole.score.prefill_tokens_uncached
    assert cached.score.prefill_tokens_uncached == whole.score.prefill_tokens
    if config.num_fewshot:
        assert cached.score.prefill_tokens < whole.score.prefill_tokens
    if config.self_consistency > 1:
        assert all(len(e["samples"]) == 3 for e in cached.examples)
        again = evaluate_task(model, task, config, limit=3)
        assert [e["samples"] for e in again.examples] == [e["samples"] for e in cached.examples]


def test_sample_after_equals_sample_of_the_whole_prompt(knowing_ngram):
    ids = knowing_ngram.tokenizer.encode("Q: What is 12 plus 34?\nA:")
    cache = extend_cache(knowing_ngram, cache_prefix(knowing_ngram, ids[:10]), ids[10:])
    assert cache.prefix_ids == tuple(ids)
    for config, seed in ((SamplingConfig(temperature=0), 0), (SamplingConfig(top_k=5), 3)):
        whole = sample(knowing_ngram, ids, 12, sampler=config, seed=seed, stop_strings=["\n"])
        after = sample_after(knowing_ngram, cache, 12, sampler=config, seed=seed,
                             stop_strings=["\n"])
        assert after == whole


def _choice_task(docs):
    return Task(name="mc", kind="multiple_choice", splits={"train": docs, "test": docs},
                template="Q: {question}\nA:", target="label", choices_field="choices")


def test_multiple_choice_by_loglikelihood_cached_equals_uncached(knowing_ngram, addition_task):
    docs = tuple({"question": d["question"], "label": 0,
                  "choices": [d["answer"], str(int(d["answer"]) + 1), str(int(d["answer"]) + 10)]}
                 for d in addition_task.splits["test"])
    task = _choice_task(docs)
    cached = evaluate_task(knowing_ngram, task, PromptConfig(num_fewshot=2))
    whole = evaluate_task(knowing_ngram, task, PromptConfig(num_fewshot=2),
                          use_prefix_cache=False)
    for a, b in zip(cached.examples, whole.examples):
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], rtol=1e-9)
    assert cached.score.metrics["acc"] >= 0.75
    assert 0.0 <= cached.score.metrics["acc_norm"] <= 1.0
    assert cached.score.prefill_tokens < whole.score.prefill_tokens


def test_length_normalised_accuracy_prefers_per_character_likelihood(knowing_ngram):
    # the gold is long; summed log-likelihood favours the short distractor, per character the
    # gold can win: the two metrics are computed differently
    docs = tuple({"question": "What is 10 plus 10?", "choices": ["2", "20 and more text"],
                  "label": 1} for _ in range(2))
    result = evaluate_task(knowing_ngram, _choice_task(docs))
    scores = result.examples[0]["logprobs"]
    per_char = [s / len(" " + c) for s, c in zip(scores, docs[0]["choices"])]
    assert result.examples[0]["correct"] == (int(np.argmax(scores)) == 1)
    assert result.examples[0]["correct_norm"] == (int(np.argmax(per_char)) == 1)


def test_rolling_loglikelihood_is_the_evaluators_perplexity(knowing_ngram, addition_task):
    docs = tuple({"text": f"Q: {d['question']}\nA: {d['answer']}"}
                 for d in addition_task.splits["test"])
    task = Task(name="ppl", kind="rolling", splits={"test": docs}, template="", target="text")
    result = evaluate_task(knowing_ngram, task, PromptConfig(num_fewshot=3))
    nll = sum(score_stream(knowing_ngram, np.asarray(knowing_ngram.tokenizer.encode(d["text"])))
              .sum() for d in docs)
    tokens = sum(len(knowing_ngram.tokenizer.encode(d["text"])) for d in docs)
    assert result.score.metrics["perplexity"] == pytest.approx(math.exp(nll / tokens))
    low, high = result.score.ci95["perplexity"]
    assert low <= result.score.metrics["perplexity"] <= high
    assert result.score.num_fewshot == 0 and result.score.correct == ()


def test_strict_and_flexible_extraction():
    strict, number = compile_regex(STRICT_REGEX, "strict"), compile_regex(r"-?\d[\d,]*", "f")
    chain = "5 + 8 + 1 = 14, write 4, carry 1. The answer is 143."
    assert extract(strict, chain, last=False) == "143"
    assert extract(strict, " 143", last=False) == "143"
    assert extract(strict, " 143 Q: What", last=False) == "143 Q: What"  # strict: wrong
    assert extract(number, " 143 Q: What", last=True) == "143"  # flexible: right
    assert extract(number, "no digits", last=True) == "[invalid]"


def test_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("model_name", ["knowing_ngram", "tiny_task_gpt"])
@pytest.mark.parametrize("config", [PromptConfig(num_fewshot=3),
                                    PromptConfig(num_fewshot=1, self_consistency=3)])
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_questions_get_the_answers_of_one_at_a_time(request, model_name, config,
                                                            use_cache, addition_task):
    model = request.getfixturevalue(model_name)
    ragged = [{**doc, "question": doc["question"] + " " * (i % 3)}  # 3 question lengths
              for i, doc in enumerate(addition_task.splits["test"])]
    task = replace(addition_task, max_new_tokens=6,
                   splits={**addition_task.splits, "test": ragged})
    one = evaluate_task(model, task, config, limit=8, use_prefix_cache=use_cache)
    lengths = {len(model.tokenizer.encode(e["prompt"])) for e in one.examples}
    assert len(lengths) > 1  # ragged questions: the batches are split by length
    batched = evaluate_task(model, task, config, limit=8, use_prefix_cache=use_cache,
                            batch_size=4)
    assert [e["output"] for e in batched.examples] == [e["output"] for e in one.examples]
    assert [e.get("samples") for e in batched.examples] == [e.get("samples")
                                                            for e in one.examples]
    assert batched.score.prefill_tokens == one.score.prefill_tokens
    assert batched.score.metrics == one.score.metrics
    with pytest.raises(LmbenchError, match="batch_size must be >= 1, got 0"):
        evaluate_task(model, task, config, limit=2, batch_size=0)
