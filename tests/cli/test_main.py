"""The command line end to end: a run writes records, mistakes exit 2 with one line and no files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmbench.cli.main import main


@pytest.fixture
def corpus_dir(tmp_path, tiny_corpus):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(tiny_corpus.split(split).text)
    return folder


def _config(tmp_path, corpus_dir, models: str) -> str:
    path = tmp_path / "run.toml"
    path.write_text(f'corpus = "{corpus_dir}"\nsplits = ["valid", "test"]\n{models}')
    return str(path)


def test_run_writes_one_record_per_model(tmp_path, corpus_dir, capsys):
    models = ('[[models]]\nlabel = "kn3"\nfamily = "ngram"\norder = 3\n'
              '[[models]]\nlabel = "char4"\nfamily = "ngram"\norder = 4\ntokenizer = "char"\n')
    out = tmp_path / "out"
    assert main(["run", _config(tmp_path, corpus_dir, models), "--out", str(out),
                 "--save-models"]) == 0
    records = sorted(out.glob("*/result.json"))
    assert len(records) == 2
    record = json.loads(records[0].read_text())
    assert {"model", "corpus", "config", "metrics"} <= record.keys()
    for split in ("valid", "test"):
        assert {"perplexity", "bits_per_byte", "nll_nats", "n_tokens", "n_bytes"} <= \
            record["metrics"][split].keys()
    assert "kn3" in capsys.readouterr().out
    assert main(["leaderboard", str(out)]) == 0
    model_file = next(out.glob("*/model.npz"))
    assert main(["evaluate", str(model_file), "--corpus", str(corpus_dir), "--json"]) == 0


@pytest.mark.parametrize("models, message", [
    ('[[models]]\nfamily = "ngram"\norder = 0\n', "order must be an integer >= 1"),
    ('[[models]]\nfamily = "ngram"\nsmoothing = "wit-bell"\n', "did you mean 'witten-bell'"),
    ('[[models]]\nfamily = "ngram"\norderr = 2\n', "unknown key 'orderr'"),
])
def test_bad_runs_exit_2_with_one_line_and_write_nothing(tmp_path, corpus_dir, capsys, models,
                                                         message):
    out = tmp_path / "out"
    good = '[[models]]\nlabel = "first"\nfamily = "ngram"\norder = 2\n'
    assert main(["run", _config(tmp_path, corpus_dir, good + models), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("lmbench: error:") and message in error[-1]
    assert not out.exists()  # the whole file is checked before the first model trains


def test_bad_corpus_and_model_files(tmp_path, corpus_dir, capsys):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1") * 5)
    assert main(["evaluate", str(tmp_path / "nope.npz"), "--corpus", "brown"]) == 2
    (tmp_path / "junk.npz").write_text("junk")
    assert main(["evaluate", str(tmp_path / "junk.npz"), "--corpus", "brown"]) == 2
    models = '[[models]]\nfamily = "ngram"\n'
    path = tmp_path / "r.toml"
    path.write_text(f'corpus = "{tmp_path / "latin1.txt"}"\n{models}')
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    path.write_text(f'corpus = "wikitxt2"\n{models}')
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("lmbench: error:") for line in lines)
    assert "not UTF-8" in lines[2] and "did you mean 'wikitext2'" in lines[3]
    assert not (tmp_path / "o").exists()


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "lmbench", "models"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "ngram" in done.stdout


def test_a_rerun_skips_finished_models_and_checkpoints_are_removed(tmp_path, corpus_dir, capsys):
    models = ('[[models]]\nlabel = "kn2"\nfamily = "ngram"\norder = 2\n'
              '[[models]]\nlabel = "tiny-gpt"\nfamily = "gpt"\nn_layer = 1\nn_head = 1\n'
              'n_embd = 8\nblock_size = 16\ntokenizer = "char"\ntrain = { max_steps = 3, '
              'warmup_steps = 10, batch_size = 2, seq_len = 8, eval_every = 2, progress = false, '
              'checkpoint_every = 1 }\n')
    config, out = _config(tmp_path, corpus_dir, models), tmp_path / "out"
    assert main(["run", config, "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert not (out / "checkpoints").exists()  # removed once the records were written
    warnings = [line for line in first.err.splitlines() if "undertrained" in line]
    assert len(warnings) == 1 and warnings[0].startswith("lmbench: warning: tiny-gpt is "
                                                         "undertrained: 3 steps, fewer than its 10")
    assert "tiny-gpt ⚠ undertrained" in first.out
    assert main(["run", config, "--out", str(out)]) == 0
    second = capsys.readouterr()
    assert len(list(out.glob("*/result.json"))) == 2  # nothing written twice
    assert "kn2: already in " in second.err and "skipped; --retrain to run again" in second.err
    assert "kn2" in second.out and "tiny-gpt" in second.out  # the summary still lists both
    assert main(["run", config, "--out", str(out), "--retrain", "--keep-checkpoints"]) == 0
    assert len(list(out.glob("*/result.json"))) == 4
    assert (out / "checkpoints" / "corpus-tiny-gpt" / "checkpoint.pt").is_file()
    changed = models.replace("order = 2", "order = 3")  # another config: not the same entry
    assert main(["run", _config(tmp_path, corpus_dir, changed), "--out", str(out)]) == 0
    assert len(list(out.glob("*/result.json"))) == 5
