"""lmbench models inside lm-evaluation-harness: the three request kinds against lmbench's own
scoring and generation, and local task files run through lm-eval's registry and command line
(nothing is downloaded: the tasks read JSONL written here)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.sampling import SamplingConfig, sample

lm_eval = pytest.importorskip("lm_eval")
harness = pytest.importorskip("lmbench.adapters.lm_eval_harness")
from lm_eval.api.instance import Instance  # noqa: E402

QUIET = EvalConfig(progress=False, n_bootstrap=10)


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; more threads only spin against other processes
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def char_gpt(tiny_corpus, tmp_path_factory):
    """A tiny character GPT with a 24-character window (so long texts are windowed), saved."""
    model = lmbench.build_model(
        "gpt", n_layer=1, n_embd=16, n_head=2, block_size=24, tokenizer="char",
        train={"max_steps": 20, "batch_size": 4, "seq_len": 24, "warmup_steps": 2,
               "eval_every": 100, "progress": False})
    model.fit(tiny_corpus, valid=False)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return model, path


def _instance(kind: str, args: tuple, index: int = 0) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=index)


def test_loglikelihood_is_the_models_log_probability_of_the_continuation(char_gpt):
    model, _ = char_gpt
    lm = harness.LmbenchLM(model, batch_size=2)
    pairs = [("the cat sat", " on the mat"), ("a dog", " ate"), ("", "the log"),
             ("my friend looked at the old bird and the river", " again")]
    got = lm.loglikelihood([_instance("loglikelihood", p, i) for i, p in enumerate(pairs)])
    encode, boundary = model.tokenizer.encode, model.tokenizer.boundary_id
    for (context, continuation), (logprob, greedy) in zip(pairs, got):
        ids = [boundary, *encode(context + continuation)]
        n = len(encode(continuation))
        inputs, targets = ids[:-1][-24:], ids[1:][-24:]  # the model reads at most 24 ids
        target_ids = [-1] * (len(targets) - n) + targets[-n:]
        expected, _ = model.token_logprobs(torch.tensor([inputs]), torch.tensor([target_ids]))
        # one logits pass, log_softmax in float64 (token_logprobs: float32): rounding apart
        assert logprob == pytest.approx(float(expected.sum()), rel=1e-6)
        logits, _ = model.logits(torch.tensor([inputs]))
        argmax = logits[0, -n:].argmax(-1).tolist()
        assert greedy == (argmax == targets[-n:])


def test_rolling_loglikelihood_is_lmbench_evaluate_on_the_same_text(char_gpt):
    model, _ = char_gpt
    text = "the farmer found a bone in the morning .\nshe liked the red barn , slowly .\n" * 3
    lm = harness.LmbenchLM(model)
    (got,) = lm.loglikelihood_rolling([_instance("loglikelihood_rolling", (text,))])
    corpus = Corpus("one", {"test": _lines_split("test", text)})
    result = lmbench.evaluate(model, corpus, "test", QUIET)
    assert len(model.tokenizer.encode(text)) > 24  # windowed: more than one window
    assert -got == pytest.approx(result.nll_nats, rel=1e-12)
    assert -got == pytest.approx(float(score_stream(model, model.tokenizer.encode(text),
                                                    QUIET).sum()), rel=1e-12)


def test_generate_until_is_lmbench_sampling_cut_at_the_stop_string(char_gpt):
    model, _ = char_gpt
    lm = harness.LmbenchLM(model, batch_size=4)
    contexts = ["the cat", "a dog s", "the old bird", "she"]
    requests = [_instance("generate_until", (c, {"until": [" ", "."], "max_gen_toks": 12,
                                               "do_sample": False}), i)
                for i, c in enumerate(contexts)]
    got = lm.generate_until(requests)
    for context, text in zip(contexts, got):
        drawn = sample(model, model.tokenizer.encode(context), 12,
                       sampler=SamplingConfig(temperature=0), stop_strings=(" ", "."),
                       stop_ids=[model.tokenizer.boundary_id])
        assert text == drawn.text and " " not in text and "." not in text
    sampled = lm.generate_until([_instance("generate_until", ("the", {
        "until": ["\n"], "max_gen_toks": 8, "do_sample": True, "temperature": 1.0}), i)
        for i in range(2)])
    assert sampled == lm.generate_until([_instance("generate_until", ("the", {
        "until": ["\n"], "max_gen_toks": 8, "do_sample": True, "temperature": 1.0}), i)
        for i in range(2)])  # seeded by the request's index


def test_lm_evals_own_models_stay_registered_beside_lmbench():
    from lm_eval.api.registry import get_model

    assert get_model("lmbench") is harness.LmbenchLM
    assert get_model("hf").__name__ == "HFLM"  # its registry fills itself only when empty


def test_mistakes_name_the_argument(char_gpt):
    model, path = char_gpt
    with pytest.raises(LmbenchError, match="exactly one of model"):
        harness.LmbenchLM(model, path=str(path))
    with pytest.raises(LmbenchError, match="batch_size"):
        harness.LmbenchLM(model, batch_size="many")
    with pytest.raises(LmbenchError, match="'num_beams' is not supported"):
        harness.LmbenchLM(model).generate_until(
            [_instance("generate_until", ("the", {"until": ["\n"], "num_beams": 4}))])
    with pytest.raises(LmbenchError, match="model file not found"):
        harness.LmbenchLM(path=str(path.parent / "missing.npz"))


# --------------------------------------------------------------- local tasks through lm-eval


def _write_tasks(folder, texts: list[str]) -> list[str]:
    """Three local lm-eval tasks over one JSONL file: rolling perplexity, multiple choice by
    log-likelihood and generation with exact match."""
    data = folder / "docs.jsonl"
    with data.open("w") as out:
        for text in texts:
            out.write(json.dumps({"text": text, "question": "the cat sat on",
                                  "choices": [" the mat", " a fish"], "gold": 0,
                                  "answer": " the"}) + "\n")
    common = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
              f"  cache_dir: {folder / 'hf_cache'}\ntest_split: test\n")
    tasks = {
        "lmbench_test_rolling": "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n"
        "  - metric: byte_perplexity\n  - metric: bits_per_byte\n",
        "lmbench_test_choice": "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{gold}}'\nmetric_list:\n"
        "  - metric: acc\n  - metric: acc_norm\n",
        "lmbench_test_generate": "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{answer}}'\ngeneration_kwargs:\n  until: [\"\\n\", \".\"]\n"
        "  max_gen_toks: 6\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n",
    }
    for name, body in tasks.items():
        (folder / f"{name}.yaml").write_text(f"task: {name}\n{common}{body}")
    return list(tasks)


@pytest.fixture
def offline(monkeypatch):
    """No network, and no environment report (lm-eval runs pip and nvidia-smi for it)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("lm_eval.evaluator.add_env_info", lambda results: None)


