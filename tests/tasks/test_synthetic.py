"""Synthetic reasoning problems: seeded determinism, correct answers and chains, lengths, the
verifier, and one-line errors for bad options."""

from __future__ import annotations

import re

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.tasks import synthetic
from lmbench.tasks.synthetic import (
    GENERATORS,
    Problem,
    extract_answer,
    generate,
    normalize_answer,
)

NAMES = ("Elon", "Musk", "Larry", "Page", "Sergey", "Brin", "Ada", "Alan", "Grace", "Linus")
WORD_OPTIONS = {"last-letter": {"words": NAMES}, "coin-flip": {"words": NAMES},
                "sorting": {"kind": "words", "words": NAMES}}


@pytest.mark.parametrize("name", GENERATORS.names())
def test_same_seed_same_problems_other_seed_others(name):
    options = WORD_OPTIONS.get(name, {})
    first = generate(name, 20, seed=3, **options)
    assert first == generate(name, 20, seed=3, **options)
    assert first != generate(name, 20, seed=4, **options)
    assert len(first) == 20 and all(isinstance(p, Problem) for p in first)
    assert generate(name, 0, seed=3, **options) == ()


@pytest.mark.parametrize("name", GENERATORS.names())
def test_chain_ends_with_the_answer_and_verifies(name):
    for problem in generate(name, 30, seed=0, **WORD_OPTIONS.get(name, {})):
        assert problem.chain.endswith(f"The answer is {problem.answer}.")
        assert problem.verify(problem.chain)
        assert problem.verify(f" {problem.answer}\nQ: next question")
        assert not problem.verify("The answer is " + problem.answer + "x.")


@pytest.mark.parametrize("n_digits", [1, 3, 5])
def test_addition_answers_lengths_and_scratchpad(n_digits):
    for problem in synthetic.addition(50, seed=1, n_digits=n_digits):
        a, b = map(int, re.fullmatch(r"What is (\d+) plus (\d+)\?", problem.question).groups())
        assert len(str(a)) == len(str(b)) == n_digits
        assert int(problem.answer) == a + b
        assert problem.target == problem.answer
        columns = [s for s in problem.steps if not s.startswith("Write the final carry")]
        assert len(columns) == n_digits
        written = "".join(re.search(r"write (\d)", s).group(1) for s in columns)[::-1]
        final = re.findall(r"final carry (\d)", " ".join(problem.steps))
        assert "".join(final) + written == problem.answer.zfill(len(written))
    scratch = synthetic.addition(5, seed=1, n_digits=3, form="scratchpad")
    direct = synthetic.addition(5, seed=1, n_digits=3)
    assert [p.question for p in scratch] == [p.question for p in direct]
    assert all(p.target == p.chain for p in scratch)


def test_addition_carry_steps_worked_example():
    steps = synthetic._addition_steps(157, 286)
    assert steps == ("7 + 6 + 0 = 13, write 3, carry 1.", "5 + 8 + 1 = 14, write 4, carry 1.",
                     "1 + 2 + 1 = 4, write 4, carry 0.")
    assert synthetic._addition_steps(95, 7)[-1] == "Write the final carry 1."


def test_reversal_and_sorting():
    for problem in synthetic.reversal(20, seed=2, n_letters=7):
        word = re.fullmatch(r'Reverse the letters of "([a-z]+)"\.', problem.question).group(1)
        assert len(word) == 7 and problem.answer == word[::-1] and len(problem.steps) == 7
    for problem in synthetic.sorting(20, seed=2, n_items=6):
        items = problem.question.removeprefix("Sort in ascending order: ").rstrip(".").split()
        assert len(items) == 6 and problem.answer.split() == sorted(items)
    for problem in synthetic.sorting(20, seed=2, n_items=4, kind="words", words=NAMES):
        items = problem.question.removeprefix("Sort in ascending order: ").rstrip(".").split()
        assert len(set(items)) == 4 and problem.answer.split() == sorted(items)


def test_last_letter_matches_wei_et_al_exemplar_wording():
    for problem in synthetic.last_letter(20, seed=5, n_words=3, words=NAMES):
        names = re.search(r'words in "([^"]+)"', problem.question).group(1).split()
        assert len(names) == len(set(names)) == 3
        assert problem.answer == "".join(name[-1] for name in names)
        assert problem.steps[0] == f'The last letter of "{names[0]}" is "{names[0][-1]}".'
        assert problem.steps[-1] == f'Concatenating them is "{problem.answer}".'


def test_coin_flip_answer_is_parity_of_flips():
    answers = set()
    for problem in synthetic.coin_flip(40, seed=6, n_people=4, words=NAMES):
        n_flips = len(re.findall(r"\w+ flips the coin\.", problem.question))
        n_not = problem.question.count("does not flip")
        assert n_flips + n_not == 4 and len(problem.steps) == 4
        assert problem.answer == ("yes" if n_flips % 2 == 0 else "no")
        answers.add(problem.answer)
    assert answers == {"yes", "no"}


def test_multistep_expression_evaluates_to_the_answer():
    for problem in synthetic.multistep(40, seed=7, n_steps=4):
        expression = re.fullmatch(r"What is (.+)\?", problem.question).group(1)
        assert re.fullmatch(r"[\d()+\-* ]+", expression)
        assert eval(expression) == int(problem.answer)  # noqa: S307 - digits and + - * only
        assert len(problem.steps) == 4 and problem.steps[-1].endswith(f"= {problem.answer}.")


def test_normalize_and_extract():
    assert normalize_answer('  "NK". ') == "nk"
    assert normalize_answer("1,234") == "1234"
    assert normalize_answer("a   b\tc") == "a b c"
    assert extract_answer("7 + 6 = 13. The answer is 13. Q: What is") == "13"
    assert extract_answer("so the answer is nk.\n\nQ:") == "nk"
    assert extract_answer("The answer is 1. Then the answer is 2.") == "2"
    assert extract_answer("\n 579\nQ: What is 1 plus 2?") == "579"
    assert extract_answer("") == ""


def test_bad_options_raise_one_line_errors():
    with pytest.raises(LmbenchError, match="n_digits must be a whole number in"):
        generate("addition", 3, seed=0, n_digits=0)
    with pytest.raises(LmbenchError, match="form must be one of"):
        generate("addition", 3, seed=0, form="chain")
    with pytest.raises(LmbenchError, match="unexpected keyword"):
        generate("addition", 3, seed=0, n_words=2)
    with pytest.raises(LmbenchError, match="unknown synthetic task 'adition'.*addition"):
        generate("adition", 3, seed=0)
    with pytest.raises(LmbenchError, match="n must be a whole number"):
        generate("reversal", -1, seed=0)
    with pytest.raises(LmbenchError, match="words has 2 entries, need >= 3"):
        generate("last-letter", 1, seed=0, n_words=3, words=("Ada", "Alan"))


def test_default_name_and_word_lists_come_from_local_data(data_dir, monkeypatch):
    monkeypatch.setenv("LMBENCH_DATA_DIR", str(data_dir))
    names, words = synthetic.name_list(), synthetic.word_list()
    assert len(names) >= 500 and list(names) == sorted(names)
    assert all(n[0].isupper() and n.isalpha() for n in names)
    assert len(words) >= 1000 and all(w.islower() and 3 <= len(w) <= 8 for w in words)
    problems = synthetic.last_letter(10, seed=0)
    assert problems == synthetic.last_letter(10, seed=0, words=names)
    assert len(synthetic.sorting(3, seed=0, kind="words")) == 3
