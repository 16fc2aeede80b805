"""Published reference figures (``baselines/published.toml``), shown beside measured runs.

A reference is a number as its source states it: Bengio et al. 2003 (JMLR, Table 1) for Brown
word perplexities, nanoGPT's README for Tiny Shakespeare validation loss, KenLM run by
``benchmarks/ngram_bench.py``. Reports keep them in tables of their own, marked "published",
and never rank them with measured rows: the protocols differ in details each entry's notes give.

Open-track references state a loss in nats per token; bits per byte is derived as
nats_per_token · tokens_per_byte / ln 2 (nanoGPT's characters are ASCII bytes: 1 token per byte).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lmbench.core.errors import LmbenchError
from lmbench.core.options import build_config
from lmbench.core.toml import read_toml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "baselines" / "published.toml"
TRACKS = ("word", "open")


@dataclass(frozen=True)
class Reference:
    """One published figure."""

    corpus: str
    track: str  # "word" (closed-vocabulary perplexity) | "open" (bits per byte)
    model: str
    source: str  # paper and table, or the report that measured it
    split: str = "test"
    perplexity: float | None = None  # word track: per word (and </s>) as the source counts it
    valid_perplexity: float | None = None
    nats_per_token: float | None = None  # open track: the source's loss
    tokens_per_byte: float | None = None  # to turn nats_per_token into bits per byte
    n_params: int | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.track not in TRACKS:
            raise LmbenchError(f"reference {self.model!r}: track must be one of {TRACKS}, "
                               f"got {self.track!r}")
        if self.perplexity is None and self.bits_per_byte is None:
            raise LmbenchError(f"reference {self.model!r} has no figure: give perplexity, or "
                               "nats_per_token and tokens_per_byte")

    @property
    def bits_per_byte(self) -> float | None:
        if self.nats_per_token is None or self.tokens_per_byte is None:
            return None
        return self.nats_per_token * self.tokens_per_byte / math.log(2.0)


def load_references(path: str | Path | None = None) -> list[Reference]:
    """The references in ``path`` (default: the repository's ``baselines/published.toml``; an
    absent default file gives no references, an absent named file is an error)."""
    if path is None:
        if not DEFAULT_PATH.is_file():
            return []
        path = DEFAULT_PATH
    path = Path(path)
    data = read_toml(path, "published-figures")
    references = []
    for number, entry in enumerate(data.get("reference", []), start=1):
        where = f"{path}: reference {number}"
        try:
            references.append(build_config(Reference, entry, where))
        except TypeError as error:  # a required field is missing
            raise LmbenchError(f"{where}: {error}") from None
    return references
