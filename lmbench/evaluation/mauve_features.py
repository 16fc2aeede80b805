"""MAUVE (Pillutla et al. 2021) on features we compute ourselves.

MAUVE compares two sets of texts through their embeddings: both are quantized together by
k-means (after PCA keeping 90% of the variance), giving histograms P (human) and Q (model); the
divergence curve (KL(Q || R_l), KL(P || R_l)) for mixtures R_l = l P + (1 - l) Q, mapped by
exp(-c KL) with c = 5, encloses an area in (0, 1]: 1 when the histograms are equal. We call the
``mauve-text`` package (``mauve.compute_mauve``) with ``p_features``/``q_features`` only. Its
default featurizer downloads GPT-2 large and is never used here: ``compute_mauve`` below refuses
anything but two feature matrices.

Featurizers:

- ``TfidfSvd``: TF-IDF of word unigrams and bigrams followed by truncated SVD (latent semantic
  analysis), from scikit-learn. ``fit`` it on reference text (the benchmark uses the training
  split cut into continuation-sized pieces), so the features are a fixed function of the corpus,
  as a pretrained featurizer is, and one row's MAUVE never depends on which other rows ran.
- ``embed_features``: a model's ``embed`` hook (mean-pooled hidden states of a gpt judge) on
  the token ids, boundary prepended. ``has_embed`` says whether a model has the hook.

Needs ``pip install mauve-text faiss-cpu scikit-learn``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Embeds, LanguageModel

INSTALL_HINT = "pip install mauve-text faiss-cpu scikit-learn"
# Word runs and single punctuation marks, so punctuation counts as a feature.
TOKEN_PATTERN = r"(?u)\w+|[^\w\s]"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LmbenchError(f"MAUVE needs the {module!r} module; {INSTALL_HINT}") from None


class TfidfSvd:
    """TF-IDF (word 1-2-grams, sublinear tf) -> truncated SVD to ``dim`` dimensions."""

    def __init__(self, dim: int = 128, seed: int = 0) -> None:
        if dim < 1:
            raise LmbenchError(f"the TF-IDF + SVD dimension must be >= 1, got {dim}")
        self.dim, self.seed = dim, seed

    def fit(self, texts: Sequence[str]) -> TfidfSvd:
        text_module = _require("sklearn.feature_extraction.text")
        decomposition = _require("sklearn.decomposition")
        self.vectorizer_ = text_module.TfidfVectorizer(
            token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        matrix = self.vectorizer_.fit_transform(list(texts))  # (N, vocabulary) sparse
        dim = min(self.dim, matrix.shape[0] - 1, matrix.shape[1] - 1)
        if dim < 1:
            raise LmbenchError(f"TF-IDF + SVD needs at least 2 texts and 2 terms, got "
                               f"{matrix.shape[0]} texts and {matrix.shape[1]} terms")
        with _one_thread():
            self.svd_ = decomposition.TruncatedSVD(dim, random_state=self.seed).fit(matrix)
        return self

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) texts -> (N, dim) float64 features."""
        with _one_thread():
            return self.svd_.transform(self.vectorizer_.transform(list(texts)))


def has_embed(model: LanguageModel) -> bool:
    """Whether ``model`` declares the ``embed(input_ids) -> (B, D)`` hook (``Embeds``)."""
    return isinstance(model, Embeds)


def embed_features(model: LanguageModel, sequences: Sequence[Sequence[int]],
                   batch_size: int = 64) -> np.ndarray:
    """(N,) id sequences -> (N, D) ``model.embed`` of each, boundary id prepended; sequences of
    equal length are embedded together, ``batch_size`` at a time."""
    rows = [[model.tokenizer.boundary_id, *map(int, s)] for s in sequences]
    out: list[np.ndarray | None] = [None] * len(rows)
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            vectors = model.embed(torch.tensor([rows[i] for i in chunk]))  # (b, D)
            for i, vector in zip(chunk, vectors.double().cpu().numpy(), strict=True):
                out[i] = vector
    return np.stack(out)


def _one_thread():
    """BLAS and OpenMP limited to one thread. Their workers busy-wait: on a loaded 2-core
    machine a 2000-document truncated SVD took 6.3 s instead of 0.5 s, a 200 x 64 PCA 0.5 s and
    a 24-point k-means 1 s instead of milliseconds. Problems of MAUVE's size (thousands of
    points, a hundred dimensions) are small enough for one core."""
    return _require("threadpoolctl").threadpool_limits(1)


@contextmanager
def _quiet_faiss():
    """faiss's k-means writes a WARNING to the C-level stderr whenever it has fewer than 39
    points per centroid, which is every call at MAUVE's n / 10 buckets; hold those lines back
    and pass anything else through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.strip() and not line.startswith("WARNING clustering"):
                    print(line, file=sys.stderr)


def compute_mauve(p_features: np.ndarray, q_features: np.ndarray, *, num_buckets: int | None = None,
                  seed: int = 25) -> float:
    """MAUVE between (N_p, D) human and (N_q, D) model features. ``num_buckets`` defaults to
    the package's rule max(2, round(min(N_p, N_q) / 10)); ``seed`` seeds PCA and k-means."""
    p, q = np.asarray(p_features, np.float64), np.asarray(q_features, np.float64)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise LmbenchError(f"MAUVE needs two (N, D) feature matrices, got {p.shape} and {q.shape}")
    if min(len(p), len(q)) < 2:
        raise LmbenchError("MAUVE needs at least 2 texts on each side")
    mauve = _require("mauve")
    faiss = _require("faiss")
    buckets = num_buckets or max(2, round(min(len(p), len(q)) / 10))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # faiss's own OpenMP runtime, which threadpoolctl may miss
    try:
        with _one_thread(), _quiet_faiss():
            out = mauve.compute_mauve(p_features=p, q_features=q, num_buckets=int(buckets),
                                      seed=seed, verbose=False)
    finally:
        faiss.omp_set_num_threads(threads)
    return float(out.mauve)
