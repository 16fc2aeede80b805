"""ARPA backoff files (the Doug Paul format read by KenLM and SRILM): write and read.

Each line of an ``\\n-grams:`` section is ``log10 p <tab> w1 ... wn [<tab> log10 backoff]``.
``<s>`` stands for lmbench's internal start-of-segment context and is written with probability
-99 (log10 0), as KenLM does. Log-zero values (MLE's unseen events) are written as -99 too.
``read_arpa`` gives the tables and a closed word vocabulary from the unigrams;
``lmbench.models.ngram.load_arpa`` builds the ``NGramLM`` from them.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np

from lmbench.core.errors import LmbenchError, LmbenchWarning
from lmbench.core.io import write_atomic
from lmbench.core.tokenizers import UNK, WordTokenizer
from lmbench.models.ngram_estimate import Level

LOG10_ZERO = -99.0
LN10 = math.log(10.0)
SUM_TOLERANCE = 1e-3  # |sum_w p(w | context) - 1| above this is warned about
SUM_SAMPLE = 64  # contexts checked per order above 1 (evenly spaced over the stored ones)


def _log10_text(values_ln: np.ndarray) -> list[str]:
    log10 = np.where(np.isfinite(values_ln), values_ln / LN10, LOG10_ZERO)
    return [f"{v:.8g}" for v in log10.tolist()]


def write_arpa(tables: list[Level], words: list[str], path: Path) -> None:
    """Write n-gram ``tables`` (row ``V`` of the unigram table is ``<s>``; ``words`` names the
    ``V + 1`` rows) to ``path`` through the one atomic writer."""
    V = len(words) - 1
    if len(set(words)) != len(words):
        raise LmbenchError("ARPA export needs distinct token strings; this tokenizer has "
                           "duplicates")

    def write(binary) -> None:
        out = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
        out.write("\n\\data\\\n")
        for n, table in enumerate(tables, start=1):
            out.write(f"ngram {n}={len(table.keys)}\n")
        names = np.array(words, dtype=object)  # text of each row of the current order
        for n, table in enumerate(tables, start=1):
            out.write(f"\n\\{n}-grams:\n")
            if n > 1:
                names = names[table.keys // (V + 1)] + " " + np.array(words, dtype=object)[
                    table.keys % (V + 1)]
            log_prob = table.log_prob.copy()
            if n == 1:
                log_prob[V] = -np.inf  # <s> is never predicted
            probs = _log10_text(log_prob)
            if n < len(tables):
                backoffs = _log10_text(table.log_backoff)
                out.writelines(f"{p}\t{w}\t{b}\n" for p, w, b in zip(probs, names, backoffs))
            else:
                out.writelines(f"{p}\t{w}\n" for p, w in zip(probs, names))
        out.write("\n\\end\\\n")
        out.flush()
        out.detach()  # leave the binary file open for write_atomic to sync and close

    write_atomic(path, write)


def read_arpa(path: str | Path) -> tuple[list[Level], WordTokenizer]:
    """Read an ARPA file into n-gram tables and a word tokenizer over the file's unigrams.

    Malformed files raise ``LmbenchError`` naming the file and line."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise LmbenchError(f"{path}: file not found") from None
    with handle:
        try:
            return _parse(handle, path)
        except UnicodeDecodeError:
            raise LmbenchError(f"{path}: not UTF-8 text") from None


