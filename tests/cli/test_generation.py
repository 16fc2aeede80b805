"""``lmbench generate``: prints seeded text; every bad flag is one error line and exit status 2."""

from __future__ import annotations

import argparse

import pytest
import torch

import lmbench
from lmbench.cli import main as cli
from lmbench.cli.generation import add_commands


@pytest.fixture
def main(monkeypatch):
    """``lmbench.cli.main.main`` with ``generate`` registered (a no-op once cli.py wires it in)."""
    build = cli.build_parser

    def build_with_generate() -> argparse.ArgumentParser:
        parser = build()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "generate" not in commands.choices:
            add_commands(commands)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_with_generate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; more threads only spin against other processes
    yield cli.main
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_corpus):
    path = tmp_path_factory.mktemp("model") / "kn3.npz"
    lmbench.build_model("ngram", order=3).fit(tiny_corpus).save(path)
    return str(path)


def _out(main, capsys, *argv) -> str:
    assert main(["generate", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_generate_prints_seeded_text(main, capsys, model_file):
    args = (model_file, "the cat", "--max-new-tokens", "12", "--seed")
    first = _out(main, capsys, *args, "3")
    assert len(first.split()) >= 6
    assert _out(main, capsys, *args, "3") == first
    others = {_out(main, capsys, *args, str(seed)) for seed in range(4, 8)}
    assert others - {first}  # another seed, another text


def test_decoders_and_flags(main, capsys, model_file, tmp_path):
    greedy = _out(main, capsys, model_file, "a dog", "--temperature", "0", "--max-new-tokens", "9")
    assert _out(main, capsys, model_file, "a dog", "--top-k", "1", "--max-new-tokens", "9",
                "--seed", "5") == greedy
    assert _out(main, capsys, model_file, "a dog", "--beam", "1", "--max-new-tokens", "9") == greedy
    assert _out(main, capsys, model_file, "a dog", "--beam", "3", "--no-repeat-ngram", "2",
                "--max-new-tokens", "9").strip()
    assert _out(main, capsys, model_file, "a dog", "--best-of", "3", "--top-p", "0.9",
                "--repetition-penalty", "1.2", "--min-p", "0.05", "--max-new-tokens", "9").strip()
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the farmer")
    from_file = _out(main, capsys, model_file, "--prompt-file", str(prompt), "--temperature", "0",
                     "--max-new-tokens", "5")
    echoed = _out(main, capsys, model_file, "the farmer", "--temperature", "0",
                  "--max-new-tokens", "5", "--echo")
    assert echoed.startswith("the farmer ") and echoed.endswith(from_file)


@pytest.mark.parametrize("flags, message", [
    (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--top-k", "0"], "top_k must be an integer >= 1"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--min-p", "2"], "min_p must be in [0, 1]"),
    (["--repetition-penalty", "0"], "repetition_penalty must be > 0"),
    (["--no-repeat-ngram", "-2"], "no_repeat_ngram_size"),
    (["--max-new-tokens", "-1"], "--max-new-tokens must be >= 0"),
    (["--beam", "0"], "--beam must be >= 1"),
    (["--best-of", "0"], "--best-of must be >= 1"),
    (["--beam", "2", "--best-of", "2"], "choose one"),
    (["--beam", "2", "--temperature", "0.7", "--top-p", "0.9"], "--temperature, --top-p only"),
    (["--prompt-file", "prompt.txt"], "not both"),
])
def test_bad_flags_exit_2_with_one_line(main, capsys, model_file, flags, message):
    assert main(["generate", model_file, "the cat", *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("lmbench: error:") and message in lines[0]


def test_bad_files_exit_2(main, capsys, tmp_path, model_file):
    assert main(["generate", str(tmp_path / "missing.npz"), "hi"]) == 2
    assert main(["generate", model_file, "--prompt-file", str(tmp_path / "missing.txt")]) == 2
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert main(["generate", model_file, "--prompt-file", str(tmp_path / "latin1.txt")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("lmbench: error:") for line in lines)
    assert "model file not found" in lines[0] and "not UTF-8" in lines[2]


def test_a_malformed_number_is_an_argparse_error(main, capsys, model_file):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", model_file, "--top-k", "many"])
    assert exit_info.value.code == 2 and "invalid int value" in capsys.readouterr().err
