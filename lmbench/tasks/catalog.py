"""The shipped tasks, built from local data only, and ``load_task``.

=======================  ======================================================================
``addition``             Brown et al. 2020's 3-digit addition (``lmbench.tasks.synthetic``):
                         ``Q: What is 48 plus 76?\\nA: 124``; chains are per-digit scratchpads.
``addition-scratchpad``  the same problems answered with the scratchpad itself (Nye et al.
                         2021): exemplars show it and the model writes it before the answer.
``last-letter``          Wei et al. 2022's last-letter concatenation of 2 names.
``coin-flip``            Wei et al. 2022's coin flip after 2 people.
``multistep``            multi-step arithmetic, 3 operations on digits 1-9.
``reversal``             reverse 5 random letters.
``sorting``              sort 5 digits.
``cloze``                LAMBADA-style (Paperno et al. 2016) cloze on a corpus (default Brown):
                         the previous sentence and a held-out sentence without its last word;
                         the target is that word (exact match of the generated word).
``next-sentence``        multiple choice: after a sentence, its true next sentence against 3
                         distractors drawn from the same document (the corpus cut in order into
                         blocks of 50 sentences, a Brown file holding about 70); acc, acc_norm.
a ``.toml`` path         a user task (``lmbench.tasks.user_task``).
=======================  ======================================================================

Synthetic tasks take ``n_train`` (200), ``n_test`` (100), ``seed`` (0) and the generator's own
options (``n_digits=4`` for a longer, out-of-distribution addition). The train split is
drawn with seed ``2 * seed``, the test split with ``2 * seed + 1``, and a test problem whose
question is also in the train split is dropped (so the test split can hold fewer than
``n_test`` problems when the problem space is small). Corpus tasks take ``corpus`` (``brown``),
``n_train`` (200), ``n_test`` (200) and ``seed`` (0): train documents come from the corpus's
train split, test documents from its test split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.registry import Registry
from lmbench.data.corpora import Split, load_corpus
from lmbench.tasks import synthetic
from lmbench.tasks.task import NUMBER_REGEX, WORD_REGEX, Task
from lmbench.tasks.user_task import load_user_task

TASKS: Registry[Callable[..., Task]] = Registry("task")
QA_TEMPLATE = "Q: {question}\nA:"
_FLEXIBLE = {"addition": NUMBER_REGEX, "multistep": NUMBER_REGEX, "last-letter": WORD_REGEX,
             "reversal": WORD_REGEX, "coin-flip": r"(?i)\b(yes|no)\b", "sorting": r"\d(?: \d)*"}
_DESCRIPTIONS = {
    "addition": "3-digit addition (Brown et al. 2020)",
    "addition-scratchpad": "3-digit addition answered with a per-digit scratchpad (Nye et al. "
                           "2021)",
    "last-letter": "last-letter concatenation of 2 names (Wei et al. 2022)",
    "coin-flip": "is the coin still heads up after 2 people (Wei et al. 2022)",
    "multistep": "multi-step arithmetic, 3 operations on digits 1-9",
    "reversal": "reverse 5 random letters",
    "sorting": "sort 5 digits",
}


def _problems_to_docs(problems) -> tuple[dict[str, Any], ...]:
    return tuple({"question": p.question, "answer": p.answer, "chain": p.chain} for p in problems)


def synthetic_task(generator: str, *, name: str | None = None, n_train: int = 200,
                   n_test: int = 100, seed: int = 0, scratchpad: bool = False,
                   **options) -> Task:
    """A task of a synthetic generator's problems (module docstring)."""
    for field, value in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LmbenchError(f"task {name or generator!r}: {field} must be a whole number >= 0"
                               f", got {value!r}")
    train = synthetic.generate(generator, n_train, 2 * seed, **options)
    seen = {p.question for p in train}
    candidates = synthetic.generate(generator, 2 * n_test + 10, 2 * seed + 1, **options)
    unique: dict[str, synthetic.Problem] = {}
    for problem in candidates:
        if problem.question not in seen and problem.question not in unique:
            unique[problem.question] = problem
    test = list(unique.values())[:n_test]
    return Task(
        name=name or generator, kind="generate",
        splits={"train": _problems_to_docs(train), "test": _problems_to_docs(test)},
        template=QA_TEMPLATE, target="answer", chain_field="chain",
        chain_of_thought=scratchpad, flexible_regex=_FLEXIBLE[generator],
        description=_DESCRIPTIONS.get(name or generator, generator),
        max_new_tokens=32, cot_max_new_tokens=320,
        options={"generator": generator, "n_train": n_train, "n_test": n_test, "seed": seed,
                 **{k: v for k, v in options.items() if k != "words"}})


def _register_synthetic(name: str, generator: str, scratchpad: bool = False) -> None:
    def build(data_dir: str | os.PathLike | None = None, **options) -> Task:
        if generator in ("last-letter", "coin-flip") and "words" not in options:
            options["words"] = synthetic.name_list(data_dir)
        return synthetic_task(generator, name=name, scratchpad=scratchpad, **options)

    build.__doc__ = _DESCRIPTIONS[name]
    TASKS.register(name)(build)


