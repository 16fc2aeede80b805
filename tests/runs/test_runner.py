"""The runner never throws finished training away and never leaves ``--out``: names and the
output folder are checked before training, and the record is written before the model."""

from __future__ import annotations

import errno

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.core.names import SAFE_NAME
from lmbench.models.ngram import NGramLM
from lmbench.runs.config import parse_config
from lmbench.runs.runner import run
from lmbench.storage.store import ResultStore


def _corpus_dir(parent, tiny_corpus, name):
    folder = parent / name
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(tiny_corpus.split(split).text)
    return folder


def _config(corpus, label="kn2"):
    return parse_config({"corpus": str(corpus), "splits": ["test"],
                         "models": [{"label": label, "family": "ngram", "order": 2}]})


def test_unusual_corpus_and_label_names_still_write_the_record(tmp_path, tiny_corpus):
    corpus = _corpus_dir(tmp_path, tiny_corpus, "my corpus")
    out = tmp_path / "out"
    [result] = run(_config(corpus, "gpt-naïve"), out, save_models=True, log=lambda _: None)
    assert SAFE_NAME.fullmatch(result.run_id) and result.model == "gpt-naïve"
    assert (out / result.run_id / "result.json").is_file()
    assert (out / result.run_id / "model.npz").is_file()
    assert ResultStore(out).records()[0].corpus == "my corpus"


def test_a_path_label_is_refused_when_the_run_file_is_read(tmp_path):
    with pytest.raises(LmbenchError, match="label 'x/../../elsewhere' contains a path sep"):
        _config(tmp_path, "x/../../elsewhere")


def test_an_unwritable_output_folder_fails_before_training(tmp_path, tiny_corpus, monkeypatch):
    corpus = _corpus_dir(tmp_path, tiny_corpus, "c")
    (tmp_path / "file").write_text("a regular file, not a folder")

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the output folder cannot be written")

    monkeypatch.setattr(NGramLM, "fit", no_training)
    with pytest.raises(LmbenchError) as error:
        run(_config(corpus), tmp_path / "file" / "out", log=lambda _: None)
    assert "the output folder cannot be written" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_failing_model_save_keeps_the_record(tmp_path, tiny_corpus, monkeypatch):
    corpus = _corpus_dir(tmp_path, tiny_corpus, "c")

    def disk_full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(NGramLM, "save", disk_full)
    out = tmp_path / "out"
    with pytest.raises(LmbenchError) as error:
        run(_config(corpus), out, save_models=True, log=lambda _: None)
    message = str(error.value)
    assert "No space left on device" in message and "record is written" in message
    assert "\n" not in message
    assert len(ResultStore(out).records()) == 1  # the training is not lost


def test_the_output_probe_leaves_no_folders_behind(tmp_path):
    from lmbench.core.io import check_writable

    check_writable(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
