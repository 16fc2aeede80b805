"""PEFT from the command line and run files: `lmbench finetune`, `[peft]` tables, the records
they write, and one-line errors (exit 2, nothing written) for every bad input."""

from __future__ import annotations

import json

import pytest

import lmbench
from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.core.results import RunResult
from lmbench.peft import content_digest, load_adapter
from lmbench.runs.config import parse_config
from lmbench.runs.runner import run

TRAIN = {"batch_size": 4, "seq_len": 16, "max_steps": 3, "warmup_steps": 1, "eval_every": 3,
         "eval_tokens": 100, "progress": False, "bf16": False}


ARCHITECTURE = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "tokenizer": "word"}


def _gpt(tiny_corpus, seed: int = 0):
    return lmbench.build_model("gpt", **ARCHITECTURE, train={**TRAIN, "seed": seed}).fit(
        tiny_corpus)


@pytest.fixture(scope="module")
def bases(tmp_path_factory, tiny_corpus):
    folder = tmp_path_factory.mktemp("bases")
    paths = {}
    for name, model in [("gpt", _gpt(tiny_corpus)), ("other", _gpt(tiny_corpus, seed=1)),
                        ("ngram", lmbench.build_model("ngram", order=2).fit(tiny_corpus))]:
        paths[name] = folder / f"{name}.npz"
        model.save(paths[name])
    return paths


def _finetune(base, corpus_dir, out, *flags):
    return main(["finetune", str(base), "--corpus", str(corpus_dir), "--out", str(out),
                 "--steps", "2", "--batch-size", "4", "--seq-len", "16", "--eval-every", "2",
                 *flags])


def test_finetune_writes_a_record_and_an_adapter_that_loads_on_its_base(bases, corpus_dir,
                                                                         tmp_path, capsys):
    out = tmp_path / "out"
    assert _finetune(bases["gpt"], corpus_dir, out, "--method", "lora", "--rank", "2",
                     "--targets", "q,v") == 0
    assert "trainable parameters" in capsys.readouterr().out
    (record_file,) = out.glob("*/result.json")
    record = RunResult.from_dict(json.loads(record_file.read_text()))
    base = lmbench.load_model(bases["gpt"])
    adaptation = record.adaptation
    assert adaptation.method == "lora" and adaptation.options["rank"] == 2
    assert adaptation.base_model == str(bases["gpt"])
    assert adaptation.base_digest == content_digest(base)
    assert adaptation.n_base_params == base.n_params()
    # r (d_in + d_out) per adapted projection: q and v, 16 -> 16, one layer
    assert adaptation.n_trainable == 2 * 2 * (16 + 16)
    adapter = record_file.parent / "adapter.npz"
    assert adaptation.adapter_bytes == adapter.stat().st_size
    assert not (record_file.parent / "model.npz").exists()  # the adapter alone is saved
    again = load_adapter(base, adapter)
    ids = base.tokenizer.encode_split(lmbench.load_corpus(corpus_dir).test)
    scored = lmbench.evaluate(again, lmbench.load_corpus(corpus_dir), "test")
    assert scored.perplexity == pytest.approx(record.metrics["test"].perplexity, rel=1e-6)
    assert len(ids) == record.metrics["test"].n_tokens


def test_a_run_file_peft_table_fine_tunes_only_the_method(bases, corpus_dir, tmp_path):
    data = {"corpus": str(corpus_dir), "models": [
        {"label": "full", "family": "gpt", "init": str(bases["gpt"]), **ARCHITECTURE,
         "train": TRAIN},
        {"label": "adapters", "family": "gpt", "init": str(bases["gpt"]),
         "train": {"max_steps": 2}, "peft": {"method": "adapters", "bottleneck": 4}}]}
    before = bases["gpt"].read_bytes()
    config = parse_config(data, "run.toml")
    assert config.models[1].peft == {"method": "adapters", "bottleneck": 4}
    records = run(config, tmp_path / "out", save_models=True,
                                      log=lambda line: None)
    full, adapters = records
    assert full.adaptation is None and adapters.adaptation.method == "adapters"
    assert 0 < adapters.adaptation.n_trainable < adapters.adaptation.n_base_params
    assert adapters.train_log["steps"] == 2  # the table's train keys over the base's
    assert bases["gpt"].read_bytes() == before  # the base file is untouched by the run


@pytest.mark.parametrize("flags, message", [
    (["--method", "lorra"], "did you mean 'lora'"),
    (["--method", "lora", "--rank", "0"], "rank must be an integer >= 1"),
    (["--method", "lora", "--targets", "nowhere"], "nowhere"),
    (["--method", "adapters", "--rank", "4"], "unknown key 'rank'"),
])
def test_bad_methods_exit_2_with_one_line_and_write_nothing(bases, corpus_dir, tmp_path, capsys,
                                                            flags, message):
    out = tmp_path / "out"
    assert _finetune(bases["gpt"], corpus_dir, out, *flags) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("lmbench: error:") and message in error[0]
    assert not out.exists()


