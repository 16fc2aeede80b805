"""Tokenizers: closed-vocabulary words, characters, bytes and byte-level BPE.

Every tokenizer turns a corpus split into one stream of int64 ids. One id, ``boundary_id``,
separates segments and resets context:

- ``word``: the closed vocabulary of the training split, where words seen at most
  ``unk_max_count`` (default 3) times become ``<unk>``, as Bengio et al. 2003 (JMLR, section 4.1)
  did. Each sentence ends with ``</s>``, which is predicted and counted (the KenLM / Penn Treebank
  convention) and is the boundary. Not lossless: ``<unk>`` hides words, so its rate is reported.
- ``char``: the characters of the training split plus ``<unk>`` for unseen characters.
- ``byte``: the 256 UTF-8 byte values; lossless on any text.
- ``bpe``: byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant) trained on the
  training split with Hugging Face ``tokenizers``; lossless. Pre-tokenization runs line by line.

For ``char``, ``byte`` and ``bpe`` the boundary is a ``<bos>`` id that never occurs in the text:
it is only the context of the first token of a stream.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.options import check_arguments
from lmbench.core.registry import Registry
from lmbench.data.corpora import Split, split_words

TOKENIZERS: Registry = Registry("tokenizer")

UNK, EOS, BOS = "<unk>", "</s>", "<bos>"


class Tokenizer(ABC):
    """Text <-> int64 ids. ``fit`` learns the vocabulary from a training split."""

    name: str
    is_lossless: bool  # decode(encode(text)) == text for every text
    boundary_id: int  # resets context; the first token of a stream is predicted after it
    unk_id: int | None  # None when nothing maps to <unk>
    fitted_: bool = False  # set by ``fit`` (and ``from_state``); read it through ``is_fitted``

    @abstractmethod
    def fit(self, split: Split) -> Tokenizer: ...

    @property
    def is_fitted(self) -> bool:
        """Whether the vocabulary is learned (pretrained and fixed vocabularies always are), so
        ``encode`` works and a model's ``fit`` leaves the tokenizer as it is."""
        return self.fitted_

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode_split(self, split: Split) -> np.ndarray:
        """The split as one (N,) int64 stream, the ids that are scored."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids) -> str: ...

    @abstractmethod
    def token_strings(self) -> list[str]:
        """One printable, whitespace-free string per id (used by ARPA export)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serialisable."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Fitted vocabulary, JSON-serialisable; ``from_state`` restores it."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Any]) -> Tokenizer: ...

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise LmbenchError(f"{self.name} tokenizer is not fitted; call fit(train_split) first")


def build_tokenizer(name: str, **options: Any) -> Tokenizer:
    """An unfitted tokenizer; ``options`` (a family's ``tokenizer_options``) are checked
    against its constructor: an unknown key is an error with a did-you-mean."""
    cls = TOKENIZERS.get(name)
    check_arguments(cls.__init__, options, f"tokenizer_options of tokenizer {name!r}")
    return cls(**options)


def same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    """Whether two fitted tokenizers map text to the same ids (same kind, same vocabulary), so
    models using them score and predict over one vocabulary."""
    return a.name == b.name and a.state() == b.state()


def tokenizer_to_json(tokenizer: Tokenizer) -> str:
    payload = {"name": tokenizer.name, "config": tokenizer.config(), "state": tokenizer.state()}
    return json.dumps(payload)