def test_local_tasks_run_through_lm_evals_registry(char_gpt, tmp_path, offline):
    model, path = char_gpt
    texts = ["the cat sat on the mat .\na dog ate a bone today .\n" * 2,
             "my friend walked to the river in the morning .\n"]
    names = _write_tasks(tmp_path, texts)
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="lmbench", model_args=f"path={path}", tasks=names, batch_size=2,
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        log_samples=True)
    rolling = results["results"]["lmbench_test_rolling"]
    nll = sum(lmbench.evaluate(model, Corpus("doc", {"test": _lines_split("test", t)}), "test",
                               QUIET).nll_nats for t in texts)
    # lm-eval batches the rolling windows its own way; float32 kernels give results that depend
    # on the batch's shape in the last bits (~1e-7 relative, more or less by CPU), so the sums
    # agree to ~1e-7, not exactly; a wrong window or token count is off by far more. Perplexity
    # is compared in log space, where exp does not multiply the difference by nll / n_words.
    n_bytes = sum(len(t.encode()) for t in texts)
    assert rolling["bits_per_byte,none"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-7)
    n_words = sum(len(t.split()) + 1 for t in texts)  # lm-eval: re.split(r"\s+") pieces
    assert math.log(rolling["word_perplexity,none"]) == pytest.approx(nll / n_words, rel=1e-7)
    choice = results["samples"]["lmbench_test_choice"][0]
    scored = [r[0] for r in choice["resps"]]
    lm = harness.LmbenchLM(model)
    direct = lm.loglikelihood([_instance("loglikelihood", ("the cat sat on", "  the mat")),
                               _instance("loglikelihood", ("the cat sat on", "  a fish"))])
    # batch shapes again (above)
    assert np.allclose([s[0] for s in scored], [d[0] for d in direct], rtol=1e-7, atol=0)
    acc = results["results"]["lmbench_test_choice"]["acc,none"]
    assert acc == float(direct[0][0] > direct[1][0])
    generated = results["samples"]["lmbench_test_generate"][0]["resps"][0][0]
    assert generated == lm.generate_until([_instance("generate_until", (
        "the cat sat on", {"until": ["\n", "."], "max_gen_toks": 6, "do_sample": False}))])[0]


def test_the_command_line_wrapper_registers_the_model(char_gpt, tmp_path, offline,
                                                      monkeypatch):
    _, path = char_gpt
    names = _write_tasks(tmp_path, ["the cat sat on the mat .\n"])
    import lm_eval.tasks

    class LocalOnly(lm_eval.tasks.TaskManager):  # skip indexing lm-eval's 14,000 built-ins
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", LocalOnly)
    out = tmp_path / "out"
    harness.main(["run", "--model", "lmbench", "--model_args", f"path={path}",
                  "--tasks", ",".join(names), "--include_path", str(tmp_path),
                  "--output_path", str(out), "--batch_size", "2"])
    written = list(out.rglob("results_*.json"))
    assert len(written) == 1
    results = json.loads(written[0].read_text())["results"]
    assert set(names) <= set(results)
    assert math.isfinite(results["lmbench_test_rolling"]["bits_per_byte,none"])