for _name in ("addition", "last-letter", "coin-flip", "multistep", "reversal", "sorting"):
    _register_synthetic(_name, _name)
_register_synthetic("addition-scratchpad", "addition", scratchpad=True)


# ---------------------------------------------------------------------------------- corpora


def _usable(sentence: tuple[str, ...]) -> bool:
    """A sentence that ends ``<word> .`` with mostly alphabetic words (a fair cloze)."""
    words = [w for w in sentence if w.isalpha()]
    return (len(sentence) >= 8 and sentence[-1] == "." and sentence[-2].isalpha()
            and len(words) >= 0.7 * len(sentence))


def _cloze_docs(split: Split, n: int, rng: np.random.Generator) -> tuple[dict[str, Any], ...]:
    sentences = split.sentences
    eligible = [i for i in range(1, len(sentences)) if _usable(sentences[i])]
    picks = sorted(rng.choice(len(eligible), size=min(n, len(eligible)), replace=False).tolist())
    docs = []
    for pick in picks:
        i = eligible[pick]
        context = " ".join(sentences[i - 1]) + " " + " ".join(sentences[i][:-2])
        docs.append({"context": context, "answer": sentences[i][-2]})
    return tuple(docs)


@TASKS.register("cloze")
def cloze(data_dir: str | os.PathLike | None = None, corpus: str = "brown", n_train: int = 200,
          n_test: int = 200, seed: int = 0) -> Task:
    """LAMBADA-style cloze: the last word of held-out sentences."""
    data = load_corpus(corpus, data_dir)
    rng = np.random.default_rng(seed)
    train = _cloze_docs(data.train, n_train, rng)
    test = _cloze_docs(data.test, n_test, rng)
    return Task(name="cloze", kind="generate", splits={"train": train, "test": test},
                template="{context}", target="answer", stop=(" ", "\n"),
                strict_regex=r"^\s*(\S+)\s*$", flexible_regex=WORD_REGEX, max_new_tokens=24,
                description=f"LAMBADA-style last word of {corpus} sentences",
                options={"corpus": corpus, "n_train": n_train, "n_test": n_test, "seed": seed})


DOCUMENT_SENTENCES = 50
N_DISTRACTORS = 3


def _next_sentence_docs(split: Split, n: int, rng: np.random.Generator
                        ) -> tuple[dict[str, Any], ...]:
    sentences = [" ".join(s) for s in split.sentences]
    eligible = [i for i in range(len(sentences) - 1)
                if i % DOCUMENT_SENTENCES < DOCUMENT_SENTENCES - 1
                and len(split.sentences[i]) >= 5 and len(split.sentences[i + 1]) >= 5]
    picks = sorted(rng.choice(len(eligible), size=min(n, len(eligible)), replace=False).tolist())
    docs = []
    for pick in picks:
        i = eligible[pick]
        start = i - i % DOCUMENT_SENTENCES
        block = range(start, min(start + DOCUMENT_SENTENCES, len(sentences)))
        others = [j for j in block if j not in (i, i + 1) and sentences[j] != sentences[i + 1]]
        if len(others) < N_DISTRACTORS:
            continue
        distractors = [sentences[j] for j in rng.choice(others, N_DISTRACTORS, replace=False)]
        gold = int(rng.integers(0, N_DISTRACTORS + 1))
        choices = distractors[:gold] + [sentences[i + 1]] + distractors[gold:]
        docs.append({"context": sentences[i], "choices": choices, "label": gold})
    return tuple(docs)


@TASKS.register("next-sentence")
def next_sentence(data_dir: str | os.PathLike | None = None, corpus: str = "brown",
                  n_train: int = 200, n_test: int = 200, seed: int = 0) -> Task:
    """Multiple choice: the true next sentence against distractors from the same document."""
    data = load_corpus(corpus, data_dir)
    rng = np.random.default_rng(seed)
    train = _next_sentence_docs(data.train, n_train, rng)
    test = _next_sentence_docs(data.test, n_test, rng)
    return Task(name="next-sentence", kind="multiple_choice",
                splits={"train": train, "test": test}, template="{context}", target="label",
                choices_field="choices", fewshot_delimiter="\n",
                description=f"true next {corpus} sentence vs {N_DISTRACTORS} from its document",
                options={"corpus": corpus, "n_train": n_train, "n_test": n_test, "seed": seed})


def task_names() -> list[str]:
    """The shipped tasks' names."""
    return TASKS.names()


def load_task(name: str | os.PathLike, data_dir: str | os.PathLike | None = None,
              **options) -> Task:
    """A shipped task by name (with its options), or a user task from a ``.toml`` file.

    Example::

        task = load_task("addition", n_digits=4, n_test=50)   # longer problems
        task = load_task("tasks/capitals.toml")
    """
    text = str(name)
    if text.endswith(".toml") or os.sep in text:
        if options:
            raise LmbenchError(f"{text}: a user task takes no options (set them in the file)")
        return load_user_task(Path(text))
    builder = TASKS.get(text)
    try:
        return builder(data_dir, **options)
    except TypeError as error:
        if "unexpected keyword" in str(error):
            raise LmbenchError(f"task {text!r}: {error}") from None
        raise
