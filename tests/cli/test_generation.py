"""``lmbench generate``: prints seeded text; every bad flag is one error line and exit status 2."""

from __future__ import annotations

import argparse

import pytest
import torch

import lmbench
from lmbench.cli import main as cli
from lmbench.cli.generation import add_commands
from lmbench.data.corpora import Corpus, _lines_split


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


@pytest.fixture(scope="module")
def rare_file(tmp_path_factory):
    """A word model whose greedy continuation of "the" is ``<unk>``: most nouns are seen once."""
    text = "".join(f"the w{i} sat on a mat .\n" for i in range(40))
    text += ("the cat sat on a rug .\n"
             "the dog ran to a rug .\n") * 5
    split = _lines_split("train", text)
    corpus = Corpus("rare", {"train": split, "valid": split, "test": split})
    path = tmp_path_factory.mktemp("model") / "rare.npz"
    lmbench.build_model("ngram", order=3, tokenizer="word").fit(corpus).save(path)
    return str(path)


def test_ban_unk_and_ban_words(main, capsys, rare_file):
    greedy = ("--temperature", "0", "--max-new-tokens", "12")
    assert _out(main, capsys, rare_file, "the", *greedy).startswith("<unk> sat on a mat .")
    banned = _out(main, capsys, rare_file, "the", *greedy, "--ban-unk")
    assert "<unk>" not in banned and banned.startswith("cat sat on a mat .")
    assert "<unk>" not in _out(main, capsys, rare_file, "the", "--beam", "3", "--ban-unk",
                               "--max-new-tokens", "12")
    no_sat = _out(main, capsys, rare_file, "the", *greedy, "--ban", "sat", "--ban", "<unk>")
    assert "sat" not in no_sat.split() and "<unk>" not in no_sat and "cat" in no_sat
    no_on_a = _out(main, capsys, rare_file, "the", *greedy, "--ban-unk", "--ban", "on a")
    assert "on a" not in no_on_a and "sat on" in no_on_a  # the sequence, not its words


def test_stop_strings_cut_the_text(main, capsys, model_file):
    args = (model_file, "the cat", "--temperature", "0", "--max-new-tokens", "30")
    free = _out(main, capsys, *args)
    assert " ." in free
    stopped = _out(main, capsys, *args, "--stop", " .", "--stop", "zebra")
    assert stopped == free[: free.index(" .")] + "\n"


def test_num_return_sequences_are_seeded_and_reproducible(main, capsys, model_file):
    args = (model_file, "the cat", "--max-new-tokens", "12", "--seed", "4")
    three = _out(main, capsys, *args, "--num-return-sequences", "3")
    assert _out(main, capsys, *args, "--num-return-sequences", "3") == three
    lines = three.splitlines()
    assert [line for line in lines if line.startswith("==")] == [
        "== 1/3 (seed 4) ==", "== 2/3 (seed 5) ==", "== 3/3 (seed 6) =="]
    for seed in (4, 5, 6):  # sample i is the text of seed --seed + i
        alone = _out(main, capsys, model_file, "the cat", "--max-new-tokens", "12",
                     "--seed", str(seed))
        assert f"== {seed - 3}/3 (seed {seed}) ==\n{alone}" in three
    beams = _out(main, capsys, model_file, "the cat", "--beam", "4", "--num-return-sequences",
                 "2", "--max-new-tokens", "8").splitlines()
    assert beams[0].startswith("== 1/2 (beam score") and len(beams) >= 4
    best = _out(main, capsys, model_file, "the cat", "--beam", "4", "--max-new-tokens", "8")
    assert beams[1] == best.splitlines()[0]


def test_echo_prints_the_prompt_as_typed(main, capsys, model_file):
    prompt = "The  Zyzzyva's cat"  # capitals, a double space, a word the model never saw
    args = ("--temperature", "0", "--max-new-tokens", "6")
    echoed = _out(main, capsys, model_file, prompt, *args, "--echo")
    plain = _out(main, capsys, model_file, prompt, *args)
    assert echoed == prompt + " " + plain and "<unk>" not in echoed.splitlines()[0][:len(prompt)]
    with_space = _out(main, capsys, model_file, prompt + " ", *args, "--echo")
    assert with_space == prompt + " " + plain


def test_help_shows_every_default(main, capsys):
    from lmbench.inference.sampling import SamplingConfig

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 100)" in text and "(default: mean-logprob)" in text
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    generate = parser._subparsers._group_actions[0].choices["generate"]
    helps = {action.option_strings[-1]: action.help for action in generate._actions
             if action.option_strings and action.dest != "help"}
    assert all("(default: " in text for text in helps.values()), helps
    defaults = SamplingConfig()  # the flags left out are SamplingConfig's defaults
    for flag, value in (("--temperature", defaults.temperature), ("--top-p", defaults.top_p),
                        ("--min-p", defaults.min_p), ("--no-repeat-ngram",
                                                      defaults.no_repeat_ngram_size),
                        ("--repetition-penalty", defaults.repetition_penalty)):
        assert f"(default: {value}" in helps[flag], flag
    assert defaults.top_k is None and "(default: off)" in helps["--top-k"]


@pytest.mark.parametrize("flags, message", [
    (["--num-return-sequences", "0"], "--num-return-sequences must be >= 1"),
    (["--num-return-sequences", "2", "--best-of", "3"], "--best-of prints one text"),
    (["--num-return-sequences", "3", "--beam", "2"], "needs at least as many beams"),
    (["--stop", ""], "--stop needs a non-empty text"),
    (["--ban", "zebra"], "not in the model's vocabulary"),
])
def test_bad_generation_option_flags_exit_2(main, capsys, model_file, flags, message):
    assert main(["generate", model_file, "the cat", *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and message in lines[0]
