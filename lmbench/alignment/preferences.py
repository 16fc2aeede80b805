"""Preference data: continuations sampled from a policy, labelled by a judge, stored as JSONL.

Ziegler et al. 2019 (section 2) and Ouyang et al. 2022 (section 3.5) collect comparisons of
responses sampled from the policy being fine-tuned. Here:

- ``lmbench.alignment.task_eval.sample_continuations`` draws two continuations of each prompt
  from the policy (continuation j of prompt i with the seed ``seed + 1000 i + j``, so a
  prompt's samples do not depend on the other prompts);
- ``make_pairs`` takes the two continuations of each prompt and asks a judge
  (``lmbench.alignment.judges``: the gold classifier for RLHF, the AI judge for RLAIF) which is
  better, with position-swap averaging; ``chosen`` is the one it prefers;
- the pairs are written as ``lmbench.data.examples``' ``PreferencePair`` JSONL
  (``write_preferences``), and ``load_preferences`` reads such a file back, refusing with one
  line naming the file, the line and the field: a missing or unknown field, a non-string, an
  empty (or whitespace-only) response, and a pair whose ``chosen`` equals its ``rejected``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lmbench.alignment.judges import PairJudge, PairLabels, label_pairs
from lmbench.core.errors import LmbenchError
from lmbench.core.io import write_text_atomic
from lmbench.data.examples import PreferencePair, example_from_dict, read_jsonl


@dataclass(frozen=True)
class LabelledPairs:
    """Preference pairs and how the judge labelled them."""

    pairs: tuple[PreferencePair, ...]
    labels: PairLabels  # P(first > second) of each (first, second) as sampled
    skipped: int  # prompts whose two continuations were the same text (no pair)


def make_pairs(prompts: Sequence[str], continuations: Sequence[Sequence[str]],
               judge: PairJudge) -> LabelledPairs:
    """One preference pair per prompt from its first two continuations, labelled by ``judge``.

    Args:
        prompts: the prompts.
        continuations: at least two continuations per prompt (``sample_continuations``).
        judge: any ``PairJudge``.

    Returns:
        The pairs (prompts whose two continuations are equal, or empty, are skipped).
    """
    if len(prompts) != len(continuations) or any(len(c) < 2 for c in continuations):
        raise LmbenchError("make_pairs needs at least two continuations for every prompt")
    kept = [(p, c[0], c[1]) for p, c in zip(prompts, continuations)
            if c[0] != c[1] and c[0].strip() and c[1].strip()]
    labels = label_pairs(judge, [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept])
    pairs = tuple(PreferencePair(p, a, b) if first else PreferencePair(p, b, a)
                  for (p, a, b), first in zip(kept, labels.chosen_first()))
    return LabelledPairs(pairs, labels, len(prompts) - len(kept))


def check_pair(pair: PreferencePair, where: str) -> PreferencePair:
    """Refuse a pair with a whitespace-only response or ``chosen == rejected`` (one line)."""
    for name in ("chosen", "rejected"):
        if not getattr(pair, name).strip():
            raise LmbenchError(f"{where}: field {name!r} is empty (nothing to learn from)")
    if pair.chosen == pair.rejected:
        raise LmbenchError(f"{where}: field 'rejected' equals 'chosen' (a preference pair needs "
                           "two different responses)")
    return pair


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Read and check a preference JSONL file (module docstring).

    Args:
        path: the ``.jsonl`` file, one ``{"prompt", "chosen", "rejected"}`` object a line.

    Returns:
        The pairs in file order.
    """
    path = Path(path)
    pairs: list[PreferencePair] = []
    for where, record in read_jsonl(path, "preference"):
        if isinstance(record, dict) and "response" in record:
            raise LmbenchError(f"{where}: field 'response' in a preference file (a preference "
                               "pair has prompt, chosen, rejected)")
        if isinstance(record, dict) and not {"chosen", "rejected"} & set(record):
            raise LmbenchError(f"{where}: missing field 'chosen' (a PreferencePair has prompt, "
                               "chosen, rejected)")
        pair = example_from_dict(record, where)
        pairs.append(check_pair(pair, where))
    if not pairs:
        raise LmbenchError(f"{path}: no preference pairs")
    return pairs


def write_preferences(path: str | Path, pairs: Sequence[PreferencePair]) -> Path:
    """Write ``pairs`` as JSONL in one atomic step, each checked first (nothing is written if
    one is bad).

    Args:
        path: the file to write.
        pairs: the pairs.

    Returns:
        The path written.
    """
    if not pairs:
        raise LmbenchError(f"{path}: no preference pairs to write")
    for i, pair in enumerate(pairs):
        check_pair(pair, f"pair {i}")
    text = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs)
    path = Path(path)
    write_text_atomic(path, text)
    return path
