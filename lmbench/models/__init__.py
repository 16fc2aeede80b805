"""Model families. Importing this package registers every family in ``MODELS``.

The import list below is the single source of truth for what ``lmbench models`` shows. Each
family class carries ``config_class``, the frozen dataclass of its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmbench.config import build_config
from lmbench.errors import LmbenchError
from lmbench.interface import LanguageModel
from lmbench.models.arpa import load_arpa
from lmbench.models.bert import BertConfig, MaskedLM
from lmbench.models.gpt import GPTLM, GPTConfig
from lmbench.models.interpolation import InterpolatedLM, InterpolationConfig
from lmbench.models.moe import MoEConfig, MoELM
from lmbench.models.ngram import NGramConfig, NGramLM
from lmbench.models.nplm import NPLMLM, NPLMConfig
from lmbench.models.rnn import GRULM, LSTMLM, RNNLM, RNNConfig
from lmbench.models.seq2seq import Seq2SeqConfig, Seq2SeqLM
from lmbench.registry import MODELS
from lmbench.results import read_npz

__all__ = ["GPTLM", "GRULM", "LSTMLM", "MODELS", "NGramConfig", "NGramLM", "NPLMLM", "RNNLM",
           "BertConfig", "GPTConfig", "InterpolatedLM", "InterpolationConfig", "MaskedLM",
           "MoEConfig", "MoELM", "NPLMConfig", "RNNConfig", "Seq2SeqConfig", "Seq2SeqLM",
           "build_model", "config_class_of", "load_arpa", "load_model"]


def config_class_of(family: str) -> type:
    return MODELS.get(family).config_class


def build_model(family: str, **options: Any) -> LanguageModel:
    """An unfitted model of a registered family, e.g.
    ``build_model("ngram", order=5, smoothing="modified-kneser-ney", tokenizer="word")``."""
    cls = MODELS.get(family)
    return cls(build_config(cls.config_class, options, f"model {family!r}"))


def load_model(path: str | Path) -> LanguageModel:
    """Load a model saved with ``model.save(path)``, or an ARPA file (``.arpa``)."""
    path = Path(path)
    if not path.is_file():
        raise LmbenchError(f"{path}: model file not found")
    if path.suffix == ".arpa":
        return load_arpa(path)
    meta, _ = read_npz(path, "a model (or an .arpa)")
    return MODELS.get(meta["family"]).load(path)
