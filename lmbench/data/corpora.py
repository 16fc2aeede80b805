"""Corpora with fixed, documented splits, read from local files or NLTK data packages.

Every corpus gives, for each split, the raw text (bits per byte counts the UTF-8 bytes of this
text) and its sentences as tuples of words (the closed-vocabulary word track reads these).

========================  =====================================================================
``brown``                 NLTK's Brown corpus, sentences in corpus order, split as Bengio et
                          al. 2003 (JMLR, section 4.1): the first sentences holding 800,000
                          words are train, the next 200,000 valid, the rest test, cut at
                          sentence boundaries (a sentence that crosses a mark goes to the
                          earlier split). Case and punctuation are kept. NLTK's copy has
                          1,161,192 words in 57,340 sentences; the split is
                          train 800,001 words / 35,523 sentences,
                          valid 200,021 / 11,690, test 161,170 / 10,127.
                          Raw text: each sentence's words joined by spaces, one sentence a line.
``treebank``              NLTK's 10% sample of the Penn Treebank WSJ (3,914 sentences). Trace
                          tokens (tag ``-NONE-``) are removed as in Mikolov's PTB LM data,
                          leaving 94,084 words. Sentences in order: first 80% train, next 10%
                          valid, last 10% test (3,131 / 391 / 392 sentences).
``tinyshakespeare``       ``data/tinyshakespeare/input.txt``, split by characters exactly as
                          nanoGPT's ``data/shakespeare_char/prepare.py``: the first 90% of the
                          string is train, the last 10% is valid. There is no held-out test:
                          ``test`` is the same text as ``valid`` (nanoGPT's "val"), so a test
                          figure here is comparable with nanoGPT's validation loss, and is
                          optimistic for models selected on it. Sentences: non-empty lines.
``movie_reviews``         NLTK's ``movie_reviews`` (Pang & Lee 2004: 1,000 positive and 1,000
                          negative reviews, lowercased and tokenized), split by review: a review
                          goes to train, valid or test by a seeded hash of its file id
                          (``review_split``: the first 8 bytes of sha256("lmbench-movie-reviews-v1
                          :" + file id) as a fraction of 2**64; < 0.8 train, < 0.9 valid, else
                          test), giving 1,604 / 185 / 211 reviews (797 / 95 / 108 positive;
                          52,313 / 6,080 / 6,327 lines). Raw text: each line's words
                          joined by spaces, one line a line, reviews in file-id order; the
                          polarity labels are ``movie_review_documents``'s (the sentiment task,
                          ``lmbench.data.reviews``).
``wikitext2``             WikiText-2 (Merity et al. 2016), ``data/wikitext-2/{valid,test}.txt``,
                          for out-of-domain evaluation only (no train split). Sentences: the
                          non-empty lines, split on spaces (the text is already tokenized).
path to a directory       ``train.txt``, ``valid.txt``, ``test.txt`` inside it.
path to a file            one text split by lines into 80/10/10 (``split_ratios``).
========================  =====================================================================

Data is looked for under a data root: the ``data_dir`` argument (CLI ``--data-dir``), else the
``LMBENCH_DATA_DIR`` environment variable, else ``~/.cache/lmbench``. The root has the layout of
the project's ``../shared``: ``nltk_data/corpora/*.zip`` and ``data/...``. NLTK's own search path
(``NLTK_DATA``) is searched too. ``lmbench data fetch NAME`` downloads into the root.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmbench.core.errors import LmbenchError
from lmbench.core.registry import Registry

SPLITS = ("train", "valid", "test")

# Words for user text and tinyshakespeare: runs of word characters, or of punctuation.
_WORD_PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]+")


def split_words(line: str) -> tuple[str, ...]:
    """Tokenize one line of plain text into words (word runs and punctuation runs)."""
    return tuple(_WORD_PATTERN.findall(line))


@dataclass(frozen=True)
class Split:
    """One split of a corpus: its raw text and its sentences (tuples of words)."""

    name: str
    text: str  # raw text: bytes for bits-per-byte are counted on it
    sentences: tuple[tuple[str, ...], ...]

    @functools.cached_property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @functools.cached_property
    def n_words(self) -> int:
        """Words plus one end-of-sentence per sentence (the KenLM / PTB convention)."""
        return sum(len(s) for s in self.sentences) + len(self.sentences)


@dataclass(frozen=True)
class Corpus:
    """A named corpus with up to three splits (``train``, ``valid``, ``test``)."""

    name: str
    splits: dict[str, Split] = field(repr=False)
    description: str = ""

    def split(self, name: str) -> Split:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise LmbenchError(f"corpus {self.name!r} has no {name!r} split (it has: {have})")
        return self.splits[name]

    @property
    def train(self) -> Split:
        return self.split("train")

    @property
    def valid(self) -> Split:
        return self.split("valid")

    @property
    def test(self) -> Split:
        return self.split("test")


CORPORA: Registry = Registry("corpus")


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``nltk_data/`` and ``data/``: argument, env var, or user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("LMBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/lmbench").expanduser()


def load_corpus(name: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Corpus:
    """Load a registered corpus by name, or a user corpus from a directory or a text file.

    Example::

        corpus = lmbench.load_corpus("brown")
        corpus.train.text[:60], corpus.split("test").n_words
    """
    text_name = str(name)
    if text_name in CORPORA:
        return CORPORA.get(text_name)(data_root(data_dir))
    path = Path(text_name).expanduser()
    if path.is_dir():
        return _load_directory(path)
    if path.is_file():
        return _load_single_file(path)
    if os.sep in text_name or text_name.endswith(".txt"):
        raise LmbenchError(f"corpus path {text_name!r} does not exist")
    CORPORA.get(text_name)  # raises "unknown corpus ... did you mean"
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------
# Readers


def read_text(path: Path) -> str:
    """Read a UTF-8 text file, with one-line errors for missing, binary or empty files."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LmbenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise LmbenchError(f"{path}: expected a text file, found a directory") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LmbenchError(
            f"{path}: not UTF-8 text (invalid byte at offset {error.start}); convert it to UTF-8"
        ) from None
    if not text.strip():
        raise LmbenchError(f"{path}: the file is empty; a corpus split needs text")
    return text