def _parse(lines, path: Path) -> tuple[list[Level], WordTokenizer]:
    def fail(line_no: int, message: str) -> LmbenchError:
        return LmbenchError(f"{path}:{line_no}: {message}")

    line_no = 0
    declared: list[int] = []
    numbered = enumerate(lines, start=1)  # one iterator: each loop continues where the last ended
    for line_no, line in numbered:  # header  # noqa: B007 (line_no is read after the loop)
        text = line.strip()
        if text == "\\data\\":
            break
    else:
        raise fail(line_no, "no \\data\\ header; not an ARPA file")
    for line_no, line in numbered:
        text = line.strip()
        if not text:
            if declared:
                break
            continue
        if not text.startswith("ngram ") or "=" not in text:
            raise fail(line_no, f"expected 'ngram N=count' in the header, got {text[:40]!r}")
        order_text, count_text = text[6:].split("=", 1)
        try:
            order, count = int(order_text), int(count_text)
        except ValueError:
            raise fail(line_no, f"bad count line {text!r}") from None
        if order != len(declared) + 1 or count < 0:
            raise fail(line_no, f"expected 'ngram {len(declared) + 1}=<count>', got {text!r}")
        declared.append(count)
    if not declared:
        raise fail(line_no, "the header declares no n-gram counts")

    sections: list[list[tuple[float, list[str], float]]] = []
    for n, expected in enumerate(declared, start=1):
        for line_no, line in numbered:  # noqa: B007 (line_no is read after the loop)
            if line.strip():
                break
        else:
            raise fail(line_no, f"file ends before the \\{n}-grams: section (truncated?)")
        if line.strip() != f"\\{n}-grams:":
            raise fail(line_no, f"expected '\\{n}-grams:', got {line.strip()[:40]!r}")
        rows = []
        for line_no, line in numbered:
            fields = line.split()
            if not fields:
                break
            if len(fields) not in (n + 1, n + 2):
                raise fail(line_no, f"a {n}-gram line needs log10 p, {n} words, optional backoff")
            try:
                prob = float(fields[0])
                backoff = float(fields[n + 1]) if len(fields) == n + 2 else 0.0
            except ValueError:
                raise fail(line_no, f"not a number in {line.strip()[:60]!r}") from None
            if not -math.inf < prob <= 0.0:  # NaN fails too
                raise fail(line_no, f"log10 p = {fields[0]} is not a log-probability (finite and "
                                    "<= 0; -99 stands for log10 0)")
            if not -math.inf < backoff < math.inf:
                raise fail(line_no, f"log10 backoff = {fields[n + 1]} is not finite (-99 stands "
                                    "for log10 0)")
            rows.append((prob, fields[1 : n + 1], backoff, line_no))
        if len(rows) != expected:
            raise fail(line_no, f"the header declares {expected} {n}-grams, the section has "
                                f"{len(rows)} (truncated?)")
        sections.append(rows)
    for line_no, line in numbered:
        if line.strip():
            if line.strip() != "\\end\\":
                raise fail(line_no, f"expected '\\end\\', got {line.strip()[:40]!r}")
            break
    else:
        raise fail(line_no, "missing \\end\\ (truncated file?)")
    return _build_tables(sections, path)


def _build_tables(sections, path: Path) -> tuple[list[Level], WordTokenizer]:
    unigram_words = [w[0] for _, w, _, _ in sections[0]]
    if len(set(unigram_words)) != len(unigram_words):
        first: dict[str, int] = {}
        for i, word in enumerate(unigram_words):
            if word in first:
                raise _duplicate(path, sections[0][first[word]], sections[0][i])
            first[word] = i
    tokenizer = WordTokenizer.from_vocabulary([w for w in unigram_words if w != "<s>"])
    V = tokenizer.vocab_size
    width = V + 1
    index = {**tokenizer.index_, "<s>": V}
    log_prob = np.full(width, -np.inf)
    log_backoff = np.zeros(width)
    for prob, (word,), backoff, _ in sections[0]:
        row = index[word]
        log_prob[row] = -np.inf if prob <= LOG10_ZERO else prob * LN10
        log_backoff[row] = backoff * LN10 if backoff > LOG10_ZERO else -np.inf
    if UNK not in unigram_words:  # KenLM also scores unknown words as p(<unk>) = 0 then
        log_prob[tokenizer.unk_id] = -np.inf
    log_prob[V] = -np.inf
    tables = [Level(np.arange(width, dtype=np.int64), log_prob, log_backoff)]
    previous = {w: index[w] for w in unigram_words}
    for n, rows in enumerate(sections[1:], start=2):
        keys = np.empty(len(rows), np.int64)
        for i, (_, words, _, _) in enumerate(rows):
            context = " ".join(words[:-1])
            if context not in previous:
                raise LmbenchError(f"{path}: {n}-gram {' '.join(words)!r} has no entry for its "
                                   f"context {context!r}")
            if words[-1] not in index:
                raise LmbenchError(f"{path}: {n}-gram {' '.join(words)!r} uses a word missing "
                                   "from the unigrams")
            keys[i] = previous[context] * width + index[words[-1]]
        order = np.argsort(keys, kind="stable")
        same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
        if same.size:
            raise _duplicate(path, rows[order[same[0]]], rows[order[same[0] + 1]])
        probs = np.array([r[0] for r in rows])[order]
        backoffs = np.array([r[2] for r in rows])[order]
        tables.append(Level(keys[order],
                            np.where(probs <= LOG10_ZERO, -np.inf, probs * LN10),
                            np.where(backoffs <= LOG10_ZERO, -np.inf, backoffs * LN10)))
        rank = np.empty(len(rows), np.int64)
        rank[order] = np.arange(len(rows))
        previous = {" ".join(words): int(rank[i]) for i, (_, words, _, _) in enumerate(rows)}
    _check_sums(tables, [*tokenizer.tokens_, "<s>"], path)
    return tables, tokenizer


