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
``state_union``           NLTK's State of the Union addresses (65 files, Truman 1945 to Bush
                          2006), target domain for adaptation from Brown. Files in name
                          (= chronological) order, each line cut into sentences and words by
                          ``brown_words`` / ``brown_sentences`` (below); the sentences of the
                          whole corpus in order, first 80% train, next 10% valid, last 10% test
                          (so test is the most recent addresses): 14,662 / 1,832 / 1,834
                          sentences, 321,715 / 36,487 / 33,287 words.
``inaugural``             NLTK's presidential inaugural addresses (59 files, 1789 to 2021),
                          read and split exactly as ``state_union``: 4,197 / 524 / 526
                          sentences, 129,954 / 10,816 / 11,135 words.
``webtext``               NLTK's web text (Firefox bug reports, overheard conversations, Pirates
                          of the Caribbean and Monty Python scripts, personal ads, wine
                          reviews), read as ``state_union``, split 80/10/10 *within each file*
                          (each split holds the same mix of the six genres), files in name
                          order: 31,726 / 3,964 / 3,970 sentences, 303,873 / 38,739 / 38,039
                          words.
path to a directory       ``train.txt``, ``valid.txt``, ``test.txt`` inside it.
path to a file            one text split by lines into 80/10/10 (``split_ratios``).
========================  =====================================================================

Data is looked for under a data root: the ``data_dir`` argument (CLI ``--data-dir``), else the
``LMBENCH_DATA_DIR`` environment variable, else ``~/.cache/lmbench``. The root has the layout of
the project's ``../shared``: ``nltk_data/corpora/*.zip`` and ``data/...``. NLTK's own search path
(``NLTK_DATA``) is searched too. ``lmbench data fetch NAME`` downloads into the root.

The target domains (``state_union``, ``inaugural``, ``webtext``) are plain text, which NLTK would
cut with its Punkt model (not in our data). ``brown_words`` tokenizes like the Brown corpus, so
a model trained on Brown's closed vocabulary meets the domain's words in Brown's spelling: words
keep internal hyphens and apostrophes (``long-term``, ``didn't``, ``nation's``), abbreviations
and initials keep their period (``Mr.``, ``U.S.``, ``J.``), numbers keep their commas and points
(``1,000``), ``--`` is one token, and a double quote becomes Brown's two backquotes when it
opens and two apostrophes when it closes; other punctuation is one token per character.
``brown_sentences`` ends a sentence after a token ``.``, ``?`` or ``!`` (and a closing quote or
bracket right after it), and at the end of every line.
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


# Brown-style words (see the module docstring), tried in this order at each position.
_ABBREVIATIONS = ("Mr|Mrs|Ms|Messrs|Dr|Jr|Sr|St|Mt|Gen|Gov|Sen|Rep|Reps|Lt|Col|Capt|Prof|Rev|"
                  "Jan|Feb|Mar|Apr|Aug|Sept|Sep|Oct|Nov|Dec|No|Co|Inc|Ltd|Corp|vs|etc")
_BROWN_PATTERN = re.compile(
    r"(?:[A-Za-z]\.){2,}"  # U.S., A.M.
    rf"|(?:{_ABBREVIATIONS})\."  # Mr., Sept.
    r"|[A-Z]\.(?=\s+[A-Z])"  # an initial before a capitalised word: J. F. Kennedy
    r"|\d+(?:[.,:]\d+)*"  # 1,000  3.5  10:30
    r"|\w+(?:['\u2019-]\w+)*"  # long-term, didn't, nation's
    r"|--+|[^\w\s]"
)
_SENTENCE_END = frozenset({".", "?", "!"})
_CLOSERS = frozenset({"''", ")", "]", "'"})


def brown_words(line: str) -> tuple[str, ...]:
    """Tokenize one line of plain text as the Brown corpus is tokenized (module docstring)."""
    words = []
    for match in _BROWN_PATTERN.finditer(line):
        word = match.group()
        if word == '"':
            start = match.start()
            opens = start == 0 or line[start - 1].isspace() or line[start - 1] in "([{-"
            word = "``" if opens else "''"
        words.append(word)
    return tuple(words)


def brown_sentences(text: str) -> list[tuple[str, ...]]:
    """Cut plain text into Brown-style sentences of ``brown_words`` (module docstring)."""
    sentences = []
    for line in text.splitlines():
        words = brown_words(line)
        start = 0
        for i, word in enumerate(words):
            ends = word in _SENTENCE_END and not (i + 1 < len(words) and (
                words[i + 1] in _CLOSERS or words[i + 1] in _SENTENCE_END))
            closes = word in _CLOSERS and i > 0 and words[i - 1] in _SENTENCE_END
            if ends or (closes and not (i + 1 < len(words) and words[i + 1] in _CLOSERS)):
                sentences.append(words[start : i + 1])
                start = i + 1
        if start < len(words):
            sentences.append(words[start:])
    return sentences


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


def _ratio_parts(sentences: list, ratios: tuple[float, float] = (0.8, 0.1)) -> tuple[list, ...]:
    """First 80% / next 10% / rest of a list, in order."""
    n_train, n_valid = int(ratios[0] * len(sentences)), int(ratios[1] * len(sentences))
    return (sentences[:n_train], sentences[n_train : n_train + n_valid],
            sentences[n_train + n_valid :])


def _plaintext_domain(package: str, root: Path, per_file: bool, description: str) -> Corpus:
    """A plain-text NLTK package read with ``brown_sentences`` and split 80/10/10, over the
    whole corpus in file order or (``per_file``) within each file."""
    reader = _nltk_corpus(package, root, package)
    files = sorted(f for f in reader.fileids() if f.endswith(".txt"))
    per_document = [brown_sentences(reader.raw(f)) for f in files]
    if per_file:
        cut = [_ratio_parts(sentences) for sentences in per_document]
        parts = tuple([s for document in cut for s in document[k]] for k in range(3))
    else:
        parts = _ratio_parts([s for sentences in per_document for s in sentences])
    splits = {s: _sentences_split(s, p) for s, p in zip(SPLITS, parts)}
    return Corpus(package, splits, description)


@CORPORA.register("state_union")
@functools.lru_cache(maxsize=4)
def _state_union(root: Path) -> Corpus:
    return _plaintext_domain("state_union", root, False,
                             "State of the Union addresses 1945-2006, Brown-style words, 80/10/10")


@CORPORA.register("inaugural")
@functools.lru_cache(maxsize=4)
def _inaugural(root: Path) -> Corpus:
    return _plaintext_domain("inaugural", root, False,
                             "inaugural addresses 1789-2021, Brown-style words, 80/10/10")


@CORPORA.register("webtext")
@functools.lru_cache(maxsize=4)
def _webtext(root: Path) -> Corpus:
    return _plaintext_domain("webtext", root, True,
                             "NLTK web text, Brown-style words, 80/10/10 within each file")
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
