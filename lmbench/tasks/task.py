"""What a task is: documents with fixed splits, a prompt template, a target and a metric.

A ``Task`` holds its documents (``dict`` records of strings) in fixed ``train`` / ``test``
splits (``valid`` optional), and says how one becomes a request, after lm-evaluation-harness's
``TaskConfig`` (``doc_to_text``, ``doc_to_target``, ``target_delimiter``, ``fewshot_delimiter``,
``generation_kwargs.until``, ``filter_list``):

=====================  ========================================================================
``generate``           generation until a stop string; the output is graded by exact match
                       after ``normalize_answer`` of the answer each of two regular
                       expressions extracts (lm-eval's ``strict-match`` / ``flexible-extract``
                       filters): ``strict_regex``'s first match, ``flexible_regex``'s last.
                       Metrics ``exact_match`` (strict) and ``exact_match_flexible``.
``multiple_choice``    log-likelihood of each choice (``choices_field``, a list of strings)
                       after the prompt; the gold is the index in ``target``. Metrics ``acc``
                       (argmax of the summed ln p) and ``acc_norm`` (argmax of ln p per
                       character of the choice, lm-eval's length-normalised accuracy).
``rolling``            rolling log-likelihood of the whole ``target`` text (``score_stream``'s
                       windows, every token scored once): ``perplexity``, ``bits_per_byte``.
=====================  ========================================================================

A prompt is ``template.format(**doc)`` (``{field}`` names a document field); the text the model
should continue it with is ``target_delimiter + doc[target]`` (``doc[chain_field]`` for chain
of thought exemplars). ``instruction`` is the zero-shot instruction line put before everything.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from lmbench.core.errors import LmbenchError

KINDS = ("generate", "multiple_choice", "rolling")
METRICS = {"generate": "exact_match", "multiple_choice": "acc", "rolling": "perplexity"}
# lm-eval's gsm8k filters, made to fit answers that are words too: "The answer is X." else the
# whole output (strict), and the last number anywhere (flexible).
STRICT_REGEX = r"(?is)^(?:.*\bthe answer is)?\s*(.*?)[\s.]*$"
NUMBER_REGEX = r"-?\d[\d,]*"
WORD_REGEX = r"[A-Za-z]+"
INVALID = "[invalid]"  # lm-eval's fallback when a filter matches nothing


def template_fields(template: str) -> tuple[str, ...]:
    """The field names a ``str.format`` template uses (``{question}`` -> ``question``)."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            names.append(re.split(r"[.\[]", name, maxsplit=1)[0])
    return tuple(dict.fromkeys(names))


def compile_regex(pattern: str, where: str) -> re.Pattern[str]:
    """``re.compile(pattern)``, or an ``LmbenchError`` naming ``where`` and the regex error."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise LmbenchError(f"{where}: the regular expression {pattern!r} does not compile "
                           f"({error})") from None


def extract(pattern: re.Pattern[str], text: str, last: bool) -> str:
    """The first (or ``last``) match of ``pattern`` in ``text``: its first group when it has
    one, else the whole match; ``INVALID`` when nothing matches."""
    matches = list(pattern.finditer(text))
    if not matches:
        return INVALID
    match = matches[-1] if last else matches[0]
    return match.group(1) if pattern.groups else match.group(0)


@dataclass(frozen=True)
class Task:
    """One task (module docstring); ``check`` runs at construction."""

    name: str
    kind: str  # one of KINDS
    splits: dict[str, tuple[dict[str, Any], ...]]  # "train", "test" (and "valid")
    template: str  # the prompt of one document, "Q: {question}\nA:"
    target: str  # field: the answer text (generate, rolling) or gold index (multiple_choice)
    description: str = ""
    instruction: str = ""  # zero-shot instruction, the first line of every prompt
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ("\n",)  # generate: stop strings (the first line is the answer)
    cot_stop: tuple[str, ...] = ("\n\n", "\nQ:")  # generate with a chain of thought
    chain_field: str | None = None  # field holding the worked chain (chain-of-thought)
    chain_of_thought: bool = False  # always answered with its chain (a scratchpad task)
    choices_field: str | None = None  # multiple_choice: field holding the list of choices
    strict_regex: str = STRICT_REGEX
    flexible_regex: str = NUMBER_REGEX
    max_new_tokens: int = 32
    cot_max_new_tokens: int = 256
    where: str = ""  # the file it came from, for messages ("" for built-in tasks)
    options: dict[str, Any] = field(default_factory=dict)  # how it was built (recorded)

    def __post_init__(self) -> None:
        self.check()

    @property
    def metric(self) -> str:
        return METRICS[self.kind]

    def split(self, name: str) -> tuple[dict[str, Any], ...]:
        if name not in self.splits:
            raise LmbenchError(f"task {self.name!r} has no {name!r} split (it has "
                               f"{', '.join(self.splits)})")
        return self.splits[name]

    def prompt(self, doc: dict[str, Any]) -> str:
        """The template filled with ``doc``."""
        return self.template.format(**doc)

    def target_text(self, doc: dict[str, Any], chain: bool = False) -> str:
        """What follows the prompt: ``target_delimiter`` and the answer (or the chain)."""
        if self.kind == "multiple_choice":
            return self.target_delimiter + str(doc[self.choices_field][int(doc[self.target])])
        return self.target_delimiter + str(doc[self.chain_field if chain else self.target])

    def check(self) -> None:
        """One-line ``LmbenchError``s naming the file (``where``) and field for every mistake:
        unknown kind, a template or target naming a field the documents lack, a regex that
        does not compile, an empty stop string, empty splits."""
        at = f"{self.where}: " if self.where else f"task {self.name!r}: "
        if self.kind not in KINDS:
            raise LmbenchError(f"{at}kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.splits.get("test"):
            raise LmbenchError(f"{at}field 'test': the test split has no documents")
        for pattern, name in ((self.strict_regex, "strict_regex"),
                              (self.flexible_regex, "flexible_regex")):
            compile_regex(pattern, f"{at.rstrip(': ')}: field {name!r}")
        for name in ("stop", "cot_stop"):
            stops = getattr(self, name)
            if isinstance(stops, str) or not all(isinstance(s, str) for s in stops):
                raise LmbenchError(f"{at}field {name!r} must be a list of strings")
            if any(s == "" for s in stops):
                raise LmbenchError(f"{at}field {name!r} has an empty stop string; every stop "
                                   "string needs at least one character")
        for name in ("max_new_tokens", "cot_max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LmbenchError(f"{at}field {name!r} must be a whole number >= 1, got "
                                   f"{value!r}")
        needed = {"template": template_fields(self.template), "target": (self.target,),
                  "chain_field": (self.chain_field,) if self.chain_field else (),
                  "choices_field": (self.choices_field,) if self.choices_field else ()}
        if self.kind == "multiple_choice" and not self.choices_field:
            raise LmbenchError(f"{at}field 'choices_field' is needed by a multiple_choice task")
        for split, docs in self.splits.items():
            for i, doc in enumerate(docs):
                for what, names in needed.items():
                    missing = [n for n in names if n not in doc]
                    if missing:
                        raise LmbenchError(f"{at}field {what!r} names {missing[0]!r}, which "
                                           f"{split} document {i} does not have (it has "
                                           f"{', '.join(sorted(doc)) or 'no fields'})")
                if self.kind == "multiple_choice":
                    self._check_choices(doc, f"{at}{split} document {i}")

    def _check_choices(self, doc: dict[str, Any], where: str) -> None:
        choices, gold = doc[self.choices_field], doc[self.target]
        if not isinstance(choices, list | tuple) or len(choices) < 2 or not all(
                isinstance(c, str) and c for c in choices):
            raise LmbenchError(f"{where}: field {self.choices_field!r} must be a list of at "
                               "least 2 non-empty strings")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise LmbenchError(f"{where}: field {self.target!r} must be the index of the gold "
                               f"choice, 0 to {len(choices) - 1}, got {gold!r}")