def test_bad_base_files_exit_2_with_one_line_and_write_nothing(bases, corpus_dir, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    for base, message in [(tmp_path / "missing.npz", "base model file not found"),
                          (bases["ngram"], "is not neural")]:
        assert _finetune(base, corpus_dir, out, "--method", "lora") == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
        assert not out.exists()


def test_run_file_peft_mistakes_are_refused_before_training(bases, corpus_dir):
    def parse(**table):
        model = {"label": "m", "family": "gpt", "init": str(bases["gpt"]), **table}
        return parse_config({"corpus": str(corpus_dir), "models": [model]}, "run.toml")

    cases = [({"peft": {"rank": 4}}, "missing key 'method'"),
             ({"peft": {"method": "lora", "rnak": 4}}, "unknown key 'rnak'"),
             ({"peft": {"method": "lora"}, "n_layer": 2}, "key 'n_layer' does not apply"),
             ({"peft": {"method": "lora"}, "init": None}, "[peft] needs init"),
             ({"peft": {"method": "lora"}, "family": "lstm"}, "is a gpt model")]
    for table, message in cases:
        with pytest.raises(LmbenchError) as error:
            parse(**table)
        assert message in str(error.value) and str(error.value).startswith("run.toml")
        assert "\n" not in str(error.value)


def test_models_lists_the_peft_methods_of_each_family(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    gpt = out.split("\ngpt:")[1].split("\n")[2]
    assert gpt.strip().startswith("peft:") and "lora" in gpt
    ngram = out.split("ngram:")[1].split("\n")[2]
    assert ngram.strip() == "peft: none"
    assert "peft methods" in out and "rank=" in out


def test_an_adapter_continues_on_its_own_base_and_is_refused_on_another(bases, corpus_dir,
                                                                        tmp_path, capsys):
    first = tmp_path / "first"
    assert _finetune(bases["other"], corpus_dir, first, "--method", "lora", "--rank", "2") == 0
    (adapter,) = first.glob("*/adapter.npz")
    again = tmp_path / "again"
    assert _finetune(bases["other"], corpus_dir, again, "--adapter", str(adapter)) == 0
    (record,) = again.glob("*/result.json")
    assert json.loads(record.read_text())["adaptation"]["options"]["rank"] == 2
    capsys.readouterr()
    out = tmp_path / "out"
    assert _finetune(bases["gpt"], corpus_dir, out, "--adapter", str(adapter)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "adapter of another base model" in error[0], error
    assert not out.exists()
    assert _finetune(bases["gpt"], corpus_dir, out, "--adapter", str(adapter), "--method",
                     "lora") == 2
    assert "not both" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("flags, n_trainable", [
    (["--method", "prompt", "--n-prompt-tokens", "3", "--seq-len", "12", "--init", "random"],
     3 * 16),
    (["--method", "prefix", "--n-prefix-tokens", "2", "--seq-len", "12", "--hidden", "8"],
     2 * 1 * 2 * 16),  # saved folded: P x layers x 2 x d
])
def test_finetune_prompt_and_prefix(bases, corpus_dir, tmp_path, capsys, flags, n_trainable):
    out = tmp_path / "out"
    assert _finetune(bases["gpt"], corpus_dir, out, *flags) == 0
    (record_file,) = out.glob("*/result.json")
    record = RunResult.from_dict(json.loads(record_file.read_text()))
    again = load_adapter(lmbench.load_model(bases["gpt"]), record_file.parent / "adapter.npz")
    assert again.n_trainable() == n_trainable
    assert again.capabilities.max_context == ARCHITECTURE["block_size"] - int(flags[3])
    scored = lmbench.evaluate(again, lmbench.load_corpus(corpus_dir), "test")
    assert scored.perplexity == pytest.approx(record.metrics["test"].perplexity, rel=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--method", "prompt", "--n-prompt-tokens", "16"],
     "n_prompt_tokens = 16 must be below the gpt model's context of 16 tokens"),
    (["--method", "prompt", "--n-prompt-tokens", "4"],
     "train seq_len 16 is above the gpt+prompt model's window of 12 tokens"),
    (["--method", "prefix", "--rank", "2"], "unknown key 'rank'"),
])
def test_bad_prompt_and_prefix_flags_exit_2_and_write_nothing(bases, corpus_dir, tmp_path,
                                                              capsys, flags, message):
    out = tmp_path / "out"
    assert _finetune(bases["gpt"], corpus_dir, out, *flags) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not out.exists()


def test_a_run_file_peft_table_takes_prompt_tuning(bases, corpus_dir, tmp_path):
    data = {"corpus": str(corpus_dir), "models": [
        {"label": "prompt", "family": "gpt", "init": str(bases["gpt"]),
         "train": {"max_steps": 2, "seq_len": 8},
         "peft": {"method": "prompt", "n_prompt_tokens": 4, "init": "text",
                  "init_text": "the cat"}}]}
    (record,) = run(parse_config(data, "run.toml"), tmp_path / "out", save_models=True,
                    log=lambda line: None)
    assert record.adaptation.method == "prompt" and record.adaptation.n_trainable == 4 * 16


def test_models_shows_prompt_and_prefix_support_per_family(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    gpt = out.split("\ngpt:")[1].split("\n")[2]
    lstm = out.split("\nlstm:")[1].split("\n")[2]
    assert gpt.strip() == "peft: adapters, lora, prefix, prompt"
    assert lstm.strip() == "peft: adapters, lora, prompt"
    assert "prompt: n_prompt_tokens=" in out and "prefix: n_prefix_tokens=" in out