def _lines_split(name: str, text: str, tokenize=split_words) -> Split:
    sentences = tuple(words for line in text.splitlines() if (words := tokenize(line)))
    return Split(name, text, sentences)


def _sentences_split(name: str, sentences: list[tuple[str, ...]]) -> Split:
    text = "".join(" ".join(s) + "\n" for s in sentences)
    return Split(name, text, tuple(sentences))


def _load_directory(path: Path) -> Corpus:
    missing = [s for s in SPLITS if not (path / f"{s}.txt").is_file()]
    if len(missing) == len(SPLITS):
        raise LmbenchError(f"{path}: expected train.txt, valid.txt and test.txt in the directory")
    splits = {s: _lines_split(s, read_text(path / f"{s}.txt")) for s in SPLITS if s not in missing}
    return Corpus(path.name, splits, f"user corpus from {path}")


def _load_single_file(path: Path, split_ratios: tuple[float, float] = (0.8, 0.1)) -> Corpus:
    lines = read_text(path).splitlines(keepends=True)
    if len(lines) < 3:
        raise LmbenchError(f"{path}: need at least 3 lines to split into train/valid/test")
    n_train = max(1, int(len(lines) * split_ratios[0]))
    n_valid = max(1, int(len(lines) * split_ratios[1]))
    parts = (lines[:n_train], lines[n_train : n_train + n_valid], lines[n_train + n_valid :])
    splits = {s: _lines_split(s, "".join(p)) for s, p in zip(SPLITS, parts) if "".join(p).strip()}
    return Corpus(path.stem, splits, f"user corpus {path}, lines split 80/10/10")


def _missing(what: str, looked: list[Path], name: str) -> LmbenchError:
    where = ", ".join(str(p) for p in looked)
    return LmbenchError(
        f"corpus {name!r}: {what} not found (looked in {where}); run `lmbench data fetch {name}` "
        "or point LMBENCH_DATA_DIR / --data-dir at a folder holding it"
    )


def _nltk_corpus(package: str, root: Path, name: str):
    """Return ``nltk.corpus.<package>`` after checking that its data exists."""
    import nltk

    extra = str(root / "nltk_data")
    if extra not in nltk.data.path:
        nltk.data.path.insert(0, extra)
    for resource in (f"corpora/{package}", f"corpora/{package}.zip"):
        try:
            nltk.data.find(resource)
            break
        except LookupError:
            continue
    else:
        raise _missing(f"NLTK data package {package!r}", [Path(p) for p in nltk.data.path], name)
    import nltk.corpus

    return getattr(nltk.corpus, package)


def _data_file(root: Path, relative: str, name: str) -> Path:
    path = root / "data" / relative
    if not path.is_file():
        raise _missing(f"file {relative!r}", [root / "data"], name)
    return path


def _cut_by_word_counts(sentences, marks: tuple[int, ...]) -> list[list[tuple[str, ...]]]:
    """Cut sentences into len(marks)+1 parts where the running word count first reaches a mark."""
    parts: list[list[tuple[str, ...]]] = [[] for _ in range(len(marks) + 1)]
    part, running = 0, 0
    for sentence in sentences:
        parts[part].append(sentence)
        running += len(sentence)
        while part < len(marks) and running >= marks[part]:
            part += 1
    return parts


@CORPORA.register("brown")
@functools.lru_cache(maxsize=4)
def _brown(root: Path) -> Corpus:
    brown = _nltk_corpus("brown", root, "brown")
    sentences = [tuple(s) for s in brown.sents()]
    parts = _cut_by_word_counts(sentences, (800_000, 1_000_000))
    splits = {s: _sentences_split(s, p) for s, p in zip(SPLITS, parts)}
    return Corpus("brown", splits, "Brown corpus, Bengio et al. 2003 split (800k/200k/rest)")


