"""Deterministic, seeded generators of synthetic reasoning problems with verifiable answers.

Each generator draws ``n`` problems from ``numpy.random.default_rng(seed)``: the same name, ``n``,
seed and options give the same problems on every machine. A problem is a frozen
:class:`Problem`: the question, the gold answer, the worked chain (``steps``, one sentence each)
and a verifier (:meth:`Problem.verify`: exact match after :func:`normalize_answer`, on the answer
:func:`extract_answer` takes from a model's output). The chain always ends with the sentence
``The answer is X.``, the trigger that answer extraction looks for.

Tasks, with their question / answer formats (``[...]`` marks a part that varies):

=====================  ========================================================================
``addition``           Brown et al. 2020 (GPT-3, section 3.9.1): ``What is 48 plus 76?`` ->
                       ``124``. Operands have exactly ``n_digits`` digits (Brown et al. draw
                       from [0, 10^n), 90% of which are n-digit; a fixed length keeps length
                       the controlled variable for out-of-distribution splits). The chain is a
                       scratchpad in the spirit of Nye et al. 2021, one step per digit from the
                       ones column up, with the carry: ``8 + 6 + 0 = 14, write 4, carry 1.``
                       ... ``Write the final carry 1.`` ``form="scratchpad"`` makes the chain
                       the target (:attr:`Problem.target`); ``form="direct"`` the bare number.
``reversal``           ``Reverse the letters of "kqzvd".`` -> ``dvzqk``; random lowercase
                       letters, ``n_letters`` long; chain ``Letter 1 from the end is "d".`` ...
``sorting``            ``Sort in ascending order: 3 9 1 4.`` -> ``1 3 4 9``; ``kind="digits"``
                       (0-9, repeats allowed) or ``kind="words"`` (distinct lowercase words,
                       alphabetical order); chain: selection sort, ``The smallest remaining is
                       1; sorted so far: 1.`` ...
``last-letter``        Wei et al. 2022 (chain of thought, section 5): ``Take the last letters of
                       the words in "Elon Musk" and concatenate them.`` -> ``nk``; ``n_words``
                       names; chain ``The last letter of "Elon" is "n".`` ... ``Concatenating
                       them is "nk".`` (Wei et al.'s exemplar wording).
``coin-flip``          Wei et al. 2022: ``A coin is heads up. Ka flips the coin. Sherrie does
                       not flip the coin. Is the coin still heads up?`` -> ``yes`` / ``no``;
                       ``n_people`` people, each flips with probability 1/2; chain tracks the
                       side after each person: ``Ka flips the coin, so it is tails up.`` ...
``multistep``          Multi-step arithmetic (BIG-bench's ``multistep_arithmetic``, the kind of
                       problem Wei et al.'s arithmetic exemplars chain): ``What is ((3 + 4) * 2)
                       - 5?`` -> ``9``; ``n_steps`` operations (+, -, *) on digits 1-9, applied
                       left to right as the brackets show; chain one step per operation:
                       ``3 + 4 = 7.`` ``7 * 2 = 14.`` ``14 - 5 = 9.``
=====================  ========================================================================

Names (last-letter, coin-flip) come from a fixed local list: NLTK's ``names`` corpus when it is
under the data root (``nltk_data/corpora/names.zip`` or ``names/``), else the proper nouns of the
Brown corpus's train split (title-case alphabetic words of 3 or more letters seen at least 3
times after a sentence's first word, and never in lower case). Words for ``sorting`` are Brown
train words in lower case, 3-8 letters, seen at least 5 times. Both lists are sorted, so a seed
picks the same names anywhere the same data is present; ``words=`` passes a list instead.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import string
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.registry import Registry
from lmbench.data.corpora import data_root, load_corpus

ANSWER_TRIGGER = "The answer is"
FORMS = ("direct", "scratchpad")

_TRIGGER_PATTERN = re.compile(r"the answer is\s*:?\s*(.+?)(?:\.\s|\.?$|\n)", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_answer(text: str) -> str:
    """The canonical form answers are compared in: lower case, surrounding quotes and final
    period removed, thousands separators dropped, whitespace collapsed to single spaces."""
    text = _THOUSANDS.sub("", text.strip().lower())
    text = text.strip().rstrip(".").strip().strip("\"'").strip()
    return " ".join(text.split())


def extract_answer(output: str) -> str:
    """The answer a model's output gives: what follows the last "The answer is", else the first
    non-empty line of the output (a direct answer, before any next "Q:")."""
    matches = _TRIGGER_PATTERN.findall(output)
    if matches:
        return matches[-1].strip()
    for line in output.splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True)
class Problem:
    """One synthetic problem with its worked chain and gold answer."""

    task: str  # generator name: "addition", "last-letter", ...
    question: str
    answer: str
    steps: tuple[str, ...]  # the worked chain, one sentence each, without the answer sentence
    form: str = "direct"  # "direct": the target is the answer; "scratchpad": the chain

    @property
    def chain(self) -> str:
        """The worked steps followed by ``The answer is X.``."""
        return " ".join((*self.steps, f"{ANSWER_TRIGGER} {self.answer}."))

    @property
    def target(self) -> str:
        """What a model trained or prompted in this problem's form should write."""
        return self.answer if self.form == "direct" else self.chain

    def verify(self, output: str) -> bool:
        """Whether a model's output is correct: the extracted answer equals the gold answer
        after normalisation."""
        return normalize_answer(extract_answer(output)) == normalize_answer(self.answer)


