"""Warm starts (fine-tuning): a model saved after training on corpus A, fitted on corpus B from
its weights, starts at the saved model's loss on B and improves; the tokenizer is inherited and
its <unk> count recorded; another family or architecture is refused. Also the periodic progress
line and the terminal bar's budget."""

from __future__ import annotations

import json
import sys

import pytest

import lmbench
import lmbench.training.trainer as train_module
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.runs.config import parse_config
from lmbench.runs.runner import run

TRAIN = {"max_steps": 30, "batch_size": 4, "seq_len": 16, "eval_every": 10, "warmup_steps": 2,
         "learning_rate": 1e-2, "eval_tokens": 400, "progress": False, "bf16": False}
TEXT_A = "the cat sat on the mat .\nthe dog sat on the log .\na cat saw a dog .\n" * 12
TEXT_B = "we zip to the zoo .\nthe zoo is on the hill .\nwe saw the zebra .\n" * 12


def _corpus(tmp_path, name, text):
    folder = tmp_path / name
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(text)
    return lmbench.load_corpus(folder)


def _lstm(**train):
    return lmbench.build_model("lstm", tokenizer="char", embed_dim=16, hidden_dim=16, n_layer=1,
                               train={**TRAIN, **train})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("warm")
    model = _lstm().fit(_corpus(tmp_path, "a", TEXT_A))
    model.save(tmp_path / "a.npz")
    return tmp_path / "a.npz", model


def test_a_warm_start_begins_at_the_saved_loss_and_improves(saved, tmp_path):
    path, base = saved
    corpus_b = _corpus(tmp_path, "b", TEXT_B)
    valid = base.tokenizer.encode_split(corpus_b.split("valid"))[:TRAIN["eval_tokens"]]
    start = float(score_stream(base, valid, EvalConfig(progress=False, n_bootstrap=1)).mean())
    tuned = _lstm().fit(corpus_b, init=path)
    log = tuned.train_log_
    assert log.curve[0]["step"] == 0 and log.curve[0]["valid_loss"] == pytest.approx(start,
                                                                                      rel=1e-6)
    assert log.best_valid_nats < 0.9 * start
    # the tokenizer is A's: B's characters outside it (z, w, ...) are <unk>
    assert tuned.tokenizer.token_strings() == base.tokenizer.token_strings()
    train_ids = tuned.tokenizer.encode_split(corpus_b.train)
    unseen = sum(c not in TEXT_A for c in corpus_b.train.text)
    assert log.n_train_unk == unseen > corpus_b.train.text.count("z") > 0
    assert log.train_unk_rate == pytest.approx(log.n_train_unk / len(train_ids))
    assert log.init_from == str(path) and tuned.training_log()["n_train_unk"] == log.n_train_unk
    scratch = _lstm().fit(corpus_b)
    assert scratch.train_log_.curve[0]["step"] == 10 and scratch.train_log_.init_from is None


def test_a_warm_start_needs_the_same_family_and_architecture(saved, tmp_path):
    path, _ = saved
    corpus = _corpus(tmp_path, "b", TEXT_B)
    gpt = lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=16, train=TRAIN)
    with pytest.raises(LmbenchError, match=r"a\.npz: init key 'family' is 'lstm' there and 'gpt'"):
        gpt.fit(corpus, init=path)
    wider = lmbench.build_model("lstm", tokenizer="char", embed_dim=16, hidden_dim=24, n_layer=1,
                                train=TRAIN)
    with pytest.raises(LmbenchError, match=r"a\.npz: config key 'hidden_dim' is 16 there and 24"):
        wider.fit(corpus, init=path)


def test_a_run_file_warm_starts_a_model(saved, tmp_path):
    path, _ = saved
    _corpus(tmp_path, "b", TEXT_B)
    table = {"family": "lstm", "label": "tuned", "init": str(path), "tokenizer": "char",
             "embed_dim": 16, "hidden_dim": 16, "n_layer": 1,
             "train": {**TRAIN, "max_steps": 4, "eval_every": 2}}
    config = parse_config({"corpus": str(tmp_path / "b"), "splits": ["test"], "models": [table]})
    (result,) = run(config, tmp_path / "out", log=lambda line: None)
    record = json.loads(next((tmp_path / "out").glob("*/result.json")).read_text())
    assert result.train_log["init_from"] == str(path) and record["train_log"]["n_train_unk"] > 0
    for bad, message in [({**table, "init": 3}, "'init' must be a string"),
                         ({**table, "init": str(tmp_path / "none.npz")}, "saved model not found"),
                         ({"family": "ngram", "order": 2, "init": str(path)},
                          "'init' needs a neural family")]:
        with pytest.raises(LmbenchError, match="run.toml") as error:
            parse_config({"corpus": "x", "models": [bad]}, "run.toml")
        assert message in str(error.value)


def test_progress_lines_off_a_terminal(tiny_corpus, capsys):
    _lstm(max_steps=4, eval_every=2, progress=True).fit(tiny_corpus)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" tokens")[0] for line in lines] == ["training: step 2", "training: step 4"]
    assert "loss " in lines[0] and "valid " in lines[0] and "tok/s " in lines[0]
    _lstm(max_steps=4, eval_every=2).fit(tiny_corpus)  # progress = false
    assert capsys.readouterr().err == ""


def test_the_bar_counts_the_binding_budget(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    config = train_module.TrainConfig(max_steps=1000, max_tokens=640)
    progress = train_module._Progress(config, train_module._limits(config, None))
    log = train_module.TrainLog(steps=5, tokens=320, seconds=1.0)
    progress.step(log, train_module._progress(progress.limits, 5, 320, 1.0)[1])
    assert (progress.bar.total, progress.bar.n, progress.bar.unit) == (640, 320, "tok")
    progress.close()


def test_progress_lines_between_evaluations_when_they_are_far_apart(tiny_corpus, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(train_module._Progress, "LINE_EVERY_S", 0.0)  # every step is "too long"
    _lstm(max_steps=3, eval_every=100, progress=True).fit(tiny_corpus)
    lines = capsys.readouterr().err.strip().splitlines()
    timed = [line for line in lines if "of max_steps = 3" in line]
    assert [line.split(" tokens")[0] for line in timed] == ["training: step 1",
                                                            "training: step 2",
                                                            "training: step 3"]
    assert "(33% of max_steps = 3)" in timed[0] and "tok/s " in timed[0]