@CORPORA.register("treebank")
@functools.lru_cache(maxsize=4)
def _treebank(root: Path) -> Corpus:
    treebank = _nltk_corpus("treebank", root, "treebank")
    sentences = [
        tuple(w for w, tag in s if tag != "-NONE-") for s in treebank.tagged_sents()
    ]
    n_train, n_valid = int(0.8 * len(sentences)), int(0.1 * len(sentences))
    parts = (sentences[:n_train], sentences[n_train : n_train + n_valid],
             sentences[n_train + n_valid :])
    splits = {s: _sentences_split(s, p) for s, p in zip(SPLITS, parts)}
    return Corpus("treebank", splits, "NLTK Penn Treebank WSJ sample, traces removed, 80/10/10")


@CORPORA.register("tinyshakespeare")
@functools.lru_cache(maxsize=4)
def _tinyshakespeare(root: Path) -> Corpus:
    text = read_text(_data_file(root, "tinyshakespeare/input.txt", "tinyshakespeare"))
    n_train = int(len(text) * 0.9)  # nanoGPT: train_data = data[:int(n*0.9)]
    train = _lines_split("train", text[:n_train])
    valid = _lines_split("valid", text[n_train:])
    test = Split("test", valid.text, valid.sentences)
    return Corpus("tinyshakespeare", {"train": train, "valid": valid, "test": test},
                  "Tiny Shakespeare, nanoGPT's 90/10 character split; test = valid")


@CORPORA.register("wikitext2")
@functools.lru_cache(maxsize=4)
def _wikitext2(root: Path) -> Corpus:
    splits = {}
    for split in ("valid", "test"):
        text = read_text(_data_file(root, f"wikitext-2/{split}.txt", "wikitext2"))
        splits[split] = _lines_split(split, text, tokenize=lambda line: tuple(line.split()))
    return Corpus("wikitext2", splits, "WikiText-2 valid/test (evaluation only)")


@dataclass(frozen=True)
class Review:
    """One review of ``movie_reviews``: its NLTK file id, human label and tokenized lines."""

    fileid: str  # e.g. "neg/cv000_29416.txt"
    label: str  # "pos" or "neg" (the human polarity label)
    lines: tuple[tuple[str, ...], ...]  # the review's lines, as words

    @property
    def text(self) -> str:
        return "".join(" ".join(line) + "\n" for line in self.lines)


REVIEW_SPLIT_SALT = "lmbench-movie-reviews-v1:"
REVIEW_SPLIT_FRACTIONS = (0.8, 0.9)  # hash fraction below 0.8: train; below 0.9: valid


def review_split(fileid: str) -> str:
    """The split of a review (the ``movie_reviews`` row of the module docstring)."""
    digest = hashlib.sha256((REVIEW_SPLIT_SALT + fileid).encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction < REVIEW_SPLIT_FRACTIONS[0]:
        return "train"
    return "valid" if fraction < REVIEW_SPLIT_FRACTIONS[1] else "test"


@functools.lru_cache(maxsize=4)
def _reviews(root: Path) -> dict[str, tuple[Review, ...]]:
    reviews = _nltk_corpus("movie_reviews", root, "movie_reviews")
    by_split: dict[str, list[Review]] = {s: [] for s in SPLITS}
    for fileid in sorted(reviews.fileids()):
        lines = tuple(words for line in reviews.raw(fileid).splitlines() if (words := tuple(
            line.split())))
        label = fileid.split("/")[0]
        by_split[review_split(fileid)].append(Review(fileid, label, lines))
    return {s: tuple(r) for s, r in by_split.items()}


def movie_review_documents(data_dir: str | os.PathLike | None = None
                           ) -> dict[str, tuple[Review, ...]]:
    """The labelled reviews of ``movie_reviews`` by split (``train``, ``valid``, ``test``).

    Args:
        data_dir: the data root (``data_root``).

    Returns:
        For each split, its reviews in file-id order.
    """
    return _reviews(data_root(data_dir))


@CORPORA.register("movie_reviews")
@functools.lru_cache(maxsize=4)
def _movie_reviews(root: Path) -> Corpus:
    documents = _reviews(root)
    splits = {s: _sentences_split(s, [line for r in documents[s] for line in r.lines])
              for s in SPLITS}
    return Corpus("movie_reviews", splits,
                  "NLTK movie_reviews, review-level seeded-hash split 80/10/10")


def sentence_polarity_sentences(data_dir: str | os.PathLike | None = None
                                ) -> dict[str, tuple[tuple[str, ...], ...]]:
    """NLTK's ``sentence_polarity`` (Pang & Lee 2005: 5,331 positive and 5,331 negative
    Rotten Tomatoes snippets, lowercased and tokenized) by label, ``pos`` and ``neg``, in corpus
    order: other data than ``movie_reviews`` for a judge that never sees that task's labels.

    Args:
        data_dir: the data root (``data_root``).

    Returns:
        For each label, its sentences as tuples of words.
    """
    return _sentence_polarity(data_root(data_dir))


@functools.lru_cache(maxsize=4)
def _sentence_polarity(root: Path) -> dict[str, tuple[tuple[str, ...], ...]]:
    polarity = _nltk_corpus("sentence_polarity", root, "sentence_polarity")
    return {label: tuple(tuple(s) for s in polarity.sents(categories=label))
            for label in ("neg", "pos")}
