"""The run's ``device``: a run file key and ``--device`` flags, checked before anything trains;
training, scoring and generation with ``device = "cpu"`` through the runner and the CLI; records
that say where they ran, and records written before that still load."""

from __future__ import annotations

import json

import pytest
import torch

import lmbench
from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.core.results import RunResult
from lmbench.runs.config import parse_config
from lmbench.runs.runner import run
from lmbench.storage.store import ResultStore

GPT = {"family": "gpt", "label": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16,
       "block_size": 32, "train": {"max_steps": 3, "batch_size": 2, "seq_len": 32,
                                   "eval_every": 3, "eval_tokens": 64, "progress": False}}


def _run_file(tmp_path, corpus_dir, device: str | None) -> str:
    lines = [f'corpus = "{corpus_dir}"', 'splits = ["test"]']
    if device is not None:
        lines.append(f'device = "{device}"')
    lines += ["[[models]]", 'label = "gpt"', 'family = "gpt"', "n_layer = 1", "n_head = 2",
              "n_embd = 16", "block_size = 32", "[models.train]", "max_steps = 3",
              "batch_size = 2", "seq_len = 32", "eval_every = 3", "progress = false",
              "[[models]]", 'label = "kn2"', 'family = "ngram"', "order = 2",
              'tokenizer = "char"']
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_device_defaults_to_auto_and_is_checked_without_the_hardware():
    base = {"corpus": "brown", "models": [{"family": "ngram"}]}
    assert parse_config(base).device == "auto"
    assert parse_config({**base, "device": "cuda:1"}).device == "cuda:1"  # valid anywhere
    with pytest.raises(LmbenchError) as error:
        parse_config({**base, "device": "tpu"}, "run.toml")
    assert str(error.value).startswith("run.toml: device must be one of")
    with pytest.raises(LmbenchError, match="run.toml: 'device' must be str"):
        parse_config({**base, "device": 0}, "run.toml")


def test_train_score_and_generate_on_the_cpu_through_the_runner(tmp_path, corpus_dir, capsys):
    config = parse_config({"corpus": str(corpus_dir), "splits": ["valid", "test"],
                           "device": "cpu", "models": [GPT]})
    out = tmp_path / "out"
    [record] = run(config, out, save_models=True, log=lambda line: None)
    assert record.device == "cpu"
    assert record.train_log["steps"] == 3 and record.train_log["best_valid_nats"] is not None
    assert record.metrics["test"].perplexity > 1
    stored = json.loads((out / record.run_id / "result.json").read_text())
    assert stored["device"] == "cpu"
    model = lmbench.load_model(out / record.run_id / "model.npz").to("cpu")
    assert model.device == torch.device("cpu")
    ids = lmbench.generate(model, model.tokenizer.encode("the"), 8, seed=1)
    assert len(ids) == 8 and all(0 <= i < model.tokenizer.vocab_size for i in ids)
    model_file = str(out / record.run_id / "model.npz")
    assert main(["generate", model_file, "the", "--max-new-tokens", "5", "--device", "cpu"]) == 0
    assert main(["evaluate", model_file, "--corpus", str(corpus_dir), "--device", "cpu",
                 "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"perplexity"' in printed


def test_cli_run_device_flag_overrides_the_file(tmp_path, corpus_dir, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = _run_file(tmp_path, corpus_dir, "cuda")
    out = tmp_path / "out"
    assert main(["run", path, "--out", str(out)]) == 2  # no GPU: refused before training
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("lmbench: error: device 'cuda'") and not out.exists()
    assert main(["run", path, "--out", str(out), "--device", "cpu"]) == 0
    records = ResultStore(out).records()
    assert sorted(r.device for r in records) == ["cpu", "cpu"]  # the n-gram ran on the CPU too


def test_bad_device_flags_exit_2(tmp_path, corpus_dir, capsys):
    path = _run_file(tmp_path, corpus_dir, None)
    out = tmp_path / "out"
    assert main(["run", path, "--out", str(out), "--device", "gpu"]) == 2
    assert main(["generate", "nope.npz", "--device", "tpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("lmbench: error:") for line in lines)
    assert "got 'gpu'" in lines[0] and not out.exists()


def test_records_written_before_devices_still_load(tmp_path, corpus_dir):
    config = parse_config({"corpus": str(corpus_dir), "splits": ["test"], "device": "cpu",
                           "models": [{"family": "ngram", "order": 2, "tokenizer": "char"}]})
    [record] = run(config, tmp_path / "out", log=lambda line: None)
    old = record.to_dict()
    del old["device"]
    assert RunResult.from_dict(old).device is None
    assert RunResult.from_dict(record.to_dict()) == record
