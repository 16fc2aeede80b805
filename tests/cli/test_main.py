"""The command line end to end: a run writes records, mistakes exit 2 with one line and no files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmbench.cli.main import main


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


def test_only_runs_the_named_models_and_a_later_run_adds_the_rest(tmp_path, corpus_dir, capsys):
    models = "".join(f'[[models]]\nlabel = "kn{n}"\nfamily = "ngram"\norder = {n}\n'
                     for n in (1, 2, 3))
    config, out = _config(tmp_path, corpus_dir, models), tmp_path / "out"
    assert main(["run", config, "--out", str(out), "--only", "kn3, kn1"]) == 0
    done = sorted(json.loads(p.read_text())["model"] for p in out.glob("*/result.json"))
    assert done == ["kn1", "kn3"]
    capsys.readouterr()
    assert main(["run", config, "--out", str(out)]) == 0  # the rest, the two others skipped
    assert capsys.readouterr().err.count("skipped; --retrain") == 2
    assert len(list(out.glob("*/result.json"))) == 3
    for only, message in (("kn4", "has no model labelled 'kn4'; its labels: kn1, kn2, kn3"),
                          ("kn1,,kn2", "give model labels separated by commas")):
        assert main(["run", config, "--out", str(tmp_path / "o2"), "--only", only]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("lmbench: error: --only") and \
            message in error[0]
    assert not (tmp_path / "o2").exists()


def _walk(parser):
    """Every parser of the command line: the top one and each subcommand's, recursively."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_option_has_help_and_no_restructuredtext():
    import argparse

    from lmbench.cli.main import build_parser

    for parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, \
                f"{parser.prog}: {action.option_strings or action.dest} has no help"
        assert "``" not in parser.format_help(), parser.prog


@pytest.mark.parametrize("argv", [["--help"], ["data", "list", "--data-dir", "NOWHERE"],
                                  ["--version"]])
def test_start_up_imports_neither_torch_nor_matplotlib(argv, tmp_path):
    code = ("import sys\nfrom lmbench.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    argv = [str(tmp_path) if a == "NOWHERE" else a for a in argv]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=60)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
    if argv == ["--version"]:
        assert done.stdout.startswith("lmbench ")


def test_models_lists_allowed_values_and_train_keys(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smoothing='modified-kneser-ney' (mle | add-k | witten-bell | kneser-ney | " in out
    assert "positions='learned' (learned | rotary)" in out
    assert "tokenizer='word' (bpe | byte | char | word)" in out
    assert "train.*" in out and "warmup_steps=100" in out and "max_seconds=None" in out
    assert "``" not in out


def test_data_list_counts_words_as_the_readme_does(tmp_path, corpus_dir, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not counting the end-of-sentence </s>" in out and "missing" in out


def _saved_run(tmp_path, corpus_dir, capsys):
    out = tmp_path / "out"
    models = ('[[models]]\nlabel = "kn2"\nfamily = "ngram"\norder = 2\ntokenizer = "char"\n'
              '[[models]]\nlabel = "kn3"\nfamily = "ngram"\norder = 3\ntokenizer = "char"\n')
    assert main(["run", _config(tmp_path, corpus_dir, models), "--out", str(out),
                 "--save-models"]) == 0
    capsys.readouterr()
    return out, {json.loads(p.read_text())["model"]: p.parent for p in out.glob("*/result.json")}


def test_commands_take_the_same_references(tmp_path, corpus_dir, capsys, monkeypatch):
    out, folders = _saved_run(tmp_path, corpus_dir, capsys)
    monkeypatch.chdir(tmp_path)  # the run's corpus is the folder name "corpus", found from here
    by_label = ["kn2", "--results", str(out)]
    by_id = [folders["kn2"].name, "--results", str(out)]
    for reference in (by_label, by_id, [str(folders["kn2"])], [str(folders["kn2"] / "model.npz")]):
        assert main(["evaluate", *reference, "--json"]) == 0  # the run's own corpus by default
        assert json.loads(capsys.readouterr().out)["model"] == "ngram"
    assert main(["compare", "kn2", "kn3", "--results", str(out)]) == 0
    assert "A = " + folders["kn2"].name in capsys.readouterr().out
    assert main(["compare", str(folders["kn2"]), folders["kn3"].name, "--results", str(out),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_b"] == folders["kn3"].name
    assert main(["generate", "kn2", "the", "--results", str(out), "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["bench", *by_id, "--quick", "--train-steps", "0"]) == 0
    assert (folders["kn2"] / "throughput.json").is_file()  # the sidecar beside its own run
    capsys.readouterr()
    assert main(["evaluate", "kn9", "--results", str(out)]) == 2
    assert "no run id or label 'kn9'" in capsys.readouterr().err


def test_a_json_file_is_not_a_model_and_a_label_must_name_one_run(tmp_path, corpus_dir, capsys):
    out, folders = _saved_run(tmp_path, corpus_dir, capsys)
    stray = tmp_path / "x.json"
    stray.write_text("{}")
    for command in (["evaluate", str(stray), "--corpus", str(corpus_dir)],
                    ["generate", str(stray), "the"], ["bench", str(stray), "--quick"]):
        assert main(command) == 2
        error = capsys.readouterr().err.strip()
        assert error == (f"lmbench: error: {stray} is a JSON file, not a saved model (.npz) or "
                         ".arpa"), error
    (tmp_path / "junk.npz").write_text("{}")
    assert main(["evaluate", str(tmp_path / "junk.npz"), "--corpus", str(corpus_dir)]) == 2
    assert "pickle" not in capsys.readouterr().err  # no hint to unpickle unsafely
    config = _config(tmp_path, corpus_dir, '[[models]]\nlabel = "kn2"\nfamily = "ngram"\n'
                     'order = 2\ntokenizer = "char"\n')
    assert main(["run", config, "--out", str(out), "--retrain"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "kn2", "--results", str(out)]) == 2
    assert "label 'kn2' names 2 runs" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    from run_factory import fake_run

    from lmbench.storage.store import ResultStore

    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a"))
    store.put(fake_run("tiny-b", nats_per_token=2.5))
    command = (f"{sys.executable} -m lmbench compare tiny-a tiny-b --results {tmp_path} --json "
               "| head -c 1")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout == "{" and "Traceback" not in done.stderr and "BrokenPipe" not in \
        done.stderr, done.stderr
