"""``lmbench run`` end to end on hostile but honest run files: every mistake is one line and exit
status 2 before training, nothing is written outside (or, on error, inside) ``--out``."""

from __future__ import annotations

import pytest

from lmbench.cli.main import main


@pytest.fixture
def corpus_dir(write_corpus_dir):
    return write_corpus_dir("my corpus")


def _run_file(tmp_path, corpus_dir, model: str):
    path = tmp_path / "run.toml"
    path.write_text(f'corpus = "{corpus_dir}"\nsplits = ["test"]\n[[models]]\n{model}')
    return str(path)


@pytest.mark.parametrize("model, message", [
    ('label = "x/../../elsewhere"\nfamily = "ngram"\n', "contains a path separator"),
    ('label = ".."\nfamily = "ngram"\n', "contains '..'"),
    ('label = "a\\u0007b"\nfamily = "ngram"\n', "control character"),
    ('family = "ngram"\ntokenizer_options = {unk_max_cont = 1}\n',
     "did you mean 'unk_max_count'?"),
    ('family = "gpt"\ntrain = {max_steps = -5}\n', "train.max_steps must be > 0"),
    ('family = "gpt"\ntrain = {learning_rate = nan}\n', "train.learning_rate must be > 0"),
    ('family = "gpt"\ntrain = {seed = 4294967296}\n', "train.seed must be in"),
    ('family = "lstm"\nhidden_dim = 1000000\n', "LMBENCH_MAX_PARAMS"),
])
def test_mistakes_exit_2_before_training_and_write_nothing(tmp_path, corpus_dir, capsys, model,
                                                           message):
    out = tmp_path / "out"
    assert main(["run", _run_file(tmp_path, corpus_dir, model), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmbench: error:") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my corpus", "run.toml"]


def test_an_output_folder_that_cannot_be_made_is_refused_before_training(tmp_path, corpus_dir,
                                                                          capsys):
    (tmp_path / "taken").write_text("a file")
    run_file = _run_file(tmp_path, corpus_dir, 'label = "kn2"\nfamily = "ngram"\norder = 2\n')
    assert main(["run", run_file, "--out", str(tmp_path / "taken" / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("lmbench: error:") and "cannot be written" in lines[-1]
    assert not any("fitting" in line for line in lines)  # before the first model trains