def _duplicate(path: Path, first, second) -> LmbenchError:
    """The error of an n-gram listed twice (``first`` and ``second`` are parsed rows)."""
    values = "the same values" if first[0] == second[0] and first[2] == second[2] else (
        "different values")
    return LmbenchError(f"{path}:{second[3]}: duplicate {len(second[1])}-gram "
                       f"{' '.join(second[1])!r} (also at line {first[3]}, with {values})")


def _check_sums(tables: list[Level], words: list[str], path: Path) -> None:
    """Warn (one line naming the file and the context) when p(. | context) does not sum to 1
    within ``SUM_TOLERANCE``: the unigrams, and ``SUM_SAMPLE`` contexts of each higher order
    (evenly spaced over the stored contexts; all of them would cost a pass over V per context).
    The distribution is the one the model scores with: stored children, the rest backed off."""
    V = len(words) - 1
    width = V + 1
    checked: list[tuple[float, tuple[int, ...]]] = []  # (sum, context ids)
    checked.append((float(np.exp(tables[0].log_prob[:V]).sum()), ()))
    for n in range(2, len(tables) + 1):
        contexts = tables[n - 1].keys // width  # sorted: the rows of order n-1 with children
        contexts = contexts[np.flatnonzero(np.diff(contexts, prepend=-1))]
        picks = contexts[np.unique(np.linspace(0, len(contexts) - 1, SUM_SAMPLE).astype(int))]
        for row in picks.tolist():
            ids = _row_words(tables, n - 1, row, width)
            checked.append((float(np.exp(_distribution(tables, ids, width)).sum()), ids))
    off = [(total, ids) for total, ids in checked if abs(total - 1.0) > SUM_TOLERANCE]
    if off:
        total, ids = max(off, key=lambda item: abs(item[0] - 1.0))
        context = " ".join(words[i] for i in ids)
        which = f"the probabilities after {context!r}" if ids else "the unigram probabilities"
        warnings.warn(f"{path}: {which} sum to {total:.6g}, not 1 "
                      f"({len(off)} of {len(checked)} checked contexts are off by more than "
                      f"{SUM_TOLERANCE:g}); scores from this file are not a distribution",
                      LmbenchWarning, stacklevel=4)


def _row_words(tables: list[Level], order: int, row: int, width: int) -> tuple[int, ...]:
    """The word ids of row ``row`` of the order-``order`` table (keys = context * width + w)."""
    ids = []
    for level in range(order, 1, -1):
        key = int(tables[level - 1].keys[row])
        ids.append(key % width)
        row = key // width
    ids.append(int(tables[0].keys[row]))
    return tuple(reversed(ids))


def _distribution(tables: list[Level], context: tuple[int, ...], width: int) -> np.ndarray:
    """(V,) ln p(w | context) by backoff, as ``NGramLM.logits`` computes it."""
    V = width - 1
    dist = tables[0].log_prob[:V].copy()
    for j in range(1, len(context) + 1):  # the last j words of the context, short to long
        suffix = context[-j:]
        row = suffix[0]
        for level, word in enumerate(suffix[1:], start=2):
            keys = tables[level - 1].keys
            where = int(np.searchsorted(keys, row * width + word))
            if where == len(keys) or keys[where] != row * width + word:
                return dist  # not stored: longer histories are not either
            row = where
        dist += tables[j - 1].log_backoff[row]
        lo, hi = np.searchsorted(tables[j].keys, [row * width, (row + 1) * width])
        dist[tables[j].keys[lo:hi] - row * width] = tables[j].log_prob[lo:hi]
    return dist