def tokenizer_from_json(text: str, where: str = "tokenizer") -> Tokenizer:
    """The tokenizer ``tokenizer_to_json`` wrote. Damaged JSON (not JSON, missing keys, a
    vocabulary of the wrong shape) is a one-line ``LmbenchError`` starting with ``where`` (the
    file it came from)."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError) as error:
        raise LmbenchError(f"{where}: the tokenizer is not valid JSON ({error})") from None
    if not isinstance(payload, dict) or not {"name", "config", "state"} <= payload.keys():
        raise LmbenchError(f"{where}: the tokenizer JSON needs 'name', 'config' and 'state'")
    config, state = payload["config"], payload["state"]
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise LmbenchError(f"{where}: the tokenizer's 'config' and 'state' must be objects")
    try:
        tokenizer = build_tokenizer(payload["name"], **config)
        return type(tokenizer).from_state(config, state)
    except LmbenchError as error:
        raise LmbenchError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a damaged state
        raise LmbenchError(f"{where}: damaged {payload['name']!r} tokenizer state "
                           f"({type(error).__name__}: {error})") from None


def _printable(token: str) -> str:
    """Whitespace inside a token is written as <U+XXXX> so ARPA lines stay parseable."""
    return "".join(f"<U+{ord(c):04X}>" if c.isspace() else c for c in token) or "<empty>"


class _VocabTokenizer(Tokenizer):
    """Shared id <-> token bookkeeping for tokenizers with an explicit token list."""

    def _set_vocab(self, tokens: list[str]) -> None:
        if not all(isinstance(t, str) for t in tokens) or len(set(tokens)) != len(tokens):
            raise ValueError("the vocabulary must be a list of distinct strings")
        self.tokens_ = tokens
        self.index_ = {t: i for i, t in enumerate(tokens)}
        self.fitted_ = True

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        return len(self.tokens_)

    def token_strings(self) -> list[str]:
        return [_printable(t) for t in self.tokens_]

    def state(self) -> dict[str, Any]:
        return {"tokens": self.tokens_}


@TOKENIZERS.register("word")
class WordTokenizer(_VocabTokenizer):
    name = "word"
    is_lossless = False

    def __init__(self, unk_max_count: int = 3) -> None:
        if unk_max_count < 0:
            raise LmbenchError(f"unk_max_count must be >= 0, got {unk_max_count}")
        self.unk_max_count = unk_max_count  # words seen at most this often in train -> <unk>
        self.unk_id, self.boundary_id = 0, 1

    def fit(self, split: Split) -> WordTokenizer:
        counts = Counter(w for sentence in split.sentences for w in sentence)
        if not counts:
            raise LmbenchError(f"split {split.name!r} has no words to build a vocabulary from")
        kept = [w for w, c in counts.items() if c > self.unk_max_count and w not in (UNK, EOS)]
        kept.sort(key=lambda w: (-counts[w], w))  # frequent first; ties alphabetical
        self._set_vocab([UNK, EOS, *kept])
        return self

    def encode_sentences(self, sentences) -> np.ndarray:
        self._check_fitted()
        get, unk, eos = self.index_.get, self.unk_id, self.boundary_id
        ids = [i for s in sentences for i in (*[get(w, unk) for w in s], eos)]
        return np.asarray(ids, dtype=np.int64)

    def encode_split(self, split: Split) -> np.ndarray:
        return self.encode_sentences(split.sentences)

    def encode(self, text: str) -> list[int]:
        """Each non-empty line is a sentence; words are split as for plain-text corpora."""
        lines = [split_words(line) for line in text.splitlines()]
        return self.encode_sentences([s for s in lines if s]).tolist()

    def decode(self, ids) -> str:
        self._check_fitted()
        out: list[str] = []
        for i in np.asarray(ids).tolist():
            out.append("\n" if i == self.boundary_id else self.tokens_[i] + " ")
        return "".join(out).replace(" \n", "\n")

    def config(self) -> dict[str, Any]:
        return {"unk_max_count": self.unk_max_count}

    @classmethod
    def from_state(cls, config, state) -> WordTokenizer:
        tokenizer = cls(**config)
        tokenizer._set_vocab(list(state["tokens"]))
        return tokenizer

    @classmethod
    def from_vocabulary(cls, words: list[str]) -> WordTokenizer:
        """A tokenizer over a given word list (e.g. an ARPA file's unigrams)."""
        tokenizer = cls()
        tokenizer._set_vocab([UNK, EOS, *[w for w in words if w not in (UNK, EOS)]])
        return tokenizer


@TOKENIZERS.register("char")
class CharTokenizer(_VocabTokenizer):
    name = "char"
    is_lossless = False  # characters unseen in train become <unk>

    def __init__(self) -> None:
        self.boundary_id, self.unk_id = 0, 1

    def fit(self, split: Split) -> CharTokenizer:
        self._set_vocab([BOS, UNK, *sorted(set(split.text))])
        return self

    def encode(self, text: str) -> list[int]:
        self._check_fitted()
        get, unk = self.index_.get, self.unk_id
        return [get(c, unk) for c in text]

    def encode_split(self, split: Split) -> np.ndarray:
        return np.asarray(self.encode(split.text), dtype=np.int64)

    def decode(self, ids) -> str:
        self._check_fitted()
        return "".join(self.tokens_[i] if i > self.unk_id else "" if i == 0 else "\ufffd"
                       for i in np.asarray(ids).tolist())

    def config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, config, state) -> CharTokenizer:
        tokenizer = cls()
        tokenizer._set_vocab(list(state["tokens"]))
        return tokenizer


