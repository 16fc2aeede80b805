"""Generation lengths, beam widths, best-of-N and bootstrap counts have documented upper limits:
named in each option's help, checked where the option is validated, before any work."""

from __future__ import annotations

import pytest

import lmbench
from lmbench.cli.main import build_parser, main
from lmbench.core.errors import LmbenchError
from lmbench.core.limits import (
    MAX_BEAM_WIDTH,
    MAX_BEST_OF,
    MAX_COMPARE_BOOTSTRAP,
    MAX_NEW_TOKENS,
)
from lmbench.evaluation.generation_bench import Strategy
from lmbench.evaluation.significance import compare
from lmbench.inference.decoding import beam_search, best_of_n, sequence_logprob
from lmbench.inference.sampling import generate


@pytest.mark.parametrize("flags, message", [
    (["--max-new-tokens", str(MAX_NEW_TOKENS + 1)], "--max-new-tokens must be <= 100,000"),
    (["--beam", str(MAX_BEAM_WIDTH + 1)], "--beam must be <= 256"),
    (["--best-of", str(MAX_BEST_OF + 1)], "--best-of must be <= 1,024"),
])
def test_generate_refuses_values_above_the_limit_before_loading(tmp_path, capsys, flags,
                                                                 message):
    missing = tmp_path / "not-loaded.npz"  # the flags are checked before the model is read
    assert main(["generate", str(missing), "x", *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_the_limits_are_in_the_help(capsys):
    for command, words in ((["generate", "--help"], ["at most 100,000", "at most 256",
                                                       "at most 1024"]),
                           (["compare", "--help"], ["at most 1,000,000"]),
                           (["run", "--help"], ["LMBENCH_MAX_PARAMS"])):
        with pytest.raises(SystemExit):
            build_parser().parse_args(command)
        shown = " ".join(capsys.readouterr().out.split())
        assert all(word in shown for word in words), (command, shown)


def test_the_python_api_checks_the_same_limits(tiny_corpus):
    model = lmbench.build_model("ngram", order=2).fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="max_new_tokens must be <= 100,000"):
        generate(model, [], MAX_NEW_TOKENS + 1)
    with pytest.raises(LmbenchError, match="beam_width must be <= 256"):
        beam_search(model, [], 3, MAX_BEAM_WIDTH + 1)
    with pytest.raises(LmbenchError, match="best-of-N n must be <= 1,024"):
        best_of_n(model, [], MAX_BEST_OF + 1, sequence_logprob, max_new_tokens=3)
    with pytest.raises(LmbenchError, match="beam_width must be <= 256"):
        Strategy("wide", beam_width=MAX_BEAM_WIDTH + 1)
    with pytest.raises(LmbenchError, match="n_bootstrap must be <= 1,000,000"):
        compare("a", "b", n_bootstrap=MAX_COMPARE_BOOTSTRAP + 1)
    with pytest.raises(LmbenchError, match="seed must be >= 0"):
        compare("a", "b", seed=-1)


def test_bench_generation_length_is_bounded():
    from lmbench.evaluation.throughput import BenchConfig

    with pytest.raises(LmbenchError, match="bench new_tokens must be <= 100,000"):
        BenchConfig(new_tokens=MAX_NEW_TOKENS + 1)


def test_generating_from_a_nan_model_names_the_model(tiny_corpus):
    import torch

    from lmbench.adapters import FunctionLM

    broken = FunctionLM(lambda ids: torch.full((*ids.shape, 257), float("nan")), "byte",
                        name="nan-fn").fit(tiny_corpus)
    with pytest.raises(LmbenchError, match="model 'nan-fn' returned NaN or \\+inf"):
        generate(broken, [104, 105], 3)
    with pytest.raises(LmbenchError, match="model 'nan-fn' returned NaN or \\+inf"):
        beam_search(broken, [104], 3, 2)