GENERATORS: Registry[Callable[..., tuple[Problem, ...]]] = Registry("synthetic task")


def generate(name: str, n: int, seed: int, **options) -> tuple[Problem, ...]:
    """Draw ``n`` problems of a registered synthetic task.

    Args:
        name: a name in :data:`GENERATORS` (``addition``, ``last-letter``, ...).
        n: how many problems (>= 0).
        seed: the seed of the numpy Generator every draw comes from.
        **options: the generator's own keywords (``n_digits``, ``n_words``, ...).

    Returns:
        ``n`` problems; the same arguments give the same problems.
    """
    generator = GENERATORS.get(name)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise LmbenchError(f"synthetic task {name!r}: n must be a whole number >= 0, got {n!r}")
    try:
        return generator(n, seed, **options)
    except TypeError as error:
        if "unexpected keyword" in str(error):
            raise LmbenchError(f"synthetic task {name!r}: {error}") from None
        raise


def _check_count(task: str, field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LmbenchError(
            f"synthetic task {task!r}: {field} must be a whole number in [{low}, {high}], "
            f"got {value!r}"
        )
    return value


def _check_form(task: str, form: str) -> str:
    if form not in FORMS:
        raise LmbenchError(f"synthetic task {task!r}: form must be one of {FORMS}, got {form!r}")
    return form


# ----------------------------------------------------------------------------------------------
# Word lists


@functools.lru_cache(maxsize=4)
def _names_from_nltk(root: Path) -> tuple[str, ...]:
    folder = root / "nltk_data" / "corpora"
    texts: list[str] = []
    if (folder / "names").is_dir():
        texts = [(folder / "names" / f).read_text("utf-8") for f in ("female.txt", "male.txt")]
    elif (folder / "names.zip").is_file():
        with zipfile.ZipFile(folder / "names.zip") as archive:
            texts = [archive.read(f"names/{f}").decode("utf-8") for f in ("female.txt", "male.txt")]
    names = {w.strip() for text in texts for w in text.splitlines()}
    return tuple(sorted(w for w in names if w.isalpha() and w.isascii() and len(w) >= 3))


@functools.lru_cache(maxsize=4)
def _brown_word_lists(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(proper nouns, common lower-case words) of Brown's train split, each sorted."""
    capitalised: collections.Counter[str] = collections.Counter()
    lower: collections.Counter[str] = collections.Counter()
    for sentence in load_corpus("brown", root).train.sentences:
        for position, word in enumerate(sentence):
            if not (word.isalpha() and word.isascii()):
                continue
            if word.islower():
                lower[word] += 1
            elif position > 0 and word[0].isupper() and word[1:].islower() and len(word) >= 3:
                capitalised[word] += 1
    names = sorted(w for w, c in capitalised.items() if c >= 3 and w.lower() not in lower)
    words = sorted(w for w, c in lower.items() if c >= 5 and 3 <= len(w) <= 8)
    return tuple(names), tuple(words)


def name_list(data_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The fixed list names are drawn from: NLTK ``names`` if present, else Brown proper nouns."""
    root = data_root(data_dir)
    return _names_from_nltk(root) or _brown_word_lists(root)[0]


def word_list(data_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The fixed list of common lower-case Brown words ``sorting(kind="words")`` draws from."""
    return _brown_word_lists(data_root(data_dir))[1]


def _pick_distinct(rng: np.random.Generator, pool: Sequence[str], k: int, task: str) -> list[str]:
    if len(pool) < k:
        raise LmbenchError(f"synthetic task {task!r}: words has {len(pool)} entries, need >= {k}")
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


# ----------------------------------------------------------------------------------------------
# Generators


def _addition_steps(a: int, b: int) -> tuple[str, ...]:
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for column in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[column]) if column < len(digits_a) else 0
        y = int(digits_b[column]) if column < len(digits_b) else 0
        total = x + y + carry
        steps.append(f"{x} + {y} + {carry} = {total}, write {total % 10}, carry {total // 10}.")
        carry = total // 10
    if carry:
        steps.append(f"Write the final carry {carry}.")
    return tuple(steps)


@GENERATORS.register("addition")
def addition(n: int, seed: int, n_digits: int = 3, form: str = "direct") -> tuple[Problem, ...]:
    """Brown et al. 2020's n-digit addition, with a per-digit scratchpad chain (Nye et al. 2021).

    Args:
        n: how many problems.
        seed: numpy Generator seed.
        n_digits: digits of each operand (1-18).
        form: ``"direct"`` (target: the sum) or ``"scratchpad"`` (target: the chain).
    """
    _check_count("addition", "n_digits", n_digits, 1, 18)
    _check_form("addition", form)
    rng = np.random.default_rng(seed)
    low = 0 if n_digits == 1 else 10 ** (n_digits - 1)
    operands = rng.integers(low, 10**n_digits, size=(n, 2))  # (n, 2)
    problems = []
    for a, b in operands.tolist():
        problems.append(Problem("addition", f"What is {a} plus {b}?", str(a + b),
                                _addition_steps(a, b), form))
    return tuple(problems)


@GENERATORS.register("reversal")
def reversal(n: int, seed: int, n_letters: int = 5) -> tuple[Problem, ...]:
    """Reverse a string of random lowercase letters, ``n_letters`` long (1-64)."""
    _check_count("reversal", "n_letters", n_letters, 1, 64)
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    problems = []
    for row in rng.integers(0, 26, size=(n, n_letters)):  # (n, n_letters)
        word = "".join(letters[row])
        steps = tuple(f'Letter {i + 1} from the end is "{c}".' for i, c in enumerate(word[::-1]))
        problems.append(Problem("reversal", f'Reverse the letters of "{word}".', word[::-1], steps))
    return tuple(problems)


@GENERATORS.register("sorting")
def sorting(n: int, seed: int, n_items: int = 5, kind: str = "digits",
            words: Sequence[str] | None = None) -> tuple[Problem, ...]:
    """Sort digits (repeats allowed) or distinct words in ascending order; selection-sort chain.

    Args:
        n: how many problems.
        seed: numpy Generator seed.
        n_items: items per problem (1-64).
        kind: ``"digits"`` or ``"words"``.
        words: the word pool for ``kind="words"`` (default :func:`word_list`).
    """
    _check_count("sorting", "n_items", n_items, 1, 64)
    if kind not in ("digits", "words"):
        raise LmbenchError(
            f"synthetic task 'sorting': kind must be 'digits' or 'words', got {kind!r}")
    rng = np.random.default_rng(seed)
    pool = tuple(words) if words is not None else (word_list() if kind == "words" else ())
    problems = []
    for _ in range(n):
        if kind == "digits":
            items = [str(d) for d in rng.integers(0, 10, size=n_items)]
        else:
            items = _pick_distinct(rng, pool, n_items, "sorting")
        remaining, done, steps = list(items), [], []
        while remaining:
            smallest = min(remaining)
            remaining.remove(smallest)
            done.append(smallest)
            steps.append(f"The smallest remaining is {smallest}; sorted so far: {' '.join(done)}.")
        question = f"Sort in ascending order: {' '.join(items)}."
        problems.append(Problem("sorting", question, " ".join(done), tuple(steps)))
    return tuple(problems)


@GENERATORS.register("last-letter")
def last_letter(n: int, seed: int, n_words: int = 2,
                words: Sequence[str] | None = None) -> tuple[Problem, ...]:
    """Wei et al. 2022's last-letter concatenation over ``n_words`` distinct names (1-16)."""
    _check_count("last-letter", "n_words", n_words, 1, 16)
    rng = np.random.default_rng(seed)
    pool = tuple(words) if words is not None else name_list()
    problems = []
    for _ in range(n):
        names = _pick_distinct(rng, pool, n_words, "last-letter")
        letters = "".join(name[-1] for name in names)
        steps = [f'The last letter of "{name}" is "{name[-1]}".' for name in names]
        steps.append(f'Concatenating them is "{letters}".')
        question = (f'Take the last letters of the words in "{" ".join(names)}" '
                    "and concatenate them.")
        problems.append(Problem("last-letter", question, letters, tuple(steps)))
    return tuple(problems)


@GENERATORS.register("coin-flip")
def coin_flip(n: int, seed: int, n_people: int = 2,
              words: Sequence[str] | None = None) -> tuple[Problem, ...]:
    """Wei et al. 2022's coin flip: ``n_people`` (1-16) people each flip or not (p = 1/2)."""
    _check_count("coin-flip", "n_people", n_people, 1, 16)
    rng = np.random.default_rng(seed)
    pool = tuple(words) if words is not None else name_list()
    problems = []
    for _ in range(n):
        people = _pick_distinct(rng, pool, n_people, "coin-flip")
        flips = rng.integers(0, 2, size=n_people).astype(bool)  # (n_people,)
        sentences, steps, heads = ["A coin is heads up."], [], True
        for person, flip in zip(people, flips.tolist()):
            heads ^= flip
            side = "heads" if heads else "tails"
            if flip:
                sentences.append(f"{person} flips the coin.")
                steps.append(f"{person} flips the coin, so it is {side} up.")
            else:
                sentences.append(f"{person} does not flip the coin.")
                steps.append(f"{person} does not flip the coin, so it is still {side} up.")
        sentences.append("Is the coin still heads up?")
        problems.append(Problem("coin-flip", " ".join(sentences), "yes" if heads else "no",
                                tuple(steps)))
    return tuple(problems)


_OPERATIONS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


@GENERATORS.register("multistep")
def multistep(n: int, seed: int, n_steps: int = 3) -> tuple[Problem, ...]:
    """Multi-step arithmetic: ``n_steps`` (1-16) operations on digits 1-9, left to right."""
    _check_count("multistep", "n_steps", n_steps, 1, 16)
    rng = np.random.default_rng(seed)
    symbols = list(_OPERATIONS)
    problems = []
    for _ in range(n):
        digits = rng.integers(1, 10, size=n_steps + 1).tolist()
        operations = [symbols[i] for i in rng.integers(0, len(symbols), size=n_steps)]
        expression, value, steps = str(digits[0]), digits[0], []
        for step, (symbol, digit) in enumerate(zip(operations, digits[1:])):
            result = _OPERATIONS[symbol](value, digit)
            steps.append(f"{value} {symbol} {digit} = {result}.")
            inner = f"({expression})" if step > 0 else expression
            expression, value = f"{inner} {symbol} {digit}", result
        problems.append(Problem("multistep", f"What is {expression}?", str(value), tuple(steps)))
    return tuple(problems)