@TOKENIZERS.register("byte")
class ByteTokenizer(Tokenizer):
    name = "byte"
    is_lossless = True
    fitted_ = True

    def __init__(self) -> None:
        self.boundary_id, self.unk_id = 256, None

    def fit(self, split: Split) -> ByteTokenizer:
        return self

    @property
    def vocab_size(self) -> int:
        return 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_split(self, split: Split) -> np.ndarray:
        return np.frombuffer(split.text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        data = bytes(i for i in np.asarray(ids).tolist() if i < 256)
        return data.decode("utf-8", errors="replace")

    def token_strings(self) -> list[str]:
        return [f"<0x{i:02X}>" for i in range(256)] + [BOS]

    def config(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, config, state) -> ByteTokenizer:
        return cls()


@TOKENIZERS.register("bpe")
class BPETokenizer(Tokenizer):
    name = "bpe"
    is_lossless = True

    def __init__(self, vocab_size: int = 4096, min_frequency: int = 2) -> None:
        if vocab_size < 300:
            raise LmbenchError(f"bpe vocab_size must be >= 300 (256 bytes + merges), "
                               f"got {vocab_size}")
        self.target_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.boundary_id, self.unk_id = 0, None

    def fit(self, split: Split) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.target_vocab_size, min_frequency=self.min_frequency,
            special_tokens=[BOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(split.text.splitlines(keepends=True), trainer=trainer)
        return self._set_hf(hf)

    def _set_hf(self, hf) -> BPETokenizer:
        """Use the trained Hugging Face tokenizer ``hf``; the tokenizer is then fitted."""
        self._hf = hf
        self.fitted_ = True
        return self

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        return self._hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        self._check_fitted()
        lines = text.splitlines(keepends=True)
        return [i for e in self._hf.encode_batch(lines, add_special_tokens=False) for i in e.ids]

    def encode_split(self, split: Split) -> np.ndarray:
        return np.asarray(self.encode(split.text), dtype=np.int64)

    def decode(self, ids) -> str:
        self._check_fitted()
        return self._hf.decode([i for i in np.asarray(ids).tolist() if i != self.boundary_id])

    def token_strings(self) -> list[str]:
        self._check_fitted()
        return [_printable(self._hf.id_to_token(i)) for i in range(self.vocab_size)]

    def config(self) -> dict[str, Any]:
        return {"vocab_size": self.target_vocab_size, "min_frequency": self.min_frequency}

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"hf_json": self._hf.to_str()}

    @classmethod
    def from_state(cls, config, state) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            hf = HFTokenizer.from_str(state["hf_json"])
        except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception)
            raise ValueError(f"Hugging Face tokenizer JSON: {error}") from None
        return cls(**config)._set_hf(hf)
